"""Mel magnitudes ↔ 8-bit spectrogram images, bit-compatible with Riffusion.

The encoding is the contract the trained checkpoint expects:

1. magnitudes / max (the max is stored in EXIF tag 11080),
2. ``** power_for_image`` (0.25),
3. ``× 255``, inverted (``255 − x``: loud is dark), truncated to ``uint8``,
4. flipped vertically so low frequencies are at the bottom;
5. mono as grey RGB, stereo as R = 0, G = left, B = right;
6. the :class:`~riffusion.params.SpectrogramParams` written to EXIF under Riffusion's tag ids.

Decoding inverts steps 1–5 with a fixed max value (``params.max_value``, 30e6 like Riffusion),
reading mono from the red channel exactly like Riffusion does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from riffusion.errors import ImageFormatError, ParameterError
from riffusion.limits import MAX_IMAGE_HEIGHT, MAX_IMAGE_WIDTH
from riffusion.params import ExifTag, SpectrogramParams

__all__ = [
    "check_image_size",
    "image_to_mel",
    "load_image",
    "mel_to_image",
    "params_from_image",
    "save_image",
    "to_rgb_array",
]


def mel_to_image(mel: torch.Tensor | np.ndarray, params: SpectrogramParams) -> Image.Image:
    """Encode mel magnitudes as a Riffusion spectrogram image with EXIF parameters.

    Args:
        mel: ``(channels, n_mels, frames)`` non-negative magnitudes; 1 channel for mono, 2 for
            stereo (must match ``params.stereo``).
        params: the parameters the magnitudes were computed with; written to EXIF.

    Returns:
        RGB image of size ``(frames, n_mels)`` (width × height). An all-zero (silent) input gives a
        white image.

    Example:
        >>> import torch
        >>> from riffusion.params import SpectrogramParams
        >>> mel_to_image(torch.ones(1, 512, 8), SpectrogramParams()).size
        (8, 512)
    """
    data = torch.as_tensor(mel).detach().to("cpu", torch.float32)
    if data.ndim != 3 or data.shape[0] not in (1, 2):
        raise ParameterError(
            f"mel of shape {tuple(data.shape)} must be (channels, n_mels, frames) with 1 or 2 "
            "channels"
        )
    if data.shape[0] != params.num_channels:
        raise ParameterError(
            f"mel has {data.shape[0]} channel(s) but params.stereo={params.stereo} expects "
            f"{params.num_channels}"
        )
    if data.shape[1] != params.num_frequencies:
        raise ParameterError(
            f"mel has {data.shape[1]} bins but params.num_frequencies={params.num_frequencies}"
        )
    if data.shape[2] == 0:
        raise ParameterError("mel has no frames; the image would have zero width")
    if not torch.isfinite(data).all() or (data < 0).any():
        raise ParameterError("mel magnitudes must be finite and non-negative")

    max_value = float(data.max())
    # Silence: an all-white image, rather than a division by zero.
    scaled = data / max_value if max_value > 0 else torch.zeros_like(data)
    # Riffusion's float32 operations and truncation (numpy astype(uint8) truncates), with the
    # root taken in float64 and rounded once to float32: numpy's float32 power rounds
    # differently with and without AVX-512 (one pixel in ~10^6 then moves by a level), while
    # float64 results differ by ~1e-16, below float32's resolution, so every CPU gets the same,
    # correctly rounded float32 root.
    root = (scaled.numpy().astype(np.float64) ** params.power_for_image).astype(np.float32)
    pixels = (255 - root * np.float32(255)).astype(np.uint8)
    if params.stereo:
        rgb = np.stack([np.zeros_like(pixels[0]), pixels[0], pixels[1]], axis=-1)
    else:
        rgb = np.repeat(pixels[0][..., None], 3, axis=-1)
    image = Image.fromarray(np.ascontiguousarray(rgb[::-1]), mode="RGB")

    exif = image.getexif()
    for tag, value in params.to_exif().items():
        exif[int(tag)] = value
    exif[int(ExifTag.MAX_VALUE)] = max_value
    return image


def image_to_mel(image: Image.Image, params: SpectrogramParams) -> torch.Tensor:
    """Decode a spectrogram image to mel magnitudes.

    Args:
        image: PIL image in any mode (L, P, RGB, RGBA, ...); height must equal
            ``params.num_frequencies``.
        params: decoding parameters (``stereo``, ``power_for_image``, ``max_value``).

    Returns:
        ``(channels, n_mels, width)`` float32 magnitudes in ``[0, params.max_value]``; channels is
        2 when ``params.stereo`` (from G and B) else 1 (from R, like Riffusion).
    """
    if not isinstance(image, Image.Image):
        raise ParameterError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
    if not isinstance(params, SpectrogramParams):
        raise ParameterError(f"params must be a SpectrogramParams, got {type(params).__name__}")
    check_image_size(image)
    height = image.size[1]
    if height != params.num_frequencies:
        raise ImageFormatError(
            f"image height {height} must equal num_frequencies={params.num_frequencies} "
            "(one row per mel bin)"
        )
    rgb = to_rgb_array(image)[::-1]
    channels = rgb[..., 1:3] if params.stereo else rgb[..., 0:1]
    return torch.from_numpy(_level_magnitudes(params)[channels.transpose(2, 0, 1)])


def _level_magnitudes(params: SpectrogramParams) -> np.ndarray:
    """``(256,)`` float32: the magnitude each grey level decodes to.

    ``((255 − level) / 255) ** (1 / power) · max_value``, in float64 and rounded once, so the
    same on every CPU (float32 power kernels differ in the last bit).
    """
    levels = (255 - np.arange(256, dtype=np.float64)) / 255
    return (levels ** (1 / params.power_for_image) * params.max_value).astype(np.float32)


def _check_image_type(image: object) -> None:
    if not isinstance(image, Image.Image):
        raise ParameterError(f"image must be a PIL.Image.Image, got {type(image).__name__}")


def check_image_size(image: Image.Image) -> None:
    """Refuse empty images and images beyond the documented limits, before decoding pixels.

    Args:
        image: a PIL image (only its size is read).

    Raises:
        ImageFormatError: width or height is 0, or above
            :data:`~riffusion.limits.MAX_IMAGE_WIDTH` / :data:`~riffusion.limits.MAX_IMAGE_HEIGHT`.
    """
    _check_image_type(image)
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageFormatError(f"image of size {width}×{height} is empty")
    if width > MAX_IMAGE_WIDTH or height > MAX_IMAGE_HEIGHT:
        raise ImageFormatError(
            f"image of size {width}×{height} exceeds the limit of {MAX_IMAGE_WIDTH}×"
            f"{MAX_IMAGE_HEIGHT} pixels (riffusion.limits)"
        )


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any PIL image as an ``(height, width, 3)`` uint8 RGB array.

    8-bit modes convert the usual PIL way (alpha dropped, palettes expanded). High-bit-depth
    grey modes are scaled to 8 bits rather than clipped: ``I;16*`` divides by 257 (65535 → 255);
    ``I`` is taken as 16-bit when its values exceed 255; ``F`` is taken as 0–255 floats (PIL's
    own ``L`` → ``F`` convention), rounded and clipped.

    Args:
        image: a PIL image in any mode (``L``, ``RGB``, ``RGBA``, ``P``, ``I;16``, ``I``, ``F``).
    """
    _check_image_type(image)
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode == "F":
            if not np.isfinite(values).all():
                raise ImageFormatError("image in mode 'F' holds NaN or infinite pixels")
            grey = np.clip(np.rint(values), 0, 255)
        elif mode.startswith("I;16") or values.max(initial=0) > 255:
            grey = np.clip(np.rint(values / 257.0), 0, 255)
        else:
            grey = np.clip(values, 0, 255)
        return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=-1)
    try:
        # Pillow converts premultiplied grey ("La") only to "LA"; the rest go through RGB.
        if mode == "La":
            image = image.convert("LA")
        return np.asarray(image.convert("RGB"))
    except (ValueError, OSError) as error:
        raise ImageFormatError(
            f"cannot convert an image in mode {mode!r} to RGB: {error}"
        ) from error


