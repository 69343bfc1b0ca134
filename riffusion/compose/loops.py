"""Seamless loops: one period generated with circular padding along time and decoded with
circular framing, as long as a whole number of bars at the seed images' tempo."""

from __future__ import annotations

import time
from typing import Any

from PIL import Image

from riffusion._checks import check_integer
from riffusion.compose.canvas import fit_width
from riffusion.compose.windows import GenerateWindow, finish_clip
from riffusion.defaults import WINDOW_WIDTH
from riffusion.errors import ParameterError
from riffusion.params import SpectrogramParams
from riffusion.recipe import Clip, Recipe
from riffusion.seeds import SEED_BPM

__all__ = ["MAX_LOOP_BARS", "loop", "loop_width", "recipe_loop_width"]

#: Longest loop, in 4/4 bars.
MAX_LOOP_BARS = 16


def loop_width(bars: Any, params: SpectrogramParams) -> int:
    """Columns of a loop ``bars`` bars of 4/4 long at :data:`~riffusion.seeds.SEED_BPM`
    (93.75 BPM: a bar is 2.56 s = 256 columns), an int in [1, 16]; ``None``: one window.

    Args:
        bars: whole bars, an int in [1, 16], or ``None``.
        params: the spectrogram parameters (rate, hop).
    """
    if bars is None:
        return WINDOW_WIDTH
    check_integer("bars", bars, minimum=1)
    if bars > MAX_LOOP_BARS:
        raise ParameterError(f"bars={bars} must be at most {MAX_LOOP_BARS}")
    bar_s = 4 * 60.0 / SEED_BPM
    columns = bars * bar_s * params.sample_rate / params.hop_length
    # The UNet halves the latent grid three times: widths are multiples of 64 pixels.
    return max(64, round(columns / 64) * 64)


def recipe_loop_width(recipe: Recipe) -> int:
    """The loop width a recipe's duration stands for (periodic: width · hop samples).

    Args:
        recipe: a ``loop`` recipe.
    """
    return round(recipe.duration_s * recipe.params.sample_rate / recipe.params.hop_length)


def loop(
    generate: GenerateWindow, recipe: Recipe, seed_picture: Image.Image | None, *, device: Any
) -> Clip:
    """A ``loop`` recipe's clip: ``width · hop`` samples that play seamlessly end to start.

    Args:
        generate: the bound model.
        recipe: a ``loop`` recipe.
        seed_picture: the RGB seed image or ``None``.
        device: where the decoder runs.
    """
    started = time.perf_counter()
    width = recipe_loop_width(recipe)
    if seed_picture is not None:
        seed_picture = fit_width(seed_picture, width)
    image, info = generate(
        recipe.start, None, 0.0, init_image=seed_picture, mask_image=None,
        steps=recipe.num_inference_steps, periodic=True, width=width,
    )  # fmt: skip
    return finish_clip(image, recipe, [info], started, device=device, periodic=True)
