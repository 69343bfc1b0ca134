"""The server's live streams (``/api/stream``): a bounded table, fed through the device worker.

A :class:`LiveStream` holds a library :class:`~riffusion.compose.stream.Stream` made with
``background=False``, so no stream generates on a thread of its own: every clip is made by a
job on the server's one :class:`~riffusion.server.worker.DeviceWorker`, like ``/api/clip``'s.
A stream keeps its buffer filled by a *pump*: one job at a time that makes one clip ahead and
queues the next when it is done, only while the device queue is at most half full, so clips
made ahead never take the place of a request waiting for its answer, and a stream never has
more than one job in the queue. :class:`StreamRegistry` holds at most :data:`MAX_STREAMS`
streams: one unused for :data:`STREAM_IDLE_S` is closed, and a new one closes the least
recently used (503 when every stream has a request waiting).
"""

from __future__ import annotations

import collections
import functools
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from riffusion.errors import RiffusionError
from riffusion.server.errors import HTTPError
from riffusion.server.worker import DeviceWorker, Job

__all__ = [
    "MAX_STEPS_PER_TRANSITION",
    "MAX_STREAMS",
    "MAX_STREAM_BUFFER",
    "MAX_STREAM_PROMPTS",
    "STREAM_IDLE_S",
    "LiveStream",
    "StreamRegistry",
]

MAX_STREAMS = 4
"""Live streams at most; a new one closes the least recently used."""
STREAM_IDLE_S = 300.0
"""Seconds without a request after which a stream is closed."""
MAX_STREAM_BUFFER = 3
"""Largest ``buffer_ahead`` of a stream (the web app keeps 3 clips ahead)."""
MAX_STREAM_PROMPTS = 16
"""Most prompts a stream may be created with."""
MAX_STEPS_PER_TRANSITION = 32
"""Largest ``steps_per_transition`` of a stream."""


@dataclass(eq=False)
class LiveStream:
    """One stream of ``/api/stream`` and what the server keeps beside it.

    Attributes:
        id: the stream's id (16 hex digits).
        stream: the library stream (``background=False``).
        scheduler: the scheduler its clips are made with.
        sources: recipe id of a ``custom:`` seed image → the picture or audio it came from.
        last_used_s: ``time.monotonic()`` of the last request for it.
        busy: a ``/next`` request is waiting for a clip.
        pump: the job making a clip ahead, or ``None``.
        repump: a change of target arrived while ``pump`` ran: queue another when it ends.
        closed: closed (deleted, expired or evicted).
    """

    id: str
    stream: Any
    scheduler: str
    sources: dict[str, Any] = field(default_factory=dict)
    last_used_s: float = field(default_factory=time.monotonic)
    busy: bool = False
    pump: Job | None = None
    repump: bool = False
    closed: bool = False


