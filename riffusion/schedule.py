"""The prompt schedule of the original web app's endless playback (a pure value-level walk).

It knows :class:`~riffusion.inputs.PromptInput` and nothing of audio or diffusion, so it imports
neither torch nor diffusers; :meth:`riffusion.Riffuser.stream` renders the steps it yields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from riffusion._checks import check_integer, check_seed, describe
from riffusion.errors import ParameterError
from riffusion.inputs import MAX_SEED, PromptInput

__all__ = ["StreamStep", "retarget_schedule", "stream_schedule", "stream_target"]

_END = object()
"""What ``next`` returns when the prompts run out (``None`` is an item, and refused as one)."""


@dataclass(frozen=True)
class StreamStep:
    """One clip of the endless stream: interpolate from ``start`` to ``end`` at ``alpha``."""

    start: PromptInput
    end: PromptInput
    alpha: float
    index: int

    @property
    def nearest(self) -> PromptInput:
        """The prompt input this step sounds closest to: ``start`` below alpha 0.5, else
        ``end`` (where a live prompt change starts its transition from)."""
        return self.start if self.alpha < 0.5 else self.end


def _next_seed(seed: int) -> int:
    """The seed after ``seed``, wrapping from ``MAX_SEED - 1`` back to 0."""
    return (seed + 1) % MAX_SEED


def _as_prompt_input(item: object, seed: int) -> PromptInput:
    if isinstance(item, PromptInput):
        return item
    if isinstance(item, str):
        return PromptInput(prompt=item, seed=seed)
    if isinstance(item, dict):
        try:
            return PromptInput.from_dict(item)
        except ParameterError as error:
            raise ParameterError(f"prompts: {error}") from None
    raise ParameterError(
        f"prompts must hold PromptInput, str or dict items, got {type(item).__name__}"
    )


def stream_schedule(
    prompts: Iterable[PromptInput | str | dict[str, Any]] | PromptInput | str,
    *,
    steps_per_transition: int = 4,
    seed: int = 0,
    endless: bool = True,
) -> Iterator[StreamStep]:
    """The schedule of the original web app's endless playback.

    Between successive prompts, ``steps_per_transition`` clips at ``alpha = 0, 1/n, ..., (n-1)/n``
    (the next transition starts at alpha 0 of the new start, which equals alpha 1 of the previous
    one). When the next prompt is the same as the current one, or the prompts run out, the seed
    walks instead: ``(prompt, seed) → (prompt, seed + 1)``, so the music keeps evolving.

    Args:
        prompts: prompts as :class:`PromptInput`, plain strings (seeded ``seed``, then walking),
            or riffusion JSON dicts; at least one.
        steps_per_transition: clips per transition (4 in the web app: alpha steps of 0.25).
        seed: seed of a first prompt given as a plain string.
        endless: keep walking the seed after the last prompt (forever); otherwise end with one
            clip of the last prompt itself (``start == end``, alpha 0).

    Yields:
        :class:`StreamStep` values, ``index`` counting from 0.
    """
    check_integer("steps_per_transition", steps_per_transition)
    check_seed("seed", seed)
    if isinstance(prompts, str | PromptInput):
        prompts = [prompts]
    if isinstance(prompts, dict) or not isinstance(prompts, Iterable):
        raise ParameterError(
            f"prompts={prompts!r} must be a prompt or a list of prompts (PromptInput, str or dict)"
        )
    if isinstance(prompts, Sequence):
        if len(prompts) == 0:
            raise ParameterError("prompts is empty; give at least one prompt")
        # A list can be checked now, at the call, rather than when the schedule reaches an item.
        for item in prompts:
            _as_prompt_input(item, seed)
    return _walk_schedule(iter(prompts), steps_per_transition, seed, endless)


def _walk_schedule(
    iterator: Iterator[PromptInput | str | dict[str, Any]],
    steps_per_transition: int,
    seed: int,
    endless: bool,
) -> Iterator[StreamStep]:
    """The generator behind :func:`stream_schedule` (arguments already validated)."""
    first = next(iterator, _END)
    if first is _END:
        raise ParameterError("prompts is empty; give at least one prompt")
    current = _as_prompt_input(first, seed)
    index = 0
    while True:
        following = next(iterator, _END)
        if following is _END:
            if not endless:
                yield StreamStep(current, current, 0.0, index)
                return
            target = dataclasses.replace(current, seed=_next_seed(current.seed))
        else:
            # A plain string already gets the next seed; an equal prompt given in full walks it.
            target = _as_prompt_input(following, _next_seed(current.seed))
            if target == current:
                target = dataclasses.replace(target, seed=_next_seed(current.seed))
        for step in range(steps_per_transition):
            yield StreamStep(current, target, step / steps_per_transition, index)
            index += 1
        current = target


def stream_target(prompt: Any, playing: PromptInput | None) -> PromptInput:
    """The prompt input a live prompt change moves to.

    Args:
        prompt: a :class:`PromptInput` (taken as it is), a riffusion JSON dict, or a plain string,
            which becomes ``playing`` with this text and the next seed (so its negative
            prompt, denoising and guidance carry over, and the music does not repeat a seed);
            without ``playing``, ``PromptInput(prompt)``.
        playing: the prompt input playing now (:attr:`StreamStep.nearest` of the last clip),
            or ``None``.

    Raises:
        ParameterError: ``prompt=... must be ...``, naming the value.
    """
    if isinstance(prompt, PromptInput):
        return prompt
    if isinstance(prompt, str):
        alone = PromptInput(prompt=prompt)  # the text's own checks, naming "prompt="
        if playing is None:
            return alone
        return dataclasses.replace(playing, prompt=prompt, seed=_next_seed(playing.seed))
    if isinstance(prompt, dict):
        try:
            return PromptInput.from_dict(prompt)
        except ParameterError as error:
            raise ParameterError(f"prompt={describe(prompt)}: {error}") from None
    raise ParameterError(
        f"prompt={describe(prompt)} must be a str, a riffusion.PromptInput or a dict of its "
        "fields, e.g. stream.set_prompt('jazz piano')"
    )


def retarget_schedule(
    playing: PromptInput | None,
    target: PromptInput,
    *,
    steps_per_transition: int = 4,
    endless: bool = True,
) -> Iterator[StreamStep]:
    """The schedule after a live prompt change: from ``playing`` to ``target`` in
    ``steps_per_transition`` clips, then as :func:`stream_schedule` goes on from ``target``.

    The transition starts at alpha ``1/n``, so the first clip already moves toward ``target``
    (alpha 0 would be ``playing`` itself, which is already sounding); its ``n``-th clip is
    ``target`` alone. With nothing played yet (``playing=None``) the stream starts at
    ``target``. Indices count from 0 (the stream renumbers them).

    Args:
        playing: the prompt input playing now, or ``None`` before the first clip.
        target: where to go.
        steps_per_transition: clips per transition, a positive int.
        endless: walk the seed of ``target`` forever after; otherwise end with ``target``.

    Yields:
        :class:`StreamStep` values.
    """
    check_integer("steps_per_transition", steps_per_transition)
    if playing is None:
        return _walk_schedule(iter([target]), steps_per_transition, target.seed, endless)
    steps = _walk_schedule(iter([playing, target]), steps_per_transition, playing.seed, endless)
    next(steps)  # alpha 0: the playing prompt itself
    return _renumbered(steps)


def _renumbered(steps: Iterator[StreamStep]) -> Iterator[StreamStep]:
    for index, step in enumerate(steps):
        yield dataclasses.replace(step, index=index)
