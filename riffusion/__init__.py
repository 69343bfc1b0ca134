"""riffusion: make music with Stable Diffusion on images of sound.

Layers, bottom to top (``docs/layers.md``; ``tests/test_layers.py`` checks every import):
:mod:`riffusion.errors` → :mod:`riffusion.params` → :mod:`riffusion.phase` (phase recovery) →
:mod:`riffusion.spectrogram` (STFT/mel) → :mod:`riffusion.decoders` (the decoder registry:
built-ins and plug-ins) → :mod:`riffusion.image` (8-bit encoding) → :mod:`riffusion.audio` (I/O) and
:mod:`riffusion.convert` → :mod:`riffusion.inputs` (value types), :mod:`riffusion.seeds`,
:mod:`riffusion.prompts`, :mod:`riffusion.progress` → :mod:`riffusion.models` (the image-model
protocol) and :mod:`riffusion.models.sd1` (its Stable Diffusion 1.x pipeline) →
:mod:`riffusion.joins`, :mod:`riffusion.tempo`, :mod:`riffusion.schedule` →
:mod:`riffusion.recipe`, :mod:`riffusion.adapters` → :mod:`riffusion.compose` (the music
algorithms) → :class:`riffusion.Riffuser` → apps (CLI, server, batch).

Every top-level name loads on first use (PEP 562), so ``import riffusion`` itself imports
neither torch nor diffusers: ``riffusion --help`` and ``import riffusion.inputs`` stay quick,
audio ↔ image work loads torch, and ``Riffuser`` loads diffusers and transformers.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from riffusion.errors import (
    AudioFileError,
    DeviceError,
    GenerationCancelled,
    ImageFormatError,
    ModelLoadError,
    ParameterError,
    RiffusionError,
)

if TYPE_CHECKING:
    from riffusion.audio import Audio
    from riffusion.compose.stream import Stream
    from riffusion.convert import audio_to_image, image_to_audio
    from riffusion.decoders import register_decoder
    from riffusion.inputs import PromptInput
    from riffusion.joins import periodic_image_to_audio, stitch
    from riffusion.models.loading import register_model
    from riffusion.models.sd1 import GenerationResult, RiffusionPipeline, slerp
    from riffusion.params import ExifTag, SpectrogramParams
    from riffusion.progress import Progress
    from riffusion.prompts import random_prompt
    from riffusion.recipe import Adapter, Clip, Recipe
    from riffusion.riffuser import Riffuser
    from riffusion.seeds import SeedImage, mask_images, seed_images
    from riffusion.spectrogram import SpectrogramConverter
    from riffusion.tempo import estimate_tempo, trim_to_bars

__version__ = "0.1.0"

# name -> module that defines it, imported on first access (PEP 562).
_LAZY = {
    "Audio": "riffusion.audio",
    "audio_to_image": "riffusion.convert",
    "image_to_audio": "riffusion.convert",
    "register_decoder": "riffusion.decoders",
    "register_model": "riffusion.models.loading",
    "ExifTag": "riffusion.params",
    "SpectrogramParams": "riffusion.params",
    "random_prompt": "riffusion.prompts",
    "Progress": "riffusion.progress",
    "SeedImage": "riffusion.seeds",
    "mask_images": "riffusion.seeds",
    "seed_images": "riffusion.seeds",
    "SpectrogramConverter": "riffusion.spectrogram",
    "PromptInput": "riffusion.inputs",
    "GenerationResult": "riffusion.models.sd1",
    "RiffusionPipeline": "riffusion.models.sd1",
    "slerp": "riffusion.models.sd1",
    "estimate_tempo": "riffusion.tempo",
    "periodic_image_to_audio": "riffusion.joins",
    "stitch": "riffusion.joins",
    "trim_to_bars": "riffusion.tempo",
    "Adapter": "riffusion.recipe",
    "Clip": "riffusion.recipe",
    "Recipe": "riffusion.recipe",
    "Riffuser": "riffusion.riffuser",
    "Stream": "riffusion.compose.stream",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    # Submodules by attribute, as an eager package would have them (``riffusion.seeds.x``
    # right after ``import riffusion``); importing one binds it in this namespace.
    if not name.startswith("_") and importlib.util.find_spec(f"riffusion.{name}") is not None:
        return importlib.import_module(f"riffusion.{name}")
    raise AttributeError(f"module 'riffusion' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Adapter",
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
    "Progress",
    "PromptInput",
    "Recipe",
    "Riffuser",
    "RiffusionError",
    "RiffusionPipeline",
    "SeedImage",
    "SpectrogramConverter",
    "SpectrogramParams",
    "Stream",
    "__version__",
    "audio_to_image",
    "estimate_tempo",
    "image_to_audio",
    "mask_images",
    "periodic_image_to_audio",
    "random_prompt",
    "register_decoder",
    "register_model",
    "seed_images",
    "slerp",
    "stitch",
    "trim_to_bars",
]
