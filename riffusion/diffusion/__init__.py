"""The diffusion layer of riffusion: Stable Diffusion on spectrogram *images*.

It knows pixels, latents and text embeddings, not audio. Entry point:
:class:`RiffusionPipeline` (``from_pretrained``, ``riffuse``, ``img2img``, ``text_to_image``).
"""

from riffusion.diffusion.devices import cpu_generator, randn, resolve_device, resolve_dtype
from riffusion.diffusion.interpolation import PromptInput, lerp, slerp
from riffusion.diffusion.loading import DEFAULT_MODEL, resolve_model_folder
from riffusion.diffusion.masks import mask_to_latent, time_range_mask
from riffusion.diffusion.periodic import is_periodic, periodic_width
from riffusion.diffusion.pipeline import GenerationResult, RiffusionPipeline
from riffusion.diffusion.prompt_weighting import parse_prompt_weights
from riffusion.diffusion.schedulers import SCHEDULER_NAMES, make_scheduler

__all__ = [
    "DEFAULT_MODEL",
    "SCHEDULER_NAMES",
    "GenerationResult",
    "PromptInput",
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
