"""The web app's endless playback as a live object: one-window clips along a prompt schedule,
optionally made ahead in the background, whose target can change while it plays.

:class:`Stream` is what :meth:`riffusion.Riffuser.stream` returns. Iterate it for clips; from
another thread (a UI) call :meth:`Stream.set_prompt`, :meth:`Stream.set_seed_image`,
:meth:`Stream.set_denoising` ... : the clips made ahead for the old target are dropped (the one
being generated is stopped at its next denoising step), so the very next clip taken already
follows the change. The schedule itself is :mod:`riffusion.schedule` (no torch); a clip's two
stages, its image and its decode, are :mod:`riffusion.compose.stream_stages`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextvars
import dataclasses
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from riffusion._checks import check_integer, describe, finite_float
from riffusion.compose.inputs import resolve_mask_image, resolve_seed_image
from riffusion.compose.stream_stages import ClipStages, StreamSettings, StreamTask
from riffusion.errors import ParameterError, RiffusionError
from riffusion.inputs import PromptInput, check_alpha
from riffusion.progress import StepHooks
from riffusion.recipe import Clip
from riffusion.schedule import StreamStep, retarget_schedule, stream_target

__all__ = ["KEEP", "Stream", "StreamSettings", "StreamTask"]

KEEP: Any = type("Keep", (), {"__repr__": lambda self: "KEEP"})()
"""The default of :meth:`Stream.set_target`'s arguments: leave this one as it is."""

_PROBE = PromptInput("probe")  # checks a new prompt before the stream is touched


@dataclass(eq=False)
class _Slot:
    """A clip planned ahead: being made, or made (its clip or its error)."""

    task: StreamTask
    clip: Clip | None = None
    error: BaseException | None = None
    done: bool = False


