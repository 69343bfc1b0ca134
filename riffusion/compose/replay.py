"""Recipes recorded from a model's state, and rendered again from them.

Every verb of :class:`riffusion.Riffuser` builds a :class:`~riffusion.Recipe` and renders it
with :func:`render_recipe`; :meth:`riffusion.Riffuser.render` does the same with a recipe
someone shared, with the recipe's scheduler and adapters installed for the call. So a clip and
its share string run the same algorithm, bit for bit.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from PIL import Image

from riffusion.adapters import adapters_of, loaded_adapters
from riffusion.compose.audio_windows import audio_to_audio
from riffusion.compose.continuation import text_to_audio
from riffusion.compose.inputs import recipe_image, resolve_mask_image, resolve_seed_image
from riffusion.compose.interpolation import riffuse
from riffusion.compose.loops import loop, recipe_loop_width
from riffusion.compose.windows import GenerateWindow, window_generator
from riffusion.convert import audio_to_image
from riffusion.errors import ParameterError
from riffusion.inputs import PromptInput
from riffusion.params import SpectrogramParams
from riffusion.progress import StepHooks
from riffusion.recipe import Clip, Recipe
from riffusion.seeds import image_fingerprint

__all__ = ["Inputs", "make_recipe", "render_recipe", "scheduler_of"]


@dataclass(frozen=True)
class Inputs:
    """What a recipe names but cannot hold: resolved pictures, or the caller's custom ones.

    Attributes:
        seed_picture: the resolved seed image (a verb resolves it once), or ``None``.
        mask_picture: the resolved mask, or ``None``.
        source: an ``audio_to_audio`` input's RGB spectrogram and its length in samples.
        seed_image: the caller's image for a recipe's ``custom:`` seed image id.
        mask_image: the caller's image for a recipe's ``custom:`` mask id.
        resolved: a verb's inputs, resolved when its recipe was recorded from the model (so
            there is no scheduler or adapter to install and no input to check), rather than
            pictures to resolve from the recipe's ids.
    """

    seed_picture: Image.Image | None = None
    mask_picture: Image.Image | None = None
    source: tuple[Image.Image, int] | None = None
    seed_image: Any = None
    mask_image: Any = None
    resolved: bool = False


def make_recipe(
    model: Any,
    kind: str,
    start: PromptInput,
    *,
    model_id: str,
    params: SpectrogramParams,
    decode_method: str,
    decode_seed: int,
    **values: Any,
) -> Recipe:
    """The recipe of a clip about to be made, with what will run: the model's scheduler as it
    is now (however it was set) and the adapters loaded now.

    Args:
        model: the image model (its scheduler and adapters are recorded).
        kind: the recipe's kind.
        start: the start prompt input.
        model_id: the id or folder recorded as ``model``.
        params: the spectrogram parameters.
        decode_method: the registered decoder.
        decode_seed: its seed.
        **values: the other :class:`Recipe` fields of this kind.
    """
    scheduler, overrides = model.describe_scheduler()
    return Recipe(
        kind=kind,
        model=model_id,
        scheduler=scheduler,
        scheduler_config=overrides or None,
        start=start,
        decode_method=decode_method,
        decode_seed=decode_seed,
        params=params,
        adapters=loaded_adapters(model),
        **values,
    )


@contextlib.contextmanager
def scheduler_of(model: Any, recipe: Recipe) -> Iterator[None]:
    """Run the block with the recipe's scheduler; the model's own is put back after.

    Args:
        model: the image model.
        recipe: the recipe whose scheduler runs the block.
    """
    overrides = recipe.scheduler_config or {}
    if model.describe_scheduler() == (recipe.scheduler, overrides):
        yield
        return
    own = model.scheduler
    model.scheduler = model.build_scheduler(recipe.scheduler, overrides)
    try:
        yield
    finally:
        model.scheduler = own


def audio_source(audio: Any, params: SpectrogramParams) -> tuple[Image.Image, int]:
    """The spectrogram an ``audio_to_audio`` input is transformed through, and its length:
    the audio resampled to ``params.sample_rate`` and mixed to mono first.

    Args:
        audio: the input :class:`Audio`.
        params: the spectrogram parameters.
    """
    prepared = audio.resample(params.sample_rate).to_mono()
    return audio_to_image(prepared, params), prepared.num_samples


def _pictures(recipe: Recipe, inputs: Inputs) -> tuple[Image.Image | None, Image.Image | None]:
    if inputs.resolved:
        return inputs.seed_picture, inputs.mask_picture
    width = recipe_loop_width(recipe) if recipe.kind == "loop" else None
    resolve_seed = functools.partial(
        resolve_seed_image, params=recipe.params, **({"width": width} if width else {})
    )
    seed = recipe_image(recipe.seed_image, inputs.seed_image, resolve_seed)
    mask = recipe_image(recipe.mask_image, inputs.mask_image, resolve_mask_image)
    return seed, mask


def render_recipe(
    model: Any,
    recipe: Recipe,
    inputs: Inputs,
    *,
    device: Any,
    hooks: StepHooks | None = None,
) -> Clip:
    """Make the clip ``recipe`` describes with ``model``, under its scheduler and adapters.

    Args:
        model: an :class:`~riffusion.models.ImageModel`.
        recipe: what to make.
        inputs: the pictures (resolved by a verb, or the caller's custom ones).
        device: where the decoder runs.
        hooks: the caller's per-step hook.
    """
    generate = window_generator(model, recipe.params, hooks)
    if inputs.resolved:
        # A verb's recipe was just recorded from this model's scheduler, adapters and input:
        # installing them again or fingerprinting the input again would only repeat that work.
        return _make(generate, recipe, inputs, device)
    with scheduler_of(model, recipe), adapters_of(model, recipe):
        if recipe.kind == "audio_to_audio":
            _check_source(recipe, inputs)
        return _make(generate, recipe, inputs, device)


def _check_source(recipe: Recipe, inputs: Inputs) -> None:
    """The caller's input audio of an ``audio_to_audio`` recipe, checked by fingerprint."""
    if inputs.source is None:
        raise ParameterError("this recipe transforms audio: pass audio=")
    found = image_fingerprint(inputs.source[0])
    if found != recipe.input_audio:
        raise ParameterError(
            f"audio fingerprint {found} differs from the recipe's {recipe.input_audio}"
        )


def _make(generate: GenerateWindow, recipe: Recipe, inputs: Inputs, device: Any) -> Clip:
    """Run the recipe's algorithm (the scheduler and adapters are in place)."""
    if recipe.kind == "audio_to_audio":
        assert inputs.source is not None  # the verb made it, or _check_source checked it
        source, num_samples = inputs.source
        return audio_to_audio(generate, recipe, source, num_samples, device=device)
    seed_picture, mask_picture = _pictures(recipe, inputs)
    if recipe.kind == "text_to_audio":
        return text_to_audio(generate, recipe, seed_picture, mask_picture, device=device)
    if recipe.kind == "loop":
        return loop(generate, recipe, seed_picture, device=device)
    return riffuse(generate, recipe, seed_picture, mask_picture, device=device)
