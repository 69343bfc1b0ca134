"""Music longer than one window: each next window is in-painted after the last bar of the
previous one, and the joined spectrogram is decoded in one piece (``text_to_audio``)."""

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
from riffusion.models.sd1.masks import time_range_mask
from riffusion.progress import expect_windows
from riffusion.recipe import Clip, Recipe

__all__ = ["CONTEXT_COLUMNS", "continuation_windows", "text_to_audio"]

#: Continuation keeps one bar (2.56 s at 93.75 BPM) of the previous window as context.
CONTEXT_COLUMNS = 256
# Columns over which a continuation window is blended into its context.
_BLEND_COLUMNS = 16


def continuation_windows(columns: int) -> int:
    """Windows needed for ``columns`` image columns: one, then one per 256 new columns.

    Args:
        columns: the clip's image columns.
    """
    return 1 + max(0, math.ceil((columns - WINDOW_WIDTH) / (WINDOW_WIDTH - CONTEXT_COLUMNS)))


def _next_init(
    joined: np.ndarray, seed_picture: Image.Image | None, height: int
) -> tuple[Image.Image, bool]:
    """The init image of the next window: the last bar as context, then the seed image's rest
    (or white, to start from noise at full strength, without a seed image)."""
    init = Image.new("RGB", (WINDOW_WIDTH, height))
    init.paste(to_image(joined[:, -CONTEXT_COLUMNS:]), (0, 0))
    if seed_picture is not None:
        rest = seed_picture.crop((CONTEXT_COLUMNS, 0, WINDOW_WIDTH, height))
    else:
        rest = Image.new("RGB", (WINDOW_WIDTH - CONTEXT_COLUMNS, height), "white")
    init.paste(rest, (CONTEXT_COLUMNS, 0))
    return init, seed_picture is None


def _join(joined: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Append a regenerated window, blending the last context columns into the window's own
    version of them so that the join follows the model's transition."""
    ramp = np.linspace(0.0, 1.0, _BLEND_COLUMNS, dtype=np.float32)[None, :, None]
    tail = (
        joined[:, -_BLEND_COLUMNS:] * (1 - ramp)
        + new[:, CONTEXT_COLUMNS - _BLEND_COLUMNS : CONTEXT_COLUMNS] * ramp
    )
    return np.concatenate([joined[:, :-_BLEND_COLUMNS], tail, new[:, CONTEXT_COLUMNS:]], axis=1)


def text_to_audio(
    generate: GenerateWindow,
    recipe: Recipe,
    seed_picture: Image.Image | None,
    mask_picture: Image.Image | None,
    *,
    device: Any,
) -> Clip:
    """A ``text_to_audio`` recipe's clip: ``round(duration_s · rate)`` samples.

    Window ``k`` uses seed ``seed + k``; the mask applies to the first window. Sizes are
    checked before the first window is generated (the whole image is decoded at the end).

    Args:
        generate: the bound model (:data:`~riffusion.compose.windows.GenerateWindow`).
        recipe: a ``text_to_audio`` recipe.
        seed_picture: the RGB seed image (512 columns) or ``None``.
        mask_picture: the ``L`` mask of the first window or ``None``.
        device: where the decoder runs.
    """
    started = time.perf_counter()
    params, start = recipe.params, recipe.start
    num_samples = round(recipe.duration_s * params.sample_rate)
    # The narrowest image that decodes to at least num_samples: (columns − 1)·hop ≥ n.
    columns = max(2, math.ceil(num_samples / params.hop_length) + 1)
    check_decode_size(
        columns,
        params.num_channels,
        params,
        recipe.decode_method,
        what=f"a clip of duration_s={recipe.duration_s:g}",
    )
    windows_needed = continuation_windows(columns)
    check_seed_walk(start.seed, windows_needed)
    expect_windows(windows_needed)
    image, info = generate(
        start, None, 0.0, init_image=seed_picture, mask_image=mask_picture,
        steps=recipe.num_inference_steps,
    )  # fmt: skip
    windows: list[WindowInfo] = [info]
    joined = pixels(image)
    while joined.shape[1] < columns:
        init, from_noise = _next_init(joined, seed_picture, image.height)
        window_start = dataclasses.replace(start, seed=start.seed + len(windows))
        if from_noise:
            window_start = dataclasses.replace(window_start, denoising=1.0)
        mask = time_range_mask(
            width=WINDOW_WIDTH, height=image.height, keep_start_px=0, keep_end_px=CONTEXT_COLUMNS
        )
        generated, info = generate(
            window_start, None, 0.0, init_image=init, mask_image=mask,
            steps=recipe.num_inference_steps,
        )  # fmt: skip
        windows.append(info)
        joined = _join(joined, pixels(generated))
    full = to_image(joined[:, :columns])
    return finish_clip(full, recipe, windows, started, device=device, num_samples=num_samples)
