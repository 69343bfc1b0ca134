"""One device, one generation at a time: a worker thread in front of a bounded queue.

Requests :meth:`DeviceWorker.submit` a function; it runs on the worker's single thread, so
generations never overlap on the device. The queue holds at most ``max_queue`` waiting jobs
(:class:`QueueFull` beyond that, which a server answers with 503 and ``Retry-After``).
:meth:`DeviceWorker.cancel` drops a waiting job, or sets the running job's ``cancelled`` event,
which the job's progress callback turns into a stop at the next denoising step.
"""

from __future__ import annotations

import collections
import concurrent.futures
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from riffusion._checks import check_integer
from riffusion.errors import GenerationCancelled, RiffusionError

__all__ = ["DeviceWorker", "Job", "QueueFull"]


class QueueFull(RiffusionError):
    """The queue in front of the device is full.

    Attributes:
        retry_after_s: a whole number of seconds after which a retry is likely to be accepted.
    """

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class Job:
    """A unit of device work.

    Attributes:
        work: called as ``work(job)`` on the worker thread; its result resolves ``future``.
        cancelled: set to ask the job to stop (checked between denoising steps).
        future: resolves to the result, or to the exception ``work`` raised
            (:class:`GenerationCancelled` if it was cancelled).
        enqueued_s, started_s, finished_s: ``time.perf_counter()`` stamps.
        steps_done: denoising steps reported so far by the job's progress callback.
    """

    work: Callable[[Job], Any]
    cancelled: threading.Event = field(default_factory=threading.Event)
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    enqueued_s: float = field(default_factory=time.perf_counter)
    started_s: float | None = None
    finished_s: float | None = None
    steps_done: int = 0

    def on_progress(self, progress: Any) -> bool:
        """A :data:`riffusion.riffuser.ProgressCallback`: counts steps, returns "cancel?"."""
        self.steps_done += 1
        return self.cancelled.is_set()

    @property
    def queued_s(self) -> float:
        """Seconds spent waiting in the queue (so far, if still waiting)."""
        return (self.started_s or time.perf_counter()) - self.enqueued_s


class DeviceWorker:
    """A single worker thread running :class:`Job`\\ s one at a time, in arrival order.

    Args:
        max_queue: most jobs waiting (not counting the running one), >= 0.
    """

    def __init__(self, max_queue: int = 8) -> None:
        self.max_queue = check_integer("max_queue", max_queue, minimum=0)
        self.max_queue = max_queue
        self._waiting: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._condition = threading.Condition()
        self._closed = False
        self._seconds_per_job = 0.0
        self._thread = threading.Thread(target=self._loop, name="riffusion-device", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Jobs waiting plus the one running."""
        with self._condition:
            return len(self._waiting) + (self._running is not None)

    @property
    def waiting(self) -> int:
        """Jobs waiting (not counting the one running)."""
        with self._condition:
            return len(self._waiting)

    @property
    def seconds_per_job(self) -> float:
        """Moving average of the run time of finished jobs (0 before the first)."""
        return self._seconds_per_job

    def submit(self, work: Callable[[Job], Any]) -> Job:
        """Queue ``work``; raises :class:`QueueFull` when ``max_queue`` jobs already wait."""
        job = Job(work)
        with self._condition:
            if self._closed:
                raise RiffusionError("the device worker is closed")
            busy = self._running is not None or bool(self._waiting)
            if busy and len(self._waiting) >= self.max_queue:
                ahead = len(self._waiting) + 1
                retry = max(1, math.ceil(ahead * (self._seconds_per_job or 1.0)))
                raise QueueFull(
                    f"the queue is full ({len(self._waiting)} waiting, max_queue="
                    f"{self.max_queue}); retry in {retry} s",
                    retry,
                )
            self._waiting.append(job)
            self._condition.notify()
        return job

    def cancel(self, job: Job) -> None:
        """Drop ``job`` from the queue, or ask it to stop at its next denoising step."""
        job.cancelled.set()
        with self._condition:
            if job in self._waiting:
                self._waiting.remove(job)
                job.future.set_exception(GenerationCancelled("cancelled while queued"))

    def close(self, timeout_s: float | None = 10.0) -> None:
        """Cancel the waiting jobs and the running one, then stop the thread."""
        with self._condition:
            self._closed = True
            waiting, self._waiting = list(self._waiting), collections.deque()
            if self._running is not None:
                self._running.cancelled.set()
            self._condition.notify_all()
        for job in waiting:
            job.cancelled.set()
            job.future.set_exception(GenerationCancelled("the server is shutting down"))
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._waiting and not self._closed:
                    self._condition.wait()
                if self._closed:
                    return
                job = self._running = self._waiting.popleft()
            job.started_s = time.perf_counter()
            try:
                if job.cancelled.is_set():
                    raise GenerationCancelled("cancelled before it started")
                result = job.work(job)
            except BaseException as error:  # handed to the waiting request
                job.future.set_exception(error)
            else:
                job.future.set_result(result)
            finally:
                job.finished_s = time.perf_counter()
                took = job.finished_s - job.started_s
                self._seconds_per_job = (
                    took if not self._seconds_per_job else 0.7 * self._seconds_per_job + 0.3 * took
                )
                with self._condition:
                    self._running = None
