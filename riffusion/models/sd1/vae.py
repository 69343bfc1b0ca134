"""Pixels <-> latents through Stable Diffusion's VAE (``AutoencoderKL``, factor 8).

An ``H x W`` RGB image is ``(1, 4, H/8, W/8)`` latents, scaled as diffusers does:
``(posterior_mean - shift_factor) * scaling_factor`` (``shift_factor`` is 0 for SD 1.x).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from riffusion.errors import ParameterError, RiffusionError
from riffusion.models.sd1.validation import check_size

if TYPE_CHECKING:
    from diffusers import AutoencoderKL

__all__ = ["decode_latents", "encode_image", "vae_scale"]


def vae_scale(vae: AutoencoderKL) -> tuple[float, float]:
    """The VAE's latent ``(scaling_factor, shift_factor)``; a missing shift is 0.

    Args:
        vae: The pipeline's ``AutoencoderKL``.
    """
    scale = float(vae.config.scaling_factor)
    shift = getattr(vae.config, "shift_factor", None)
    return scale, float(shift or 0.0)


def encode_image(
    vae: AutoencoderKL, image: Image.Image, *, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Encode an image to scaled latents with the VAE.

    Uses the mean of the VAE posterior, not a sample: deterministic, so ``denoising=0`` gives
    exactly the VAE round trip of the seed image (the posterior's spread is tiny for Stable
    Diffusion's VAE anyway).

    Args:
        vae: The pipeline's ``AutoencoderKL``.
        image: PIL image, any mode convertible to RGB, sides multiples of 8 pixels.
        device: The VAE's execution device.
        dtype: The VAE's dtype.

    Returns:
        ``(1, 4, H/8, W/8)`` latents in ``dtype`` on ``device``.

    Raises:
        ParameterError: If ``image`` is not a PIL image with sides multiples of 8.
    """
    if not isinstance(image, Image.Image):
        raise ParameterError(f"image={type(image).__name__} must be a PIL.Image.Image")
    for name, value in (("image.width", image.width), ("image.height", image.height)):
        check_size(name, value)
    # uint8 [0, 255] -> float [-1, 1], the VAE's input range.
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    x = x.to(device=device, dtype=dtype)
    scale, shift = vae_scale(vae)
    mean = vae.encode(x).latent_dist.mean
    return (mean - shift) * scale


def decode_latents(
    vae: AutoencoderKL, latents: torch.Tensor, *, device: torch.device, dtype: torch.dtype
) -> Image.Image:
    """Decode scaled latents ``(1, 4, h, w)`` to an RGB PIL image of ``8w x 8h`` pixels.

    Args:
        vae: The pipeline's ``AutoencoderKL``.
        latents: Float tensor ``(1, 4, h, w)``, scaled as :func:`encode_image` returns them.
        device: The VAE's execution device.
        dtype: The VAE's dtype.

    Returns:
        An 8-bit RGB image, each channel rounded from the VAE's [-1, 1] output.

    Raises:
        ParameterError: If ``latents`` is not a ``(1, C, h, w)`` tensor.
        RiffusionError: If the decoded image contains NaN or inf (e.g. float16 overflow).
    """
    if not isinstance(latents, torch.Tensor) or latents.ndim != 4 or latents.shape[0] != 1:
        raise ParameterError(
            f"latents with shape {getattr(latents, 'shape', None)} must be a (1, C, h, w) tensor"
        )
    scale, shift = vae_scale(vae)
    z = latents.to(device=device, dtype=dtype) / scale + shift
    decoded = vae.decode(z).sample[0].float()
    if not torch.isfinite(decoded).all():
        raise RiffusionError(
            f"the VAE produced NaN/inf in dtype={dtype}; retry with torch_dtype=torch.float32"
        )
    pixels = ((decoded / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy())