class _Engine:
    """The state of a :class:`Stream` and the code that makes its clips.

    Only this object is shared with the worker threads (never the :class:`Stream`), so a stream
    dropped without :meth:`Stream.close` is collected and its finalizer stops the worker.
    ``_cond`` guards everything below it; ``_making`` lets one caller at a time make clips on
    its own thread (without a background worker).
    """

    def __init__(
        self,
        stages: ClipStages,
        schedule: Iterator[StreamStep],
        settings: StreamSettings,
        *,
        steps_per_transition: int,
        endless: bool,
        max_clips: int | None,
        capacity: int,
        background: bool,
    ) -> None:
        self.stages, self.steps_per_transition, self.endless = stages, steps_per_transition, endless
        self.max_clips, self.capacity, self.background = max_clips, capacity, background
        self.epoch = 0  # read without the lock by the cancellation hook (an int is atomic)
        self._cond = threading.Condition()
        self._making = threading.Lock()
        self.settings = settings
        self.taken = 0
        self.last: StreamTask | None = None
        self._schedule = schedule
        self._pending: collections.deque[StreamStep] = collections.deque()
        self._slots: collections.deque[_Slot] = collections.deque()
        self._exhausted = False
        self._schedule_error: Exception | None = None
        self.closed = False
        self._worker: threading.Thread | None = None
        self._decoder: concurrent.futures.ThreadPoolExecutor | None = None

    # ------------------------------------------------------------ state (hold _cond)
    def _limit_reached(self) -> bool:
        return self.max_clips is not None and self.taken + len(self._slots) >= self.max_clips

    def _ended(self) -> bool:
        """Nothing more will come unless the target changes (or ever, once closed)."""
        if self.closed:
            return True
        if self._slots or self._schedule_error is not None:
            return False
        if self.max_clips is not None and self.taken >= self.max_clips:
            return True
        return self._exhausted and not self._pending

    def _next_step(self) -> StreamStep | None:
        if self._pending:
            return self._pending.popleft()
        if self._exhausted:
            return None
        try:
            step = next(self._schedule, None)
        except Exception as error:  # a bad item of a lazy prompt iterable: raised in its place
            self._schedule_error, step = error, None
        if step is None:
            self._exhausted = True
        return step

    def _claim(self) -> _Slot | None:
        """Plan the next clip (the next step, at the settings in force), or ``None``."""
        if self.closed or self._limit_reached():
            return None
        step = self._next_step()
        if step is None:
            self._cond.notify_all()  # the end (or a bad prompt) is news to a waiting consumer
            return None
        step = dataclasses.replace(step, index=self.taken + len(self._slots))
        slot = _Slot(StreamTask(self.epoch, step, self.settings))
        self._slots.append(slot)
        return slot

    def _take(self) -> Clip | None:
        """The next clip if it is made; raises its error, or StopIteration at the end."""
        if self._slots:
            if not self._slots[0].done:
                return None
            slot = self._slots.popleft()
            self._cond.notify_all()
            if slot.error is not None:
                self._pending.appendleft(slot.task.step)  # not consumed: made again next time
                raise slot.error
            self.taken, self.last = self.taken + 1, slot.task
            return slot.clip
        if self._schedule_error is not None:
            error, self._schedule_error = self._schedule_error, None
            raise error
        if self._ended():
            raise StopIteration
        return None

    def buffered(self) -> int:
        """Clips made ahead and waiting to be taken."""
        with self._cond:
            return sum(slot.done and slot.error is None for slot in self._slots)

    # ---------------------------------------------------------------------- consuming
    def next(self) -> Clip:
        if self.background:
            self._start_worker()
        try:
            while True:
                with self._cond:
                    clip = self._take()
                    while clip is None and (self.background or self._slots):
                        self._cond.wait()  # a worker (or another thread) is making it
                        clip = self._take()
                if clip is not None:
                    return clip
                self._make_one()  # nobody is making it: make it here
        except StopIteration:
            self.close(wait=True)
            raise

    def poll(self) -> Clip | None:
        with self._cond:
            return self._take() if self._slots and self._slots[0].done else None

    # ------------------------------------------------------------------------- making
    def _make_one(self) -> None:
        with self._making:
            with self._cond:
                if self._slots:
                    return  # another thread made one meanwhile
                slot = self._claim()
            if slot is not None:
                self._produce(slot, decoder=None)

    def make_ahead(self) -> bool:
        if self.background:
            raise ParameterError(
                "make_ahead() is for a stream made with background=False; this one makes its "
                "clips ahead in a background thread"
            )
        with self._making:
            with self._cond:
                slot = self._claim() if self._has_room() else None
            if slot is None:
                return False
            self._produce(slot, decoder=None)
            with self._cond:
                return slot.done and slot.error is None

    def _has_room(self) -> bool:
        """Fewer than ``capacity`` clips ahead, and none failed: after a failure nothing more
        is made until the consumer has taken the error (the failed clip is then made again,
        in its place)."""
        return len(self._slots) < self.capacity and not any(
            slot.error is not None for slot in self._slots
        )

    def _can_claim(self) -> bool:
        return (
            self._has_room()
            and not self._limit_reached()
            and bool(self._pending or not self._exhausted)
        )

    def _start_worker(self) -> None:
        with self._cond:
            if self._worker is not None or self.closed:
                return
            if self.capacity > 1:  # the next clip's window may be generated during a decode
                self._decoder = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="riffusion-stream-decode"
                )
            # The worker runs in a copy of the consumer's context: a progress callback set
            # there (Riffuser.on_progress) reports the clips made ahead.
            context = contextvars.copy_context()
            self._worker = threading.Thread(
                target=context.run, args=(self._work,), name="riffusion-stream", daemon=True
            )
            self._worker.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self.closed and not self._can_claim():
                    self._cond.wait()
                if self.closed:
                    return
                slot = self._claim()
            if slot is not None:
                self._produce(slot, self._decoder)

    def _hooks(self, task: StreamTask) -> StepHooks:
        def cancel_if_stale(model: Any, step: int, timestep: Any, tensors: Any) -> None:
            if task.epoch != self.epoch:
                model.interrupt = True  # the model stops before its next step

        return StepHooks(cancel_if_stale, ())

    def _produce(self, slot: _Slot, decoder: concurrent.futures.ThreadPoolExecutor | None) -> None:
        try:
            drawn = self.stages.draw(slot.task, self._hooks(slot.task))
        except BaseException as error:  # handed to the consumer in the clip's place
            self._settle(slot, None, error)
            return
        if slot.task.epoch != self.epoch:
            return  # the target changed (a model without interrupt finishes its window)
        if decoder is None or not self.stages.decode_apart(drawn):
            self._decode(slot, drawn)
            return
        try:
            decoder.submit(self._decode, slot, drawn)
        except RuntimeError:  # shut down: the stream closed meanwhile
            return

    def _decode(self, slot: _Slot, drawn: Any) -> None:
        if slot.task.epoch != self.epoch:
            return
        try:
            clip = self.stages.decode(drawn)
        except BaseException as error:
            self._settle(slot, None, error)
            return
        self._settle(slot, clip, None)

    def _settle(self, slot: _Slot, clip: Clip | None, error: BaseException | None) -> None:
        with self._cond:
            if slot.task.epoch != self.epoch:
                return  # dropped by a change of target, or closed: never delivered
            slot.clip, slot.error, slot.done = clip, error, True
            self._cond.notify_all()

    # ------------------------------------------------------------------------ changes
    def _upcoming(self) -> PromptInput | None:
        """The start of the first clip to come, before any was taken (peeks the schedule)."""
        if self._slots:
            return self._slots[0].task.step.start
        step = self._next_step()
        if step is None:
            return None
        self._pending.appendleft(step)
        return step.start

    def retarget(self, prompt: Any, patch: dict[str, Any]) -> int:
        """Apply a checked change; returns how many clips planned ahead were dropped."""
        with self._cond:
            if self.closed:
                raise RiffusionError(
                    "the stream is closed (close() was called or it ended); start a new one "
                    "with riffuser.stream(...)"
                )
            settings = dataclasses.replace(self.settings, **patch)
            check_pictures(settings, patch)
            if prompt is not KEEP:
                playing = None if self.last is None else self.last.step.nearest
                target = stream_target(prompt, playing or self._upcoming())
                self._schedule = retarget_schedule(
                    playing,
                    target,
                    steps_per_transition=self.steps_per_transition,
                    endless=self.endless,
                )
                self._pending.clear()
                self._exhausted, self._schedule_error = False, None
            dropped = list(self._slots)
            self._slots.clear()
            if prompt is KEEP:  # the same steps, made again with the new settings
                self._pending.extendleft(reversed([slot.task.step for slot in dropped]))
            self.settings = settings
            self.epoch += 1  # stale: stops the clip being generated at its next step
            self._cond.notify_all()
            return len(dropped)

    def close(self, wait: bool = True) -> None:
        with self._cond:
            self.closed = True
            self.epoch += 1
            self._slots.clear()
            self._pending.clear()
            self._cond.notify_all()
            worker, decoder = self._worker, self._decoder
        if wait and worker is not None and worker is not threading.current_thread():
            worker.join()
        if decoder is not None:
            decoder.shutdown(wait=wait, cancel_futures=True)


