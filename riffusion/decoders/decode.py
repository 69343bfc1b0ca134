"""One dispatch for every decoder: check the arguments, ask the decoder, check its output.

:func:`decode_mel` decodes with any registered decoder, the built-in ``"fast"`` and
``"reference"`` exactly like a plug-in: the name is looked up in the registry, a loop is
refused unless the decoder says it ``supports_periodic``, the working memory is estimated from
the decoder's own ``bytes_per_frame`` (:func:`decode_bytes`) and the returned waveform's shape
is checked.
"""

from __future__ import annotations

import math

import torch

from riffusion._checks import check_device
from riffusion.decoders.registry import DecoderName, get_decoder
from riffusion.errors import ParameterError
from riffusion.params import SpectrogramParams
from riffusion.spectrogram import (
    check_decode_memory,
    check_inverse_options,
    check_mel,
    decoded_length,
    inverse_bytes_per_frame,
)

__all__ = ["check_decode_size", "decode_bytes", "decode_mel"]


def decode_mel(
    mel: torch.Tensor,
    params: SpectrogramParams | None = None,
    *,
    method: DecoderName = "fast",
    num_iterations: int | None = None,
    seed: int = 0,
    periodic: bool = False,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Waveform whose mel magnitudes approximate ``mel``, decoded by a registered decoder.

    Args:
        mel: ``(..., params.num_frequencies, frames)`` non-negative magnitudes at the 16-bit
            scale (:data:`riffusion.spectrogram.INT16_SCALE`), any float dtype and device.
        params: the spectrogram parameters the magnitudes were made with (default:
            ``SpectrogramParams()``).
        method: a registered decoder's name: ``"fast"`` (default), ``"reference"`` or one added
            with :func:`~riffusion.decoders.register_decoder`.
        num_iterations: iterations of an iterative decoder, >= 1; ``None`` for the decoder's
            default (40 for ``"fast"``, 32 for ``"reference"``).
        seed: seed of anything random in the decoder; equal seeds give equal output.
        periodic: decode one period of a loop; only for a decoder whose ``supports_periodic``
            is true.
        device: where the decoder runs (``mel`` is moved there as float32 first).

    Returns:
        ``(..., params.samples_for_width(frames, periodic=periodic))`` float32 waveform on
        ``device`` (``(frames − 1) · hop_length`` samples, or ``frames · hop_length`` with
        ``periodic=True``), at the scale of the waveform the magnitudes came from.

    Raises:
        ParameterError: a bad argument or decoder name, a loop for a decoder without a circular
            mode, a decode too large for :data:`~riffusion.limits.MAX_DECODE_BYTES`, or a
            decoder that returned something else than a tensor of that shape.

    Example:
        >>> import torch
        >>> from riffusion.params import SpectrogramParams
        >>> params = SpectrogramParams(num_frequencies=64)
        >>> mel = torch.rand(1, 64, 11, generator=torch.Generator().manual_seed(0)) * 1e4
        >>> decode_mel(mel, params, num_iterations=2).shape  # (11 − 1) · 441 samples
        torch.Size([1, 4410])
    """
    if params is not None and not isinstance(params, SpectrogramParams):
        raise ParameterError(
            f"params must be a riffusion.SpectrogramParams or None, got {type(params).__name__}"
        )
    params = params if params is not None else SpectrogramParams()
    device = check_device("device", device)
    check_mel(mel, params)
    decoder = get_decoder(method)  # the one place decoder names are checked
    check_inverse_options(num_iterations, seed, periodic)
    # The decoder is asked whether it can make a loop, never assumed from its name.
    if periodic and not decoder.supports_periodic:
        raise ParameterError(
            f"periodic=True needs method='fast' or another decoder with a circular mode "
            f"(method={method!r} has none)"
        )
    check_decode_size(mel.shape[-1], math.prod(mel.shape[:-2]), params, method)
    length = decoded_length(mel.shape[-1], params, periodic=periodic)
    waveform = decoder.decode(
        mel.to(device, torch.float32),
        params,
        seed=seed,
        periodic=periodic,
        num_iterations=num_iterations,
        device=device,
    )
    expected = (*mel.shape[:-2], length)
    if not isinstance(waveform, torch.Tensor) or waveform.shape != expected:
        shape = tuple(waveform.shape) if isinstance(waveform, torch.Tensor) else waveform
        raise ParameterError(
            f"decoder {method!r} returned {shape!r}; expected a tensor of shape {expected}"
        )
    return waveform.to(device, torch.float32)


def decode_bytes(frames: int, channels: int, params: SpectrogramParams, method: str) -> int:
    """Estimated working memory (in bytes) of decoding ``frames`` columns of ``channels``.

    A decoder says its own cost with a ``bytes_per_frame(params)`` method (the built-ins do:
    :func:`riffusion.spectrogram.inverse_bytes_per_frame`); for one without it the reference
    decoder's is assumed.

    Args:
        frames: image columns.
        channels: 1 or 2.
        params: the spectrogram parameters.
        method: the decoder's name.

    Raises:
        ParameterError: ``method`` is not a registered decoder.
    """
    decoder = get_decoder(method)
    own = getattr(decoder, "bytes_per_frame", None)
    per_frame = own(params) if callable(own) else inverse_bytes_per_frame(params, "reference")
    return int(frames) * int(channels) * int(per_frame)


def check_decode_size(
    frames: int, channels: int, params: SpectrogramParams, method: str, *, what: str = "mel"
) -> None:
    """Refuse a decode whose working memory would exceed
    :data:`~riffusion.limits.MAX_DECODE_BYTES`.

    Args:
        frames: image columns.
        channels: 1 or 2.
        params: the spectrogram parameters.
        method: the decoder's name.
        what: how the message names the input (``"an image 65536 columns wide"``).

    Raises:
        ParameterError: ``method`` is not a registered decoder, or the decode is too large
            (naming the size, the estimate and the limit).
    """
    per_frame = decode_bytes(1, 1, params, method)
    check_decode_memory(frames, channels, per_frame, method, what=what)
