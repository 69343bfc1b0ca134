"""What the verbs accept, resolved: prompts, audio, seed and mask images → values and ids.

A seed image is given as an id (built-in, registered or a Riffusion alias — a string is never
a path), a :class:`pathlib.Path`, a PIL image or :class:`~riffusion.Audio`; recipes record its
id, or ``custom:<fingerprint>`` for anything else (see :class:`~riffusion.Recipe`).
"""

from __future__ import annotations

import math
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from riffusion.audio import Audio
from riffusion.compose.canvas import fit_width
from riffusion.convert import audio_to_image
from riffusion.defaults import DEFAULT_SEED_IMAGE, WINDOW_WIDTH
from riffusion.errors import ParameterError
from riffusion.image import load_image
from riffusion.inputs import PromptInput
from riffusion.params import SpectrogramParams
from riffusion.seeds import (
    image_fingerprint,
    load_mask_image,
    load_seed_image,
    resolve_mask_id,
    resolve_seed_id,
)

__all__ = [
    "DEFAULT_SEED",
    "as_audio",
    "as_prompt_input",
    "check_prompt",
    "prompt_input",
    "random_seed",
    "recipe_image",
    "resolve_mask_image",
    "resolve_seed_image",
]

DEFAULT_SEED = "default"
"""Sentinel for ``seed_image=``: the built-in default seed image (``straight_beat``)."""


def random_seed() -> int:
    """A fresh seed in [0, 2**31) for a verb called with ``seed=None`` (recorded in recipes)."""
    return secrets.randbelow(2**31)


def check_prompt(prompt: Any, example: str) -> None:
    """A :class:`ParameterError` with a working ``example`` unless ``prompt`` is a string.

    Args:
        prompt: the caller's prompt.
        example: a working call, quoted in the error.
    """
    if not isinstance(prompt, str):
        raise ParameterError(f"prompt={prompt!r} must be a string, e.g. {example}")


def prompt_input(
    prompt: Any,
    *,
    seed: int | None,
    negative_prompt: str | None,
    denoising: float,
    guidance: float,
    example: str,
) -> PromptInput:
    """The start :class:`PromptInput` of a one-prompt verb (``seed=None`` draws one).

    Args:
        prompt: what to play.
        seed: the noise seed, or ``None`` for a fresh one.
        negative_prompt: what to steer away from.
        denoising: img2img strength in [0, 1].
        guidance: classifier-free guidance scale.
        example: a working call, quoted in errors.
    """
    check_prompt(prompt, example)
    return PromptInput(
        prompt=prompt,
        seed=random_seed() if seed is None else seed,
        negative_prompt=negative_prompt,
        denoising=denoising,
        guidance=guidance,
    )


def as_audio(audio: Any, example: str) -> Audio:
    """``audio`` as :class:`Audio`: itself, or loaded from a path (``str`` or ``PathLike``).

    Args:
        audio: :class:`Audio`, or a path to an audio file.
        example: a working call, quoted in the error.
    """
    if isinstance(audio, Audio):
        return audio
    if isinstance(audio, str | os.PathLike):
        if not Path(audio).is_file():
            raise ParameterError(
                f"audio={os.fspath(audio)!r} is not an existing file, e.g. {example}"
            )
        return Audio.load(audio)
    raise ParameterError(
        f"audio must be a riffusion.Audio or a path, got {type(audio).__name__}, e.g. {example}"
    )


def as_prompt_input(value: Any, seed: int, name: str) -> PromptInput:
    """A plain string becomes ``PromptInput(value, seed=seed)``, as ``stream`` does.

    Args:
        value: a string or a :class:`PromptInput`.
        seed: the seed a string gets.
        name: the argument's name, for the error.
    """
    if isinstance(value, str):
        return PromptInput(prompt=value, seed=seed)
    if isinstance(value, PromptInput):
        return value
    raise ParameterError(
        f"{name}={value!r} must be a string or a riffusion.PromptInput, e.g. "
        "riffuser.interpolate('jazz piano', PromptInput('techno beat', seed=7), 5)"
    )


def resolve_seed_image(
    seed_image: Any, params: SpectrogramParams, *, width: int = WINDOW_WIDTH
) -> tuple[Image.Image | None, str | None]:
    """``seed_image=`` as (RGB image ``width`` columns wide, or ``None``; its recipe id).

    Audio is looped (or cut) to the samples of ``width`` columns and encoded; images are
    cropped or tiled to ``width``.

    Args:
        seed_image: an id, :data:`DEFAULT_SEED`, a path, a PIL image, :class:`Audio` or ``None``.
        params: the spectrogram parameters (height, sample rate, hop).
        width: the columns wanted.
    """
    if seed_image is None:
        return None, None
    if isinstance(seed_image, str):
        name = DEFAULT_SEED_IMAGE if seed_image == DEFAULT_SEED else seed_image
        resolved = resolve_seed_id(name)
        image = fit_width(load_seed_image(resolved).convert("RGB"), width)
    elif isinstance(seed_image, Audio):
        length = params.samples_for_width(width)
        audio = seed_image.resample(params.sample_rate).to_mono()
        repeats = math.ceil(length / audio.num_samples)
        looped = Audio(np.tile(audio.waveform, (1, repeats)), audio.sample_rate)
        image = audio_to_image(looped.fit_length(length), params)
    elif isinstance(seed_image, Image.Image | os.PathLike):
        image = fit_width(load_image(seed_image).convert("RGB"), width)
    else:
        raise ParameterError(
            f"seed_image must be an id (str), a pathlib.Path, a PIL image, Audio or None, "
            f"got {type(seed_image).__name__}"
        )
    if image.height != params.num_frequencies:
        raise ParameterError(f"seed_image height {image.height} must be {params.num_frequencies}")
    if isinstance(seed_image, str):
        return image, resolved
    return image, f"custom:{image_fingerprint(image)}"


def resolve_mask_image(mask_image: Any) -> tuple[Image.Image | None, str | None]:
    """``mask_image=`` as (``L`` image or ``None``; its recipe id): ``None``/``""`` = no mask,
    a string id, a :class:`pathlib.Path` or a PIL image (white = regenerate).

    Args:
        mask_image: an id, ``None``/``""``, a path or a PIL image.
    """
    if isinstance(mask_image, str) or mask_image is None:
        resolved = resolve_mask_id(mask_image)
        if resolved is None:
            return None, None
        return load_mask_image(resolved), resolved
    if not isinstance(mask_image, Image.Image | os.PathLike):
        raise ParameterError(
            f"mask_image must be an id (str), a pathlib.Path, a PIL image or None, got "
            f"{type(mask_image).__name__}"
        )
    image = load_image(mask_image).convert("L")
    return image, f"custom:{image_fingerprint(image)}"


def recipe_image(identity: str | None, given: Any, resolve: Any) -> Image.Image | None:
    """The picture a recipe's ``seed_image``/``mask_image`` id stands for.

    Args:
        identity: the recipe's id (``None``: no image).
        given: the caller's image for a ``custom:`` id (checked by fingerprint).
        resolve: :func:`resolve_seed_image` or :func:`resolve_mask_image` (bound to the width).
    """
    if identity is None:
        return None
    if identity.startswith("custom:"):
        if given is None:
            raise ParameterError(
                f"the recipe used a custom image ({identity}); pass it to render()"
            )
        picture, found = resolve(given)
        if found != identity:
            raise ParameterError(f"image identity {found} differs from the recipe's {identity}")
        return picture
    return resolve(identity)[0]