def check_pictures(settings: StreamSettings, patch: dict[str, Any]) -> None:
    """A mask needs a seed image of its size.

    Args:
        settings: the settings a change would give.
        patch: the fields it changes (for the message).

    Raises:
        ParameterError: naming the value of the change that broke the pairing.
    """
    mask, seed = settings.mask_picture, settings.seed_picture
    if mask is None:
        return
    if seed is None:
        named = "seed_image=None" if "seed_id" in patch else f"mask_image={settings.mask_id!r}"
        raise ParameterError(
            f"{named}: a mask needs a seed image (white = regenerate it); set a seed image, "
            "or mask_image=None"
        )
    if mask.size != seed.size:
        raise ParameterError(
            f"mask_image={settings.mask_id!r} is {mask.size[0]}x{mask.size[1]} pixels; it must "
            f"be the seed image's {seed.size[0]}x{seed.size[1]}"
        )


def _check_guidance(guidance: Any) -> float:
    number = finite_float(guidance)
    if number is None or number < 0:
        raise ParameterError(f"guidance={describe(guidance)} must be a finite number >= 0")
    return number


class Stream:
    """An endless stream of one-window clips whose target can change while it plays.

    Made by :meth:`riffusion.Riffuser.stream`. Iterate it (``for clip in stream``,
    ``next(stream)``); each clip is a :class:`~riffusion.Clip` of one window (225,351 samples,
    5.11 s, at 44.1 kHz for the default parameters) with its ``riffuse`` recipe. Close it
    (``close()``, or ``with``) to stop its background worker; a stream dropped unclosed is
    stopped when collected.

    **Live changes** (thread-safe, e.g. from a UI thread while another plays):
    :meth:`set_prompt`, :meth:`set_seed_image`, :meth:`set_mask_image`, :meth:`set_denoising`,
    :meth:`set_guidance`, or several at once with :meth:`set_target`. Each value is checked
    at the call (:class:`~riffusion.errors.ParameterError` naming it) before the stream is
    touched. The clips made ahead for the old target and not yet taken are dropped (never
    delivered) and the one being generated is stopped at its next denoising step, so the very
    next clip taken follows the change:

    - a new prompt: the transition starts from the prompt playing (the end the last clip taken
      is nearest, :attr:`playing`) and reaches the new one in ``steps_per_transition`` clips,
      at alpha ``1/n, 2/n, ...``; then the seed walks as before (or, with ``endless=False``,
      the stream ends on it). Before the first clip, the stream starts at the new prompt.
    - a new seed image, mask, denoising or guidance: the same schedule steps, made with it.

    Without changes the clips are exactly those of :meth:`riffusion.Riffuser.riffuse` at each
    step of :func:`riffusion.schedule.stream_schedule`, whatever ``buffer_ahead``.

    **Errors** while making a clip are raised by ``next()`` in the clip's place; that clip is
    not consumed (the next call tries it again).

    Args:
        stages: makes a clip's image and decodes it
            (:class:`~riffusion.compose.stream_stages.RiffuseStages`).
        schedule: the steps to play (:func:`riffusion.schedule.stream_schedule`).
        settings: the seed image, mask and steps of every clip.
        steps_per_transition: clips per transition after a live prompt change, a positive int.
        endless: after a live prompt change, walk its seed forever (else end on it).
        max_clips: stop after this many clips taken (``None``: never), an int >= 0.
        buffer_ahead: most clips made ahead of the one taken (the one being made included),
            an int >= 0; 0 makes each clip when it is asked for.
        background: make the clips ahead in a background thread (started by the first
            ``next()``, in a copy of its context, so a progress callback set there reports
            them; with ``buffer_ahead >= 2`` and a CUDA device a second thread decodes, so the
            next clip's image is generated while the previous one is decoded). ``False``: only
            :meth:`make_ahead` makes them, on the caller's thread (an app with its own device
            worker, like ``riffusion serve``).
    """

    def __init__(
        self,
        stages: ClipStages,
        schedule: Iterator[StreamStep],
        settings: StreamSettings,
        *,
        steps_per_transition: int = 4,
        endless: bool = True,
        max_clips: int | None = None,
        buffer_ahead: int = 0,
        background: bool = True,
    ) -> None:
        check_integer("steps_per_transition", steps_per_transition)
        if max_clips is not None:
            check_integer("max_clips", max_clips, minimum=0)
        check_integer("buffer_ahead", buffer_ahead, minimum=0)
        for name, flag in (("endless", endless), ("background", background)):
            if not isinstance(flag, bool):
                raise ParameterError(f"{name}={describe(flag)} must be True or False")
        check_pictures(settings, {})
        self._engine = _Engine(
            stages, schedule, settings, steps_per_transition=steps_per_transition,
            endless=endless, max_clips=max_clips, capacity=buffer_ahead,
            background=background and buffer_ahead > 0,
        )  # fmt: skip
        weakref.finalize(self, self._engine.close, False)

    # -------------------------------------------------------------------- iterating
    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> Clip:
        """The next clip: made ahead, or made now (waiting for it)."""
        return self._engine.next()

    def poll(self) -> Clip | None:
        """The next clip if it is already made, else ``None`` (never waits or generates)."""
        return self._engine.poll()

    def make_ahead(self) -> bool:
        """Make one clip ahead on this thread (streams made with ``background=False``).

        Returns ``True`` when a clip was added; ``False`` when ``buffer_ahead`` clips already
        wait, the stream has ended, or the target changed meanwhile. An error is kept for
        ``next()`` to raise in the clip's place.
        """
        return self._engine.make_ahead()

    def close(self) -> None:
        """Stop: drop the clips made ahead, stop the one being generated at its next step and
        wait for the worker threads. Closing twice is fine; ``next()`` then stops."""
        self._engine.close(wait=True)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------------ state
    @property
    def buffered(self) -> int:
        """Clips made ahead and ready to be taken now."""
        return self._engine.buffered()

    @property
    def buffer_ahead(self) -> int:
        """Most clips made ahead of the one taken (0: each is made when asked for)."""
        return self._engine.capacity

    @property
    def taken(self) -> int:
        """Clips delivered so far."""
        return self._engine.taken

    @property
    def playing(self) -> PromptInput | None:
        """The prompt input the last clip taken is nearest (``None`` before the first): where
        a new prompt's transition starts."""
        last = self._engine.last
        return None if last is None else last.step.nearest

    @property
    def settings(self) -> StreamSettings:
        """The seed image, mask, steps and overrides the next clips are made with."""
        return self._engine.settings

    @property
    def closed(self) -> bool:
        """Whether the stream was closed (or reached its end)."""
        return self._engine.closed

    # ------------------------------------------------------------------------ changes
    def set_target(
        self,
        *,
        prompt: Any = KEEP,
        seed_image: Any = KEEP,
        mask_image: Any = KEEP,
        denoising: Any = KEEP,
        guidance: Any = KEEP,
    ) -> int:
        """Change several things at once (one drop of the clips made ahead); each argument
        left at :data:`KEEP` stays as it is.

        Args:
            prompt: where to go: a :class:`PromptInput`, a riffusion JSON dict, or a string
                (the playing prompt input with this text and the next seed).
            seed_image: as ``Riffuser.riffuse``'s: an id, a path, a PIL image, Audio, or
                ``None`` for text-to-image.
            mask_image: a mask id, path or PIL image (white = regenerate), or ``None``.
            denoising: img2img strength in [0, 1] for every next clip, or ``None`` for the
                prompt inputs' own.
            guidance: classifier-free guidance (finite, >= 0) for every next clip, or ``None``
                for the prompt inputs' own.

        Returns:
            How many clips planned ahead were dropped.

        Raises:
            ParameterError: a bad value (nothing is changed).
            RiffusionError: the stream is closed.
        """
        if prompt is not KEEP:
            stream_target(prompt, _PROBE)  # checked now; resolved against the playing prompt
        patch: dict[str, Any] = {}
        params = self._engine.stages.params
        if seed_image is not KEEP:
            patch["seed_picture"], patch["seed_id"] = resolve_seed_image(seed_image, params)
        if mask_image is not KEEP:
            patch["mask_picture"], patch["mask_id"] = resolve_mask_image(mask_image)
        if denoising is not KEEP:
            patch["denoising"] = (
                None if denoising is None else check_alpha(denoising, name="denoising")
            )
        if guidance is not KEEP:
            patch["guidance"] = None if guidance is None else _check_guidance(guidance)
        if prompt is KEEP and not patch:
            return 0
        return self._engine.retarget(prompt, patch)

    def set_prompt(self, prompt: Any) -> int:
        """Move to a new prompt (see :meth:`set_target`); returns the clips dropped.

        Args:
            prompt: a :class:`PromptInput`, a riffusion JSON dict or a string.
        """
        return self.set_target(prompt=prompt)

    def set_seed_image(self, seed_image: Any) -> int:
        """Make the next clips on another seed image; returns the clips dropped.

        Args:
            seed_image: an id, a path, a PIL image, Audio, or ``None``.
        """
        return self.set_target(seed_image=seed_image)

    def set_mask_image(self, mask_image: Any) -> int:
        """Make the next clips with another mask; returns the clips dropped.

        Args:
            mask_image: a mask id, path or PIL image, or ``None``.
        """
        return self.set_target(mask_image=mask_image)

    def set_denoising(self, denoising: Any) -> int:
        """Make the next clips at this img2img strength; returns the clips dropped.

        Args:
            denoising: a number in [0, 1], or ``None`` for the prompt inputs' own.
        """
        return self.set_target(denoising=denoising)

    def set_guidance(self, guidance: Any) -> int:
        """Make the next clips at this guidance scale; returns the clips dropped.

        Args:
            guidance: a finite number >= 0, or ``None`` for the prompt inputs' own.
        """
        return self.set_target(guidance=guidance)

    def __repr__(self) -> str:
        engine = self._engine
        return (
            f"Stream(taken={engine.taken}, buffered={engine.buffered()}, "
            f"buffer_ahead={engine.capacity}, closed={engine.closed})"
        )
