"""Stable Diffusion 1.x, the riffusion checkpoint's model family, on spectrogram *images*.

It knows pixels, latents and text embeddings, not audio. Entry point:
:class:`RiffusionPipeline` (``from_pretrained``, ``riffuse``, ``img2img``, ``text_to_image``).

Names load on first use (PEP 562): ``import riffusion.models.sd1`` alone imports neither torch
nor diffusers; ``RiffusionPipeline``, ``make_scheduler`` and the loaders bring diffusers in.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from riffusion.models.sd1.devices import cpu_generator, randn, resolve_device, resolve_dtype
    from riffusion.models.sd1.generation import GenerationResult
    from riffusion.models.sd1.interpolation import lerp, slerp
    from riffusion.models.sd1.loading import resolve_model_folder
    from riffusion.models.sd1.masks import mask_to_latent, time_range_mask
    from riffusion.models.sd1.periodic import is_periodic, periodic_width
    from riffusion.models.sd1.pipeline import RiffusionPipeline
    from riffusion.models.sd1.prompt_weighting import parse_prompt_weights
    from riffusion.models.sd1.schedulers import make_scheduler

# name -> module that defines it, imported on first access (PEP 562).
_LAZY = {
    "cpu_generator": "riffusion.models.sd1.devices",
    "randn": "riffusion.models.sd1.devices",
    "resolve_device": "riffusion.models.sd1.devices",
    "resolve_dtype": "riffusion.models.sd1.devices",
    "lerp": "riffusion.models.sd1.interpolation",
    "slerp": "riffusion.models.sd1.interpolation",
    "resolve_model_folder": "riffusion.models.sd1.loading",
    "mask_to_latent": "riffusion.models.sd1.masks",
    "time_range_mask": "riffusion.models.sd1.masks",
    "is_periodic": "riffusion.models.sd1.periodic",
    "periodic_width": "riffusion.models.sd1.periodic",
    "GenerationResult": "riffusion.models.sd1.generation",
    "RiffusionPipeline": "riffusion.models.sd1.pipeline",
    "parse_prompt_weights": "riffusion.models.sd1.prompt_weighting",
    "make_scheduler": "riffusion.models.sd1.schedulers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'riffusion.models.sd1' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "GenerationResult",
    "RiffusionPipeline",
    "cpu_generator",
    "is_periodic",
    "lerp",
    "make_scheduler",
    "mask_to_latent",
    "parse_prompt_weights",
    "periodic_width",
    "randn",
    "resolve_device",
    "resolve_dtype",
    "resolve_model_folder",
    "slerp",
    "time_range_mask",
]
