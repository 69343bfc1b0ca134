"""The batch engines: the jobs' attempts run in this process (``local``) or on Ray actors.

Both run :class:`~riffusion.batch.worker.RenderWorker` on one group of jobs at a time (one job
by default; up to ``batch_size`` jobs of one :func:`~riffusion.batch.groups.group_key` in one
UNet batch), retry an attempt that failed, alone, while the worker says it may pass next time,
and hand every job's final answer to ``record`` (in this process). They differ only in where
the workers live.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from riffusion.batch.groups import form_groups
from riffusion.batch.jobs import BatchJob
from riffusion.batch.storage import Storage
from riffusion.batch.worker import RenderWorker, failed_result, job_payload
from riffusion.errors import ModelLoadError, ParameterError, RiffusionError, install_hint

__all__ = ["Record", "run_local", "run_ray"]

Record = Callable[[BatchJob, Mapping[str, Any], int, float], None]
"""``record(job, answer, attempts, total_s)``: a job's last answer, after ``attempts`` tries
that took ``total_s`` seconds in all (seen from this process)."""


def run_local(
    todo: list[BatchJob],
    model: str,
    storage: Storage,
    options: dict[str, Any],
    *,
    record: Record,
    max_retries: int,
    started: float,
    batch_size: int = 1,
) -> float:
    """Render ``todo`` one group after the other with one :class:`RenderWorker` in this process.

    Args:
        todo: the jobs to render, in order.
        model: hub id or diffusers folder of the checkpoint.
        storage: where the files go.
        options: the worker's keyword arguments (device, dtype, num_threads, ...).
        record: called with each job's final answer (see :data:`Record`).
        max_retries: extra attempts of a job whose answer says it may pass next time (a
            retry renders the job alone).
        started: ``time.perf_counter()`` when the batch started.
        batch_size: the most jobs of one group (see :func:`~riffusion.batch.groups.form_groups`).

    Returns:
        Seconds from ``started`` until the worker had loaded the model.

    Raises:
        ModelLoadError: the model could not be loaded.
    """
    try:
        worker = RenderWorker(model, storage, **options)
    except RiffusionError:
        raise
    except Exception as error:
        raise ModelLoadError(f"could not load model {model!r}: {error}") from error
    startup_s = time.perf_counter() - started
    for group in form_groups(todo, batch_size):
        group_started = time.perf_counter()
        results = worker.render_group([job_payload(job, 1) for job in group])
        for job, result in zip(group, results, strict=True):
            attempt = 1
            while not _final(result, attempt, max_retries):
                attempt += 1
                result = worker(job_payload(job, attempt))
            record(job, result, attempt, time.perf_counter() - group_started)
    return startup_s


def _final(result: Mapping[str, Any], attempt: int, max_retries: int) -> bool:
    """Whether an attempt's answer is the job's last: done, not retryable, or out of tries."""
    return bool(result["ok"] or not result["retry"] or attempt > max_retries)


def run_ray(
    todo: list[BatchJob],
    model: str,
    storage: Storage,
    options: dict[str, Any],
    *,
    record: Record,
    max_retries: int,
    workers: int,
    gpus_per_worker: float,
    cpus_per_worker: int,
    address: str | None,
    started: float,
    wait_for_resources: bool = False,
    batch_size: int = 1,
) -> float:
    """Render ``todo`` on up to ``workers`` Ray actors, each with its own loaded model.

    Each call of an actor renders one group of up to ``batch_size`` jobs (see
    :func:`~riffusion.batch.groups.form_groups`); a retry renders its job alone.

    A job whose actor process dies is retried on a fresh actor. Starts Ray (and shuts it down
    at the end) unless it is already initialised in this process. Before any actor starts,
    checks that some node of the cluster has ``gpus_per_worker`` GPUs and ``cpus_per_worker``
    CPUs (Ray would otherwise wait for such a node forever), unless ``wait_for_resources``.

    Args:
        todo: the jobs to render; they start in order, their answers land in any order.
        model: hub id or diffusers folder of the checkpoint.
        storage: where the files go (a URL every node reaches, or a shared folder).
        options: the workers' keyword arguments (device, dtype, num_threads, ...).
        record: called in this process with each job's final answer (see :data:`Record`).
        max_retries: extra attempts of a job whose answer says it may pass next time.
        workers: actors to start (at most one per job).
        gpus_per_worker: GPUs Ray reserves per actor (fractions share a GPU).
        cpus_per_worker: CPU cores Ray reserves per actor.
        address: Ray cluster address, or ``None`` for ``RAY_ADDRESS``, a running ``ray start``
            cluster, else a new local Ray.
        started: ``time.perf_counter()`` when the batch started.
        wait_for_resources: skip the check (an autoscaler adds the nodes on demand).
        batch_size: the most jobs of one group, rendered in one call.

    Returns:
        Seconds from ``started`` until the first actor had loaded the model.

    Raises:
        RiffusionError: Ray is not installed.
        ParameterError: the output is ``memory://``, which Ray workers cannot share, or no node
            of the cluster has the resources one worker asks for.
        ModelLoadError: an actor could not load the model.
    """
    try:
        import ray
    except ImportError:
        raise RiffusionError(f"engine='ray' needs Ray: {install_hint('ray')}") from None
    if storage.is_url and storage.root.startswith("memory://"):
        raise ParameterError(
            "memory:// output lives in one process; Ray workers cannot share it (use a folder "
            "or a shared URL)"
        )
    owns_ray = not ray.is_initialized()
    if owns_ray:
        ray.init(address=address)
    try:
        if not wait_for_resources:
            _check_resources(ray, cpus_per_worker, gpus_per_worker)
    except BaseException:
        if owns_ray:
            ray.shutdown()
        raise
    if not storage.is_url and sum(1 for node in ray.nodes() if node.get("Alive")) > 1:
        # stacklevel: this function, render, and then the line that called render.
        warnings.warn(
            f"output_dir={storage.root!r} is a local path on a cluster of several nodes: each "
            "worker writes to that path on its own node unless it is a shared file system; "
            "use a URL (s3://, gs://, ...) otherwise",
            stacklevel=3,
        )
    pool = _RayPool(ray, model, storage, options, cpus_per_worker, gpus_per_worker)
    try:
        groups = form_groups(todo, batch_size)
        return pool.run(groups, workers, record=record, max_retries=max_retries, started=started)
    finally:
        pool.close()
        if owns_ray:
            ray.shutdown()


def _check_resources(ray: Any, cpus_per_worker: int, gpus_per_worker: float) -> None:
    """Refuse workers no node of the cluster can hold (Ray would queue them forever)."""
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    if any(
        node.get("CPU", 0) >= cpus_per_worker and node.get("GPU", 0) >= gpus_per_worker
        for node in nodes
    ):
        return
    total = ray.cluster_resources()
    largest: dict[str, float] = max(
        nodes, key=lambda node: (node.get("GPU", 0), node.get("CPU", 0)), default={}
    )
    raise ParameterError(
        f"gpus_per_worker={gpus_per_worker:g} and cpus_per_worker={cpus_per_worker}: no node of "
        f"the Ray cluster has that much ({len(nodes)} node(s), {total.get('GPU', 0):g} GPU(s) "
        f"and {total.get('CPU', 0):g} CPU(s) in all; the largest has "
        f"{largest.get('GPU', 0):g} GPU(s), {largest.get('CPU', 0):g} CPU(s)). Ask for less "
        "(--gpus-per-worker 0 renders on CPUs), join a cluster that has them (--address), or "
        "pass wait_for_resources=True (--wait-for-resources) when an autoscaler adds such nodes"
    )


class _RayActor:
    """A :class:`RenderWorker` as Ray runs it: Ray's tracing rewrites the signatures of an
    actor class's methods (adding ``_ray_trace_ctx``), so the actor class is this one, whose
    methods are its own, and ``RenderWorker``'s stay as documented.

    Args:
        model: as :class:`RenderWorker`.
        output_dir: as :class:`RenderWorker`.
        **options: :class:`RenderWorker`'s keyword arguments.
    """

    def __init__(self, model: str, output_dir: Storage, **options: Any) -> None:
        self.worker = RenderWorker(model, output_dir, **options)

    def info(self) -> dict[str, Any]:
        """See :meth:`RenderWorker.info`."""
        return self.worker.info()

    def render_group(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """See :meth:`RenderWorker.render_group`.

        Args:
            jobs: the payloads of the group's jobs.
        """
        return self.worker.render_group(jobs)


class _RayPool:
    """Ray actors running :class:`RenderWorker`: started, fed one group of jobs each, replaced
    when their process dies, killed at the end."""

    def __init__(
        self,
        ray: Any,
        model: str,
        storage: Storage,
        options: dict[str, Any],
        cpus_per_worker: int,
        gpus_per_worker: float,
    ) -> None:
        from ray.exceptions import RayActorError, RayError

        self.ray = ray
        self.actor_error, self.ray_error = RayActorError, RayError
        self.model = model
        self.options = options
        self.actor_class = ray.remote(_RayActor).options(
            num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_restarts=0, max_task_retries=0
        )
        # Workers run in other folders (and on other nodes): give them an absolute path.
        root = storage.root if storage.is_url else str(Path(storage.root).resolve())
        self.worker_storage = Storage(root, storage.storage_options)
        self.actors: list[Any] = []
        self.starting: dict[Any, Any] = {}  # info() ref -> actor still loading the model
        self.idle: list[Any] = []
        # call ref -> (actor, its group of jobs, their attempt)
        self.in_flight: dict[Any, tuple[Any, list[BatchJob], int]] = {}

    def start_actor(self) -> None:
        actor = self.actor_class.remote(self.model, self.worker_storage, **self.options)
        self.actors.append(actor)
        self.starting[actor.info.remote()] = actor

    def run(
        self,
        groups: list[list[BatchJob]],
        workers: int,
        *,
        record: Record,
        max_retries: int,
        started: float,
    ) -> float:
        """Every job of the groups to its final answer; seconds until the first actor was
        ready. A group is one call; a job's retry is a call of its own."""
        queue = deque((group, 1) for group in groups)
        first_started: dict[str, float] = {}
        startup_s = 0.0
        for _ in range(min(workers, len(groups))):
            self.start_actor()
        while queue or self.in_flight:
            while self.idle and queue:
                actor = self.idle.pop()
                group, attempt = queue.popleft()
                for job in group:
                    first_started.setdefault(job.id, time.perf_counter())
                payloads = [job_payload(job, attempt) for job in group]
                call = actor.render_group.remote(payloads)
                self.in_flight[call] = (actor, group, attempt)
            done, _ = self.ray.wait([*self.starting, *self.in_flight], num_returns=1)
            ref = done[0]
            if ref in self.starting:
                self._ready(ref)
                if not startup_s:
                    startup_s = time.perf_counter() - started
                continue
            actor, group, attempt = self.in_flight.pop(ref)
            results = self._answer(ref, actor, group)
            for job, result in zip(group, results, strict=True):
                if _final(result, attempt, max_retries):
                    record(job, result, attempt, time.perf_counter() - first_started[job.id])
                else:
                    queue.append(([job], attempt + 1))
        return startup_s

    def _ready(self, ref: Any) -> None:
        """An actor finished loading the model (or failed to): make it idle, or raise."""
        actor = self.starting.pop(ref)
        try:
            self.ray.get(ref)
        except self.ray_error as error:
            raise ModelLoadError(
                f"a Ray worker could not load model {self.model!r}: {error}"
            ) from error
        self.idle.append(actor)

    def _answer(self, ref: Any, actor: Any, group: list[BatchJob]) -> list[dict[str, Any]]:
        """The worker's answers to one call, or retryable failures when Ray lost the call."""
        try:
            results: list[dict[str, Any]] = self.ray.get(ref)
            self.idle.append(actor)
        except self.actor_error as error:
            # The worker process died (killed, out of memory, a crash in native code):
            # blame this attempt of every job of the call, start a replacement.
            reason = " ".join(str(error).split())[:300]
            message = f"WorkerDied: the worker process ended during the job ({reason})"
            results = [failed_result(job.id, message) for job in group]
            self.actors.remove(actor)
            self.start_actor()
        except self.ray_error as error:  # the call itself failed (serialisation, ...)
            message = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
            results = [failed_result(job.id, message) for job in group]
            self.idle.append(actor)
        return results

    def close(self) -> None:
        """Kill every actor (a dead one is no error)."""
        for actor in self.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
