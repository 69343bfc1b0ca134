"""A request's work on the device: queued on the worker, dropped when the client goes away.

:func:`run_on_device` is how every route that needs the model (or bounded but real work, like
decoding an upload) waits for it; :func:`riffuse_job` is the work of one generation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from fastapi import Request

from riffusion.errors import GenerationCancelled
from riffusion.server.errors import CLIENT_CLOSED, HTTPError
from riffusion.server.worker import DeviceWorker, Job, QueueFull

__all__ = ["riffuse_job", "run_on_device", "server_timing"]

_DISCONNECT_POLL_S = 0.05


async def run_on_device(
    request: Request, worker: DeviceWorker, work: Callable[[Job], Any]
) -> tuple[Any, Job]:
    """Run ``work(job)`` on ``worker`` and return its result and the job.

    Raises:
        HTTPError: 503 with ``Retry-After`` when the queue is full; 499 when the client
            disconnected (the job is dropped from the queue or stopped at its next step).
        Exception: whatever ``work`` raised.
    """
    try:
        job = worker.submit(work)
    except QueueFull as error:
        raise HTTPError(
            503, str(error), headers={"Retry-After": str(error.retry_after_s)}
        ) from None
    waiting = asyncio.wrap_future(job.future)
    while True:
        done, _ = await asyncio.wait({waiting}, timeout=_DISCONNECT_POLL_S)
        if done:
            break
        if await request.is_disconnected():
            worker.cancel(job)
            with contextlib.suppress(BaseException):
                await waiting
            raise HTTPError(CLIENT_CLOSED, "the client disconnected; generation cancelled")
    try:
        return waiting.result(), job
    except GenerationCancelled as error:
        raise HTTPError(CLIENT_CLOSED, str(error)) from None


def riffuse_job(
    riffuser: Any,
    start: Any,
    end: Any,
    alpha: float,
    steps: int,
    seed_source: Any,
    mask_id: Any,
    scheduler: str,
) -> Callable[[Job], Any]:
    """The work of one :meth:`~riffusion.Riffuser.riffuse` call with ``scheduler``.

    Its progress callback counts the job's steps and stops it once it is cancelled.
    """

    def work(job: Job) -> Any:
        with riffuser.lock:
            if riffuser.scheduler_name != scheduler:
                riffuser.set_scheduler(scheduler)
            with riffuser.on_progress(job.on_progress):
                return riffuser.riffuse(
                    start,
                    end,
                    alpha,
                    num_inference_steps=steps,
                    seed_image=seed_source,
                    mask_image=mask_id,
                )

    return work


def server_timing(job: Job | None, clip: Any, encode_s: float) -> str:
    """The ``Server-Timing`` header of a clip: queue, generate and encode durations (queue 0
    for a clip made ahead, ``job=None``)."""
    generation = clip.debug["timings_s"]["total"]
    queued_s = 0.0 if job is None else job.queued_s
    return (
        f"queue;dur={queued_s * 1000:.1f}, generate;dur={generation * 1000:.1f}, "
        f"encode;dur={encode_s * 1000:.1f}"
    )
