"""Spectrogram images as float pixel arrays, for joining windows (no model, no audio)."""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["fit_width", "pixels", "to_image"]


def fit_width(image: Image.Image, width: int) -> Image.Image:
    """Crop to ``width`` columns, or tile the image until it is that wide.

    Args:
        image: a PIL image.
        width: the columns wanted.
    """
    if image.width == width:
        return image
    if image.width > width:
        return image.crop((0, 0, width, image.height))
    tiled = Image.new(image.mode, (width, image.height))
    for left in range(0, width, image.width):
        tiled.paste(image, (left, 0))
    return tiled


def pixels(image: Image.Image) -> np.ndarray:
    """``(height, width, 3)`` float32 grey levels in [0, 255] of an image as RGB.

    Args:
        image: a PIL image of any mode.
    """
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def to_image(values: np.ndarray) -> Image.Image:
    """The RGB image of ``(height, width, 3)`` levels, rounded to the nearest and clipped.

    Args:
        values: ``(height, width, 3)`` grey levels, any float dtype.
    """
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="RGB")
