"""Audio to audio: the input's spectrogram regenerated in overlapping windows and crossfaded
back together in the image, then decoded in one piece."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
from PIL import Image

from riffusion._checks import check_seed_walk
from riffusion.compose.canvas import pixels, to_image
from riffusion.compose.windows import GenerateWindow, WindowInfo, finish_clip
from riffusion.decoders import check_decode_size
from riffusion.defaults import WINDOW_WIDTH
from riffusion.progress import expect_windows
from riffusion.recipe import Clip, Recipe

__all__ = ["OVERLAP_COLUMNS", "audio_to_audio", "window_lefts"]

#: Columns shared by neighbouring windows (crossfaded linearly).
OVERLAP_COLUMNS = 64


def window_lefts(padded_width: int, window_width: int) -> list[int]:
    """Left edges of windows ``window_width`` wide covering ``padded_width`` columns, each
    overlapping the previous by :data:`OVERLAP_COLUMNS` (the last one flush with the end).

    Args:
        padded_width: columns to cover (a multiple of 64).
        window_width: columns of one window.
    """
    if padded_width <= window_width:  # one window holds it all (short input)
        return [0]
    lefts = list(range(0, padded_width - window_width, window_width - OVERLAP_COLUMNS))
    if lefts[-1] + window_width < padded_width:
        lefts.append(padded_width - window_width)
    return lefts


def _crossfade_weight(index: int, count: int, window_width: int) -> np.ndarray:
    """``(window_width,)`` float32 weights: ramps in the overlaps, 1 elsewhere."""
    ramp = np.linspace(0.0, 1.0, OVERLAP_COLUMNS + 2, dtype=np.float32)[1:-1]
    weight = np.ones(window_width, np.float32)
    if index > 0:
        weight[:OVERLAP_COLUMNS] = ramp
    if index < count - 1:
        weight[-OVERLAP_COLUMNS:] = ramp[::-1]
    return weight


def audio_to_audio(
    generate: GenerateWindow,
    recipe: Recipe,
    source: Image.Image,
    num_samples: int,
    *,
    device: Any,
) -> Clip:
    """An ``audio_to_audio`` recipe's clip from ``source``, the input's spectrogram.

    Args:
        generate: the bound model (see :data:`~riffusion.compose.windows.GenerateWindow`).
        recipe: the recipe (window ``k`` uses seed ``start.seed + k``).
        source: RGB spectrogram of the resampled, mono input audio.
        num_samples: the input's length in samples (the clip's length).
        device: where the decoder runs.
    """
    started = time.perf_counter()
    columns = source.width
    check_decode_size(
        columns,
        recipe.params.num_channels,
        recipe.params,
        recipe.decode_method,
        what=f"input audio of {recipe.duration_s:g} s",
    )
    # The UNet halves the latent grid three times: keep widths a multiple of 64 pixels.
    padded_width = max(64, math.ceil(columns / 64) * 64)
    window_width = min(WINDOW_WIDTH, padded_width)
    canvas = Image.new("RGB", (padded_width, source.height), "white")
    canvas.paste(source, (0, 0))
    lefts = window_lefts(padded_width, window_width)
    check_seed_walk(recipe.start.seed, len(lefts))
    expect_windows(len(lefts))
    total = np.zeros((source.height, padded_width, 3), np.float32)
    weights = np.zeros((1, padded_width, 1), np.float32)
    windows: list[WindowInfo] = []
    for index, left in enumerate(lefts):
        window_start = dataclasses.replace(recipe.start, seed=recipe.start.seed + index)
        crop = canvas.crop((left, 0, left + window_width, source.height))
        generated, info = generate(
            window_start, None, 0.0, init_image=crop, mask_image=None,
            steps=recipe.num_inference_steps,
        )  # fmt: skip
        windows.append(info)
        weight = _crossfade_weight(index, len(lefts), window_width)
        total[:, left : left + window_width] += pixels(generated) * weight[None, :, None]
        weights[:, left : left + window_width] += weight[None, :, None]
    joined = to_image(total / np.maximum(weights, 1e-6))
    full = joined.crop((0, 0, columns, source.height))
    return finish_clip(full, recipe, windows, started, device=device, num_samples=num_samples)
