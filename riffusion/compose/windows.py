"""One model window: generate it, and turn a composed image of windows into a :class:`Clip`.

Every algorithm of :mod:`riffusion.compose` calls the image model through
:func:`generate_window` (one call per window, counted for progress) and ends in
:func:`finish_clip` (one decode of the whole joined image, so there are no seams in the phase).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from riffusion.convert import image_to_audio
from riffusion.defaults import WINDOW_WIDTH
from riffusion.inputs import PromptInput
from riffusion.params import SpectrogramParams
from riffusion.progress import StepHooks, expect_windows, window_step_callback
from riffusion.recipe import Clip, Recipe

__all__ = [
    "GenerateWindow",
    "WindowInfo",
    "finish_clip",
    "generate_window",
    "window_generator",
    "window_info",
]

WindowInfo = dict[str, Any]
"""What one window reports: ``alpha``, ``seeds``, ``denoising``, ``guidance``, ``timesteps``
and ``timings_s`` (seconds per model stage)."""

GenerateWindow = Callable[..., tuple[Image.Image, WindowInfo]]
"""``generate(start, end, alpha, *, init_image, mask_image, steps, periodic=False,
width=512)`` → (RGB image, :data:`WindowInfo`): :func:`generate_window` bound to a model."""

_STAGES = ("text_encoder", "vae_encode", "unet", "vae_decode", "total")


def generate_window(
    model: Any,
    params: SpectrogramParams,
    start: PromptInput,
    end: PromptInput | None,
    alpha: float,
    *,
    init_image: Image.Image | None,
    mask_image: Image.Image | None,
    steps: int,
    periodic: bool = False,
    width: int = WINDOW_WIDTH,
    hooks: StepHooks | None = None,
) -> tuple[Image.Image, WindowInfo]:
    """One image from ``model`` (an :class:`~riffusion.models.ImageModel`).

    Without an init image the model makes ``width × params.num_frequencies`` pixels from noise;
    with one, the image takes its size. Progress and the caller's step hook ride along.

    Args:
        model: the image model.
        params: the spectrogram parameters (the height of text-to-image).
        start: the start prompt input.
        end: the end prompt input, or ``None``.
        alpha: the interpolation weight in [0, 1].
        init_image: the img2img init image, or ``None``.
        mask_image: the ``L`` mask (white = regenerate), or ``None``.
        steps: scheduler steps of a full run.
        periodic: seamless along the width.
        width: the columns of text-to-image.
        hooks: the caller's per-step hook.
    """
    result = model.riffuse(
        start,
        end,
        alpha,
        init_image=init_image,
        mask_image=mask_image,
        num_inference_steps=steps,
        width=None if init_image is not None else width,
        height=None if init_image is not None else params.num_frequencies,
        periodic=periodic,
        callback_on_step_end=window_step_callback(hooks),
    )
    return result.image, window_info(result)


def window_info(result: Any) -> WindowInfo:
    """The :data:`WindowInfo` of one generation result.

    Args:
        result: a ``GenerationResult`` of the image model (``riffuse`` or ``riffuse_batch``).
    """
    return {
        "alpha": result.alpha,
        "seeds": list(result.seeds),
        "denoising": result.denoising,
        "guidance": result.guidance,
        "timesteps": list(result.timesteps),
        "timings_s": dict(result.timings_s),
    }


def window_generator(
    model: Any, params: SpectrogramParams, hooks: StepHooks | None = None
) -> GenerateWindow:
    """:func:`generate_window` bound to a model, its parameters and the caller's hooks.

    Args:
        model: the image model.
        params: the spectrogram parameters.
        hooks: the caller's per-step hook.
    """

    def generate(*args: Any, **kwargs: Any) -> tuple[Image.Image, WindowInfo]:
        return generate_window(model, params, *args, hooks=hooks, **kwargs)

    return generate


def _with_exif(image: Image.Image, params: SpectrogramParams) -> Image.Image:
    exif = image.getexif()
    for tag, value in params.to_exif().items():
        exif[int(tag)] = value
    return image


def finish_clip(
    image: Image.Image,
    recipe: Recipe,
    windows: list[WindowInfo],
    started: float,
    *,
    device: torch.device,
    num_samples: int | None = None,
    periodic: bool = False,
) -> Clip:
    """Decode the joined image with the recipe's decoder into a :class:`Clip`.

    Args:
        image: the whole clip's RGB spectrogram (all windows joined).
        recipe: the clip's recipe (decoder, its seed, the parameters).
        windows: what each window reported, in order.
        started: ``time.perf_counter()`` when the clip began (for ``debug["timings_s"]``).
        device: where the decoder runs.
        num_samples: cut or pad the audio to exactly this many samples (``None``: as decoded).
        periodic: decode one period of a loop (circular framing).
    """
    expect_windows(1)  # the next clip starts again at window 1
    decode_started = time.perf_counter()
    audio = image_to_audio(
        image,
        recipe.params,
        method=recipe.decode_method,
        seed=recipe.decode_seed,
        periodic=periodic,
        device=device,
    )
    if num_samples is not None:
        audio = audio.fit_length(num_samples)
    decode_s = time.perf_counter() - decode_started
    spent = {key: sum(w["timings_s"].get(key, 0.0) for w in windows) for key in _STAGES}
    debug = {
        "alphas": [window["alpha"] for window in windows],
        "seeds": [window["seeds"] for window in windows],
        "strengths": [window["denoising"] for window in windows],
        "guidance": [window["guidance"] for window in windows],
        "timesteps": [window["timesteps"] for window in windows],
        "timings_s": {
            "generation": spent["total"],
            **{key: spent[key] for key in _STAGES[:-1]},
            "audio_decode": decode_s,
            "total": time.perf_counter() - started,
        },
    }
    return Clip(audio=audio, image=_with_exif(image, recipe.params), recipe=recipe, debug=debug)
