"""The web app's endless playback: a schedule of one-window clips, optionally made ahead in a
background thread while the caller plays the current one."""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from riffusion.inputs import PromptInput
from riffusion.schedule import StreamStep

__all__ = ["buffered", "stream_clips"]

T = TypeVar("T")


def stream_clips(
    schedule: Iterable[StreamStep],
    make_clip: Callable[[PromptInput, PromptInput | None, float], T],
    max_clips: int | None,
) -> Iterator[T]:
    """One clip per schedule step, ``make_clip(start, end, alpha)``; a step whose end equals
    its start is the start alone (the seed walks). Stops after ``max_clips`` (``None``: never
    before the schedule does).

    Args:
        schedule: the stream's steps (:func:`riffusion.schedule.stream_schedule`).
        make_clip: makes one clip from ``(start, end, alpha)``.
        max_clips: how many clips at most, or ``None``.
    """
    for step in schedule:
        if max_clips is not None and step.index >= max_clips:
            return
        end = None if step.end == step.start else step.end
        yield make_clip(step.start, end, step.alpha if end else 0.0)


def buffered(items: Iterator[T], size: int) -> Iterator[T]:
    """Pull ``items`` in one background thread, up to ``size`` ahead of the consumer.

    One worker keeps generation sequential (a model is not thread-safe); torch releases the
    GIL inside its kernels, so the consumer stays responsive. An exception in the worker is
    re-raised to the consumer at the position where it happened; closing the iterator waits for
    the item in progress, then stops the worker. The worker runs in a copy of the context of
    the thread that starts the iteration, so a progress callback set there reports the clips
    it makes ahead.

    Args:
        items: the iterator to pull ahead.
        size: how many items at most wait for the consumer.
    """
    done = object()
    ready: queue.Queue[Any] = queue.Queue(maxsize=size)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ready.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put(done)
        except BaseException as error:  # handed to the consumer, not lost in the thread
            ready.put(error)

    context = contextvars.copy_context()
    worker = threading.Thread(
        target=context.run, args=(work,), name="riffusion-stream", daemon=True
    )
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # Wait for the clip in progress rather than leave a thread inside torch at exit.
        stop.set()
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                ready.get_nowait()
            worker.join(timeout=0.05)
