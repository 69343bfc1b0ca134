"""Image models: what the music code needs from a diffusion model (:class:`ImageModel`).

The Stable Diffusion 1.x implementation is :class:`riffusion.models.sd1.RiffusionPipeline`;
any object with the same few members (a toy model in the tests, another model family) can be
handed to :class:`riffusion.Riffuser` and drives every verb, recipes included.
"""

from riffusion.models.base import GeneratedImage, ImageModel, check_image_model

__all__ = ["GeneratedImage", "ImageModel", "check_image_model"]
