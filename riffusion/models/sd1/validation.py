"""Argument checks of a generation, run before any model does (diffusers' ``check_inputs``).

Every failure is a :class:`~riffusion.errors.ParameterError` naming the argument and its value,
so a bad request costs no model time and says what to fix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from riffusion.errors import ParameterError
from riffusion.inputs import PromptInput, check_alpha

__all__ = ["check_callback", "check_inputs", "check_size", "is_int"]


def is_int(value: Any) -> bool:
    """Whether ``value`` is a Python or NumPy integer (``bool`` excluded).

    Args:
        value: Anything.
    """
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_size(name: str, value: Any) -> int:
    """Return ``value`` as an int if it is a positive multiple of 8 (the VAE's pixel factor).

    Args:
        name: The argument's name, for the error message (e.g. ``"width"``).
        value: A side length in pixels.

    Raises:
        ParameterError: If ``value`` is not such an int.
    """
    if not is_int(value) or value <= 0 or value % 8:
        raise ParameterError(f"{name}={value!r} must be a positive multiple of 8")
    return int(value)


def check_callback(callback_on_step_end: Any) -> None:
    """Reject a step callback that is neither callable nor ``None``.

    Args:
        callback_on_step_end: The ``callback_on_step_end`` argument of a generation.
    """
    if callback_on_step_end is not None and not callable(callback_on_step_end):
        raise ParameterError(
            f"callback_on_step_end={callback_on_step_end!r} must be callable or None"
        )


def _check_prompts(start: Any, end: Any, alpha: Any, tokenize: Callable[[str], Any]) -> None:
    if not isinstance(start, PromptInput):
        raise ParameterError(f"start={start!r} must be a PromptInput")
    if end is not None and not isinstance(end, PromptInput):
        raise ParameterError(f"end={end!r} must be a PromptInput or None")
    alpha = check_alpha(alpha)
    if end is None and alpha != 0.0:
        raise ParameterError(f"alpha={alpha!r} needs an end prompt; with end=None use alpha=0")
    for name, prompt_input in (("start", start), ("end", end)):
        if prompt_input is None:
            continue
        if not prompt_input.prompt.strip():
            raise ParameterError(f"{name}.prompt={prompt_input.prompt!r} must not be empty")
        # Tokenizing is cheap and catches over-long prompts before any model work.
        tokenize(prompt_input.prompt)
        tokenize(prompt_input.negative_prompt or "")


def _check_images(init_image: Any, mask_image: Any, width: Any, height: Any) -> tuple[int, int]:
    if init_image is None:
        if mask_image is not None:
            raise ParameterError("mask_image was given without init_image; a mask needs one")
        width = 512 if width is None else width
        height = 512 if height is None else height
        return check_size("width", width), check_size("height", height)

    if not isinstance(init_image, Image.Image):
        raise ParameterError(
            f"init_image={type(init_image).__name__} must be a PIL.Image.Image or None"
        )
    image_w = check_size("init_image.width", init_image.width)
    image_h = check_size("init_image.height", init_image.height)
    for name, value, expected in (("width", width, image_w), ("height", height, image_h)):
        if value is not None and value != expected:
            raise ParameterError(
                f"{name}={value!r} differs from the init image's {name} {expected}; omit it "
                "or resize the image"
            )
    if mask_image is not None:
        if not isinstance(mask_image, Image.Image):
            raise ParameterError(
                f"mask_image={type(mask_image).__name__} must be a PIL.Image.Image or None"
            )
        if mask_image.size != init_image.size:
            raise ParameterError(
                f"mask_image.size={mask_image.size} must equal init_image.size={init_image.size}"
            )
    return image_w, image_h


def check_inputs(
    *,
    start: Any,
    end: Any,
    alpha: Any,
    init_image: Any,
    mask_image: Any,
    num_inference_steps: Any,
    width: Any,
    height: Any,
    periodic: Any,
    tokenize: Callable[[str], Any],
    num_train_timesteps: int,
) -> tuple[int, int]:
    """Validate every argument of ``RiffusionPipeline.riffuse`` before any model runs.

    Args:
        start: ``start`` of ``riffuse``, unchecked.
        end: ``end`` of ``riffuse``, unchecked.
        alpha: ``alpha`` of ``riffuse``, unchecked.
        init_image: ``init_image`` of ``riffuse``, unchecked.
        mask_image: ``mask_image`` of ``riffuse``, unchecked.
        num_inference_steps: ``num_inference_steps`` of ``riffuse``, unchecked.
        width: ``width`` of ``riffuse``, unchecked.
        height: ``height`` of ``riffuse``, unchecked.
        periodic: ``periodic`` of ``riffuse``, unchecked.
        tokenize: The pipeline's prompt tokenizer; raises ``ParameterError`` for a prompt that
            is too long.
        num_train_timesteps: The scheduler's ``num_train_timesteps``, the most steps allowed.

    Returns:
        The output ``(width, height)`` in pixels.

    Raises:
        ParameterError: Naming the bad argument and its value.
    """
    _check_prompts(start, end, alpha, tokenize)
    max_steps = int(num_train_timesteps)
    if not is_int(num_inference_steps) or not 1 <= num_inference_steps <= max_steps:
        raise ParameterError(
            f"num_inference_steps={num_inference_steps!r} must be an int in [1, {max_steps}]"
        )
    if not isinstance(periodic, bool):
        raise ParameterError(f"periodic={periodic!r} must be a bool")
    return _check_images(init_image, mask_image, width, height)
