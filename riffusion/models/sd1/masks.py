"""Masks for in-painting and continuation.

Convention (as in Stable Diffusion front-ends): **white = regenerate, black = keep** the seed
image. Masks are plain PIL images in pixel space; the pipeline averages them down to the latent
grid (one latent cell per 8x8 pixels), where during denoising the kept cells are overwritten at
every step by the seed image's latents re-noised to the current noise level.

This module knows pixel columns, not seconds: the audio layer converts times to columns.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from riffusion._checks import check_integer
from riffusion.errors import ParameterError

__all__ = ["mask_to_latent", "time_range_mask"]


def time_range_mask(
    *, width: int, height: int, keep_start_px: int, keep_end_px: int
) -> Image.Image:
    """Mask that keeps pixel columns ``[keep_start_px, keep_end_px)`` and regenerates the rest.

    On a spectrogram the x axis is time, so this means "keep this stretch of the seed audio,
    regenerate around it" — e.g. ``keep_start_px=0, keep_end_px=256`` on a 512-wide image keeps
    the first half and continues it. Use column indices that are multiples of 8 for a crisp
    boundary in latent space.

    Args:
        width: Image width in pixels, > 0.
        height: Image height in pixels, > 0.
        keep_start_px: First kept column, in ``[0, width]``.
        keep_end_px: One past the last kept column, in ``[keep_start_px, width]``
            (equal bounds keep nothing).

    Returns:
        A ``width x height`` mode ``"L"`` image: 0 (black, keep) in the range, 255 (white,
        regenerate) elsewhere.

    Raises:
        ParameterError: If a size is not a positive int or the range is out of bounds.
    """
    check_integer("width", width)
    check_integer("height", height)
    check_integer("keep_start_px", keep_start_px, minimum=None)
    check_integer("keep_end_px", keep_end_px, minimum=None)
    if not 0 <= keep_start_px <= keep_end_px <= width:
        raise ParameterError(
            f"keep_start_px={keep_start_px}, keep_end_px={keep_end_px} must satisfy "
            f"0 <= keep_start_px <= keep_end_px <= width={width}"
        )
    pixels = np.full((height, width), 255, dtype=np.uint8)
    pixels[:, keep_start_px:keep_end_px] = 0
    return Image.fromarray(pixels)  # 2-D uint8 -> mode "L"


def mask_to_latent(
    mask_image: Image.Image,
    *,
    latent_height: int,
    latent_width: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Convert a pixel mask to the latent grid.

    Args:
        mask_image: A PIL image, any mode convertible to ``"L"``; white (255) = regenerate,
            black (0) = keep, grey = partial.
        latent_height: Latent rows (image height / 8).
        latent_width: Latent columns (image width / 8).
        device: Destination device.
        dtype: Destination dtype.

    Returns:
        ``(1, 1, latent_height, latent_width)`` tensor in [0, 1]: 1 = regenerate, 0 = keep. The
        downscale averages each 8x8 block (area interpolation), so a block half kept is 0.5.

    Raises:
        ParameterError: If the mask is not a PIL image or the sizes are not positive ints.
    """
    if not isinstance(mask_image, Image.Image):
        raise ParameterError(f"mask_image={type(mask_image).__name__} must be a PIL.Image.Image")
    check_integer("latent_height", latent_height)
    check_integer("latent_width", latent_width)
    values = np.asarray(mask_image.convert("L"), dtype=np.float32) / 255.0
    full = torch.from_numpy(values.copy())[None, None]
    # Area interpolation in float (not a uint8 PIL resize) averages each block exactly.
    latent = F.interpolate(full, size=(latent_height, latent_width), mode="area")
    return latent.to(device=device, dtype=dtype)