def params_from_image(
    image: Image.Image, default: SpectrogramParams | None = None
) -> SpectrogramParams:
    """Parameters stored in the image's Riffusion EXIF tags; missing tags keep ``default``'s.

    Args:
        image: a PIL image, usually a spectrogram PNG written by riffusion or Riffusion.
        default: parameters for absent tags (default: ``SpectrogramParams()``).

    Raises:
        ImageFormatError: a tag holds an impossible value.
    """
    _check_image_type(image)
    exif: dict[int, Any] = dict(image.getexif())
    return SpectrogramParams.from_exif(exif, base=default)


def load_image(source: str | os.PathLike[str] | Image.Image) -> Image.Image:
    """Open a spectrogram image from a path (or pass a PIL image through), fully loaded.

    Args:
        source: a path to an image file (PNG, JPEG, ...), or a PIL image returned as is.

    Raises:
        ImageFormatError: the file is missing, unreadable or not an image.
    """
    if isinstance(source, Image.Image):
        return source
    if not isinstance(source, str | os.PathLike):
        raise ParameterError(f"image must be a PIL image or a path, got {type(source).__name__}")
    path = Path(os.fsdecode(source))
    if "\x00" in str(path):
        raise ImageFormatError(f"image file name {str(path)!r} contains a NUL byte")
    try:
        is_folder, exists = path.is_dir(), path.exists()
    except OSError as error:  # a name too long, a component that is a file, ...
        raise ImageFormatError(
            f"image file {str(path)[:200]!r} cannot be opened: {error.strerror}"
        ) from None
    if is_folder:
        raise ImageFormatError(f"image file {str(path)!r} is a folder, not a file")
    if not exists:
        raise ImageFormatError(f"image file {str(path)[:200]!r} does not exist")
    if not path.is_file():
        raise ImageFormatError(f"image file {str(path)!r} is not a regular file")
    try:
        with Image.open(path) as opened:
            # The header alone tells the size: refuse huge images before decoding a pixel.
            check_image_size(opened)
            opened.load()
            image = opened.copy()
            image.info.update(opened.info)
            # copy() drops the lazily parsed EXIF; carry it over explicitly.
            exif = opened.getexif()
            target = image.getexif()
            for tag, value in exif.items():
                target[tag] = value
            return image
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as error:
        if isinstance(error, ImageFormatError):
            raise
        raise ImageFormatError(f"cannot read image {str(path)!r}: {error}") from error


def save_image(image: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Write ``image`` with its EXIF to ``path`` (PNG recommended), atomically.

    The file appears only once completely written, so a failure never leaves a partial file.

    Args:
        image: a PIL image; its EXIF (spectrogram parameters) is written with it.
        path: file to write; the extension picks the format.
    """
    from riffusion._files import atomic_output, check_output_path

    if not isinstance(image, Image.Image):
        raise ParameterError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
    path = check_output_path(path, error=ImageFormatError, what="image")
    with atomic_output(path, error=ImageFormatError) as temporary:
        image_format = Image.registered_extensions().get(path.suffix.lower())
        if image_format is None:
            raise ImageFormatError(
                f"cannot tell the image format from the extension of {str(path)!r}; "
                "use .png, .jpg, ..."
            )
        image.save(temporary, format=image_format, exif=image.getexif())
    return path
