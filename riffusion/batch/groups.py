"""Groups of jobs rendered in one UNet batch (``render(..., batch_size=N)``).

Which jobs group: single-window recipes of identical settings except the prompt and the seed —

- ``text_to_audio`` recipes of one model window (``duration_s`` up to 5.11 s: one 512-column
  image, no continuation windows), with or without a seed image and mask;
- ``riffuse`` recipes without an end prompt (one window from the start prompt alone, at
  ``alpha`` 0).

Everything else of the two recipes must be equal (model, scheduler and its config, steps,
negative prompt, denoising, guidance, seed image, mask, duration, decoder and its seed,
spectrogram parameters, adapters and their scales, version): :func:`group_key` is the
recipe's canonical JSON without ``start.prompt`` and ``start.seed``. Other recipes (loops,
interpolations, longer clips) render one at a time, as do all jobs with ``batch_size=1``.

A group's windows come from one :meth:`RiffusionPipeline.riffuse_batch
<riffusion.models.sd1.batching.BatchingMixin.riffuse_batch>` call (:func:`generate_group`);
each job's clip is then finished alone from its window (:func:`clip_from_window`) by the same
``riffusion.compose`` function as a job rendered alone, so only the UNet's batch differs.

:func:`group_key` and :func:`form_groups` load no model code; the two rendering functions
import it when called (in a worker).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from riffusion.batch.jobs import BatchJob
from riffusion.defaults import WINDOW_WIDTH
from riffusion.errors import RiffusionError
from riffusion.recipe import Recipe

__all__ = ["Window", "clip_from_window", "form_groups", "generate_group", "group_key"]


def _one_window(recipe: Recipe) -> bool:
    """Whether a ``text_to_audio`` recipe is one model window (as
    :func:`riffusion.compose.continuation.text_to_audio` counts them)."""
    num_samples = round(recipe.duration_s * recipe.params.sample_rate)
    columns = max(2, math.ceil(num_samples / recipe.params.hop_length) + 1)
    return columns <= WINDOW_WIDTH


def group_key(recipe: Recipe) -> str | None:
    """What a recipe must share with the others of its group, or ``None`` if it renders alone.

    Args:
        recipe: a job's recipe.

    Returns:
        The recipe's canonical JSON (sorted keys) without ``start.prompt`` and ``start.seed``
        for a single-window ``text_to_audio`` or end-less ``riffuse`` recipe, else ``None``.
    """
    if recipe.kind == "text_to_audio":
        if not _one_window(recipe):
            return None
    elif recipe.kind != "riffuse" or recipe.end is not None or recipe.alpha != 0.0:
        return None
    data = recipe.to_dict()
    start = dict(data["start"])
    start.pop("prompt", None)
    start.pop("seed", None)
    data["start"] = start
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def form_groups(jobs: Sequence[BatchJob], batch_size: int) -> list[list[BatchJob]]:
    """Split jobs into groups of at most ``batch_size`` jobs of one :func:`group_key`.

    Args:
        jobs: the jobs to render, in order.
        batch_size: the most jobs of one group, an int in [1, 64] (checked by ``render``).

    Returns:
        The groups, ordered by their first job; jobs keep their order within a group. Jobs
        whose key is ``None`` (and every job when ``batch_size`` is 1) are groups of one.
    """
    groups: list[list[BatchJob]] = []
    open_groups: dict[str, list[BatchJob]] = {}  # key -> its group still filling
    for job in jobs:
        key = group_key(job.recipe) if batch_size > 1 else None
        group = open_groups.get(key) if key is not None else None
        if group is None or len(group) >= batch_size:
            group = []
            groups.append(group)
            if key is not None:
                open_groups[key] = group
        group.append(job)
    return groups


@dataclass(frozen=True)
class Window:
    """One job's generated window, made in a group.

    Attributes:
        result: its :class:`~riffusion.models.sd1.generation.GenerationResult`.
        seed_picture: the group's RGB seed image, or ``None``.
        mask_picture: the group's ``L`` mask, or ``None``.
        share_s: the job's share of the group's generation time, in seconds.
    """

    result: Any
    seed_picture: Any
    mask_picture: Any
    share_s: float


def generate_group(riffuser: Any, recipes: Sequence[Recipe]) -> list[Window]:
    """Generate the window of every recipe of a group in one UNet batch.

    The recipes' scheduler and LoRA scales are installed for the call, as
    ``Riffuser.render`` does; the Riffuser must already hold their adapters and parameters.

    Args:
        riffuser: the worker's :class:`~riffusion.Riffuser` for these recipes.
        recipes: 2 to 64 recipes of one :func:`group_key`.

    Returns:
        One :class:`Window` per recipe, in order.

    Raises:
        RiffusionError: the recipes are not one group, the model cannot generate batches, or
            the generation failed (the caller then renders the jobs one at a time).
    """
    import time

    from riffusion.adapters import adapters_of
    from riffusion.compose.inputs import recipe_image, resolve_mask_image, resolve_seed_image
    from riffusion.compose.replay import scheduler_of

    keys = {group_key(recipe) for recipe in recipes}
    if len(keys) != 1 or None in keys:
        raise RiffusionError("these recipes differ in more than prompt and seed: not one group")
    first = recipes[0]
    model = riffuser.pipeline
    riffuse_batch = getattr(model, "riffuse_batch", None)
    if riffuse_batch is None:
        raise RiffusionError(f"{type(model).__name__} cannot generate batches (no riffuse_batch)")
    seed = recipe_image(
        first.seed_image, None, functools.partial(resolve_seed_image, params=first.params)
    )
    mask = recipe_image(first.mask_image, None, resolve_mask_image)
    started = time.perf_counter()
    with riffuser.lock, scheduler_of(model, first), adapters_of(model, first):
        results = riffuse_batch(
            [recipe.start for recipe in recipes],
            init_image=seed,
            mask_image=mask,
            num_inference_steps=first.num_inference_steps,
            width=None if seed is not None else WINDOW_WIDTH,
            height=None if seed is not None else first.params.num_frequencies,
        )
    share_s = (time.perf_counter() - started) / len(recipes)
    return [Window(result, seed, mask, share_s) for result in results]


def clip_from_window(riffuser: Any, recipe: Recipe, window: Window) -> Any:
    """Finish one job's clip from its window: the recipe's ``riffusion.compose`` function runs
    as for a job rendered alone, its one window call answered with ``window``.

    Args:
        riffuser: the worker's Riffuser (where the decoder runs follows its device).
        recipe: the job's recipe (a member of the group ``window`` came from).
        window: the job's window from :func:`generate_group`.

    Returns:
        The job's :class:`~riffusion.Clip`.

    Raises:
        RiffusionError: the recipe asked for another window than the one generated.
    """
    import torch

    from riffusion.compose.continuation import text_to_audio
    from riffusion.compose.interpolation import riffuse
    from riffusion.compose.windows import window_info

    calls: list[None] = []

    def generate(start: Any, end: Any, alpha: float, **kwargs: Any) -> tuple[Any, Any]:
        asked = (start, end, alpha, kwargs.get("init_image"), kwargs.get("mask_image"))
        made = (recipe.start, None, 0.0, window.seed_picture, window.mask_picture)
        same = all(a is m or a == m for a, m in zip(asked, made, strict=True))
        if calls or not same or kwargs.get("steps") != recipe.num_inference_steps:
            raise RiffusionError(
                f"the {recipe.kind} recipe asked for another window than the group generated"
            )
        calls.append(None)
        return window.result.image, window_info(window.result)

    # As Riffuser: phase recovery on CUDA when the model runs there, else on the CPU.
    device = torch.device(riffuser.pipeline.device)
    device = device if device.type == "cuda" else torch.device("cpu")
    finish = text_to_audio if recipe.kind == "text_to_audio" else riffuse
    return finish(generate, recipe, window.seed_picture, window.mask_picture, device=device)
