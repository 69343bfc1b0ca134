"""The diffusion layer of riffusion: Stable Diffusion on spectrogram *images*.

It knows pixels, latents and text embeddings, not audio. Entry point:
:class:`RiffusionPipeline` (``from_pretrained``, ``riffuse``, ``img2img``, ``text_to_image``).

Names load on first use (PEP 562): ``import riffusion.diffusion`` alone imports neither torch
nor diffusers; ``RiffusionPipeline``, ``make_scheduler`` and the loaders bring diffusers in.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from riffusion.diffusion.devices import cpu_generator, randn, resolve_device, resolve_dtype
    from riffusion.diffusion.generation import GenerationResult
    from riffusion.diffusion.interpolation import lerp, slerp
    from riffusion.diffusion.loading import resolve_model_folder
    from riffusion.diffusion.masks import mask_to_latent, time_range_mask
    from riffusion.diffusion.periodic import is_periodic, periodic_width
    from riffusion.diffusion.pipeline import RiffusionPipeline
    from riffusion.diffusion.prompt_weighting import parse_prompt_weights
    from riffusion.diffusion.schedulers import make_scheduler

# name -> module that defines it, imported on first access (PEP 562).
_LAZY = {
    "cpu_generator": "riffusion.diffusion.devices",
    "randn": "riffusion.diffusion.devices",
    "resolve_device": "riffusion.diffusion.devices",
    "resolve_dtype": "riffusion.diffusion.devices",
    "lerp": "riffusion.diffusion.interpolation",
    "slerp": "riffusion.diffusion.interpolation",
    "resolve_model_folder": "riffusion.diffusion.loading",
    "mask_to_latent": "riffusion.diffusion.masks",
    "time_range_mask": "riffusion.diffusion.masks",
    "is_periodic": "riffusion.diffusion.periodic",
    "periodic_width": "riffusion.diffusion.periodic",
    "GenerationResult": "riffusion.diffusion.generation",
    "RiffusionPipeline": "riffusion.diffusion.pipeline",
    "parse_prompt_weights": "riffusion.diffusion.prompt_weighting",
    "make_scheduler": "riffusion.diffusion.schedulers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'riffusion.diffusion' has no attribute {name!r}")


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