class StreamRegistry:
    """The live streams of one server, bounded in number and idle time.

    Args:
        worker: the device worker every clip is made on.
        riffuser: the served :class:`~riffusion.Riffuser`.
        max_streams: streams at most, >= 1.
        idle_s: seconds without a request after which a stream is closed.
        clock: the time source (``time.monotonic``; tests pass their own).
    """

    def __init__(
        self,
        worker: DeviceWorker,
        riffuser: Any,
        *,
        max_streams: int = MAX_STREAMS,
        idle_s: float = STREAM_IDLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.worker, self.riffuser = worker, riffuser
        self.max_streams, self.idle_s, self.clock = max_streams, idle_s, clock
        self._streams: collections.OrderedDict[str, LiveStream] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._streams)

    def add(self, stream: Any, scheduler: str) -> LiveStream:
        """Register a new stream, making room, and start filling its buffer.

        Raises:
            HTTPError: 503 when every stream has a request waiting.
        """
        live = LiveStream(secrets.token_hex(8), stream, scheduler, last_used_s=self.clock())
        with self._lock:
            self._expire()
            while len(self._streams) >= self.max_streams:
                idle = next((old for old in self._streams.values() if not old.busy), None)
                if idle is None:
                    stream.close()
                    raise HTTPError(
                        503,
                        f"{len(self._streams)} streams are live (the most this server keeps) and "
                        "each has a request waiting; retry shortly",
                        headers={"Retry-After": "5"},
                    )
                self._close(self._streams.pop(idle.id))
            self._streams[live.id] = live
        self.pump(live)
        return live

    def get(self, stream_id: str) -> LiveStream:
        """The live stream ``stream_id`` (marked used now).

        Raises:
            HTTPError: 404 for an unknown, closed or expired id.
        """
        with self._lock:
            self._expire()
            live = self._streams.get(stream_id)
            if live is None:
                raise HTTPError(
                    404,
                    f"no live stream {stream_id[:40]!r} (unknown, deleted, or closed after "
                    f"{self.idle_s:g} s unused); start one with POST /api/stream",
                    "stream_id",
                )
            live.last_used_s = self.clock()
            self._streams.move_to_end(stream_id)
            return live

    def remove(self, stream_id: str) -> LiveStream:
        """Close and forget ``stream_id`` (404 as :meth:`get`)."""
        live = self.get(stream_id)
        with self._lock:
            self._streams.pop(stream_id, None)
            self._close(live)
        return live

    def close_all(self) -> None:
        """Close every stream (at shutdown)."""
        with self._lock:
            for live in self._streams.values():
                self._close(live)
            self._streams.clear()

    # ------------------------------------------------------------------ (hold _lock)
    def _expire(self) -> None:
        now = self.clock()
        for live in [old for old in self._streams.values() if not old.busy]:
            if now - live.last_used_s > self.idle_s:
                self._close(self._streams.pop(live.id))

    def _close(self, live: LiveStream) -> None:
        live.closed = True
        live.stream.close()  # stops a clip in progress at its next denoising step
        if live.pump is not None:
            self.worker.cancel(live.pump)

    # ------------------------------------------------------------------------ pumping
    def pump(self, live: LiveStream) -> None:
        """Queue one job that makes a clip ahead, unless one is queued or running, the stream's
        buffer is full, or the device queue is more than half full."""
        with self._lock:
            if live.closed or live.pump is not None:
                live.repump = live.pump is not None
                return
            if live.stream.buffered >= live.stream.buffer_ahead:
                return
            if self.worker.waiting > self.worker.max_queue // 2:
                return  # requests waiting for an answer come first
            try:
                live.pump = self.worker.submit(functools.partial(self._pump_work, live))
            except RiffusionError:  # full or closed: the next request pumps again
                return
            job = live.pump
        job.future.add_done_callback(functools.partial(self._pumped, live))

    def _pump_work(self, live: LiveStream, job: Job) -> bool:
        if live.closed:
            return False
        return with_scheduler(self.riffuser, live.scheduler, job, live.stream.make_ahead)

    def _pumped(self, live: LiveStream, future: Any) -> None:
        made = not future.cancelled() and future.exception() is None and future.result()
        with self._lock:
            live.pump = None
            again, live.repump = made or live.repump, False
        if again:
            self.pump(live)


def with_scheduler(riffuser: Any, scheduler: str, job: Job, make: Callable[[], Any]) -> Any:
    """Run ``make()`` on the device worker with the stream's scheduler, reporting the job's
    steps (and stopping at the next step once the job is cancelled).

    Args:
        riffuser: the served :class:`~riffusion.Riffuser`.
        scheduler: the scheduler name to make the clip with.
        job: the worker job running this.
        make: makes the clip (``stream.make_ahead`` or ``next(stream)``).
    """
    with riffuser.lock:
        if riffuser.scheduler_name != scheduler:
            riffuser.set_scheduler(scheduler)
        with riffuser.on_progress(job.on_progress):
            return make()
