"""One window between two prompt inputs (``riffuse``), and the alphas of an interpolation.

The mixing itself (text embeddings linearly, noise spherically) belongs to the image model
(:func:`riffusion.models.sd1.slerp`); here a window becomes a clip.
"""

from __future__ import annotations

import time
from typing import Any

from PIL import Image

from riffusion._checks import check_integer
from riffusion.compose.windows import GenerateWindow, finish_clip
from riffusion.recipe import Clip, Recipe

__all__ = ["interpolation_alphas", "riffuse"]


def interpolation_alphas(num_clips: Any) -> list[float]:
    """``num_clips`` (an int >= 2) alphas from 0 to 1 inclusive: ``k / (num_clips − 1)``.

    Args:
        num_clips: how many alphas, an int >= 2.
    """
    check_integer("num_clips", num_clips, minimum=2)
    return [index / (num_clips - 1) for index in range(num_clips)]


def riffuse(
    generate: GenerateWindow,
    recipe: Recipe,
    seed_picture: Image.Image | None,
    mask_picture: Image.Image | None,
    *,
    device: Any,
) -> Clip:
    """A ``riffuse`` recipe's clip: one window at ``recipe.alpha`` between start and end.

    Args:
        generate: the bound model.
        recipe: a ``riffuse`` recipe.
        seed_picture: the RGB seed image or ``None``.
        mask_picture: the ``L`` mask or ``None``.
        device: where the decoder runs.
    """
    started = time.perf_counter()
    image, info = generate(
        recipe.start, recipe.end, recipe.alpha, init_image=seed_picture,
        mask_image=mask_picture, steps=recipe.num_inference_steps,
    )  # fmt: skip
    return finish_clip(image, recipe, [info], started, device=device)
