"""Seamless (periodic) generation along the image width, i.e. the time axis of a spectrogram.

A convolution with zero padding sees a hard edge at the left and right borders, so a generated
clip does not loop: its last column does not continue into its first. Padding the width axis
*circularly* makes every convolution wrap around, the UNet and VAE become equivariant to circular
shifts along x (attention and group norm already are), and the generated image tiles seamlessly.
The height axis (frequency) keeps zero padding: low and high frequencies must not wrap into each
other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["is_periodic", "periodic_width"]

_MARK = "_riffusion_periodic"


def _periodic_forward(conv: nn.Conv2d) -> Any:
    pad_h, pad_w = cast(tuple[int, int], conv.padding)  # ints; checked by the caller

    def forward(x: torch.Tensor) -> torch.Tensor:
        # Wrap the width axis, zero-pad the height axis, then convolve without padding: the same
        # output size as the original zero-padded convolution.
        x = F.pad(x, (pad_w, pad_w, 0, 0), mode="circular")
        if pad_h:
            x = F.pad(x, (0, 0, pad_h, pad_h), mode="constant", value=0.0)
        return F.conv2d(x, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)

    return forward


def _patchable(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.Conv2d)
        and isinstance(module.padding, tuple)
        and module.padding_mode == "zeros"
        and module.padding[1] > 0
    )


def is_periodic(module: nn.Module) -> bool:
    """Return True if any Conv2d inside ``module`` currently pads its width circularly.

    Args:
        module: a torch module (UNet, VAE, ...), searched recursively.
    """
    return any(_MARK in vars(m) for m in module.modules())


@contextlib.contextmanager
def periodic_width(*modules: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Make every zero-padded ``Conv2d`` in ``modules`` pad its width axis circularly.

    Each such convolution's ``forward`` is replaced by an instance attribute that pads the width
    circularly and the height with zeros; on exit (also on error) the attribute is deleted, which
    restores the class's ``forward``. Convolutions without width padding (1x1 convolutions, the
    VAE encoder's downsamplers that pad explicitly) are left alone. Nested use is harmless.

    Args:
        *modules: Models to patch, e.g. the UNet and the VAE.
        enabled: If False, do nothing (convenient for ``with periodic_width(..., enabled=flag)``).

    Yields:
        None.
    """
    patched: list[nn.Module] = []
    if enabled:
        for module in modules:
            for sub in module.modules():
                if _patchable(sub) and _MARK not in vars(sub):
                    sub.forward = _periodic_forward(cast(nn.Conv2d, sub))
                    setattr(sub, _MARK, True)
                    patched.append(sub)
    try:
        yield
    finally:
        for sub in patched:
            del sub.forward
            delattr(sub, _MARK)
