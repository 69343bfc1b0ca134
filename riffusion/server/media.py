"""Encoding a clip for the wire: JPEG / PNG images, MP3 / WAV audio, base64 data URLs.

MP3 goes through libsndfile (``soundfile``), which writes MPEG Layer III since libsndfile 1.1;
:func:`mp3_available` says whether the installed one can, and :func:`audio_data_url` falls back to
WAV (``data:audio/wav``) explicitly when it cannot.
"""

from __future__ import annotations

import base64
import functools
import io

from PIL import Image

from riffusion.audio import Audio

__all__ = [
    "audio_data_url",
    "data_url",
    "image_bytes",
    "mp3_available",
    "mp3_bytes",
    "wav_bytes",
]

JPEG_QUALITY = 90


@functools.cache
def mp3_available() -> bool:
    """Whether the installed libsndfile can write MP3."""
    import soundfile

    return "MP3" in soundfile.available_formats()


def data_url(mime: str, payload: bytes) -> str:
    """``data:<mime>;base64,<payload>``."""
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def image_bytes(image: Image.Image, format: str) -> bytes:
    """The image as ``"JPEG"`` (quality 90, RGB) or ``"PNG"`` (lossless, with its EXIF) bytes."""
    buffer = io.BytesIO()
    if format == "JPEG":
        image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buffer, format="PNG", exif=image.getexif())
    return buffer.getvalue()


def mp3_bytes(audio: Audio) -> bytes:
    """MPEG Layer III bytes of ``audio`` (libsndfile's default bit rate)."""
    return audio.to_bytes("MP3", "MPEG_LAYER_III")


def wav_bytes(audio: Audio) -> bytes:
    """16-bit PCM WAV bytes of ``audio``."""
    return audio.to_bytes("WAV", "PCM_16")


def audio_data_url(audio: Audio) -> str:
    """``data:audio/mpeg`` (MP3), or ``data:audio/wav`` where libsndfile cannot write MP3."""
    if mp3_available():
        return data_url("audio/mpeg", mp3_bytes(audio))
    return data_url("audio/wav", wav_bytes(audio))
