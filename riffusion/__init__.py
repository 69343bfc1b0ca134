"""riffusion: make music with Stable Diffusion on images of sound.

Layers, bottom to top: :mod:`riffusion.errors` → :mod:`riffusion.params` →
:mod:`riffusion.spectrogram` (STFT/mel) → :mod:`riffusion.image` (8-bit encoding) →
:mod:`riffusion.audio` (I/O) and :mod:`riffusion.convert` → :mod:`riffusion.diffusion`
(img2img pipeline, latent interpolation) → :mod:`riffusion.looping` → :class:`riffusion.Riffuser`.

The spectrogram names import eagerly; the diffusion-based ones (``Riffuser``,
``RiffusionPipeline``, ``PromptInput``, ...) load diffusers and transformers on first use, so
``import riffusion`` stays quick for audio ↔ image work.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from riffusion.audio import Audio
from riffusion.convert import audio_to_image, image_to_audio
from riffusion.errors import (
    AudioFileError,
    DeviceError,
    GenerationCancelled,
    ImageFormatError,
    ModelLoadError,
    ParameterError,
    RiffusionError,
)
from riffusion.params import ExifTag, SpectrogramParams
from riffusion.prompts import random_prompt
from riffusion.seeds import SeedImage, mask_images, seed_images
from riffusion.spectrogram import SpectrogramConverter

if TYPE_CHECKING:
    from riffusion.diffusion import GenerationResult, PromptInput, RiffusionPipeline, slerp
    from riffusion.looping import estimate_tempo, periodic_image_to_audio, stitch, trim_to_bars
    from riffusion.riffuser import Clip, Recipe, Riffuser

__version__ = "0.1.0"

# name -> module that defines it, imported on first access (PEP 562).
_LAZY = {
    "GenerationResult": "riffusion.diffusion",
    "PromptInput": "riffusion.diffusion",
    "RiffusionPipeline": "riffusion.diffusion",
    "slerp": "riffusion.diffusion",
    "estimate_tempo": "riffusion.looping",
    "periodic_image_to_audio": "riffusion.looping",
    "stitch": "riffusion.looping",
    "trim_to_bars": "riffusion.looping",
    "Clip": "riffusion.riffuser",
    "Recipe": "riffusion.riffuser",
    "Riffuser": "riffusion.riffuser",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'riffusion' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Audio",
    "AudioFileError",
    "Clip",
    "DeviceError",
    "ExifTag",
    "GenerationCancelled",
    "GenerationResult",
    "ImageFormatError",
    "ModelLoadError",
    "ParameterError",
    "PromptInput",
    "Recipe",
    "Riffuser",
    "RiffusionError",
    "RiffusionPipeline",
    "SeedImage",
    "SpectrogramConverter",
    "SpectrogramParams",
    "__version__",
    "audio_to_image",
    "estimate_tempo",
    "image_to_audio",
    "mask_images",
    "periodic_image_to_audio",
    "random_prompt",
    "seed_images",
    "slerp",
    "stitch",
    "trim_to_bars",
]
