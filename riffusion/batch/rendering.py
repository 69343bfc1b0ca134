"""The batch front door: :func:`render` many jobs to a folder of files and a manifest."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from riffusion._checks import check_integer, finite_float
from riffusion.batch.engines import run_local, run_ray
from riffusion.batch.jobs import BatchJob, check_unique, make_job
from riffusion.batch.manifest import Manifest, ManifestEntry, is_finished
from riffusion.batch.storage import Storage
from riffusion.defaults import DEFAULT_MODEL
from riffusion.errors import ParameterError

__all__ = ["ENGINES", "MAX_BATCH_SIZE", "BatchResult", "render"]

ENGINES = ("local", "ray")
#: The largest ``batch_size`` of :func:`render`: the diffusion layer's
#: ``riffusion.models.sd1.batching.MAX_BATCH_SIZE`` (not imported here: it loads torch).
MAX_BATCH_SIZE = 64


@dataclass(frozen=True)
class BatchResult:
    """What :func:`render` did.

    Attributes:
        output_dir: the output folder or URL.
        entries: the manifest entry of every job of the batch, in job order.
        rendered: ids rendered by this run (successfully).
        skipped: ids already finished by an earlier run.
        failed: ids that failed after their retries.
        startup_s: seconds until the first worker was ready (model load, Ray start).
        elapsed_s: seconds of the whole call.
    """

    output_dir: str
    entries: tuple[ManifestEntry, ...]
    rendered: tuple[str, ...]
    skipped: tuple[str, ...]
    failed: tuple[str, ...]
    startup_s: float = 0.0
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every job is done."""
        return not self.failed


def render(
    jobs: Iterable[Any],
    output_dir: str | os.PathLike[str],
    *,
    engine: str = "local",
    model: str | os.PathLike[str] | None = None,
    device: str = "auto",
    dtype: Any = None,
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: int = 1,
    address: str | None = None,
    max_retries: int = 2,
    storage_options: Mapping[str, Any] | None = None,
    local_files_only: bool = False,
    adapter_dirs: Sequence[str | os.PathLike[str]] = (),
    on_result: Callable[[ManifestEntry], None] | None = None,
    before_attempt: Callable[[str, int], None] | None = None,
    flush_interval_s: float = 5.0,
    wait_for_resources: bool = False,
    batch_size: int = 1,
) -> BatchResult:
    """Render many jobs to ``output_dir``: audio, spectrogram and recipe per job, plus a manifest.

    Args:
        jobs: job descriptions (see :func:`make_job`) or :class:`BatchJob` values.
        output_dir: local folder or fsspec URL (created if missing). With ``engine="ray"`` on
            more than one machine it must be storage every worker reaches (a shared folder,
            ``s3://``, ``gs://``, ...).
        engine: ``"local"`` (one worker in this process) or ``"ray"`` (``workers`` Ray actors).
        model: hub id or diffusers folder; default: the model the recipes name (they must
            agree), else Riffusion's checkpoint.
        device: device of each worker (``"auto"``: CUDA, then MPS, then CPU).
        dtype: weights dtype (``None``: float16 on CUDA, float32 elsewhere).
        workers: Ray actors, each with its own loaded model (``engine="ray"`` only).
        gpus_per_worker: GPUs Ray reserves per actor (fractions share a GPU).
        cpus_per_worker: CPU cores per worker; also its torch thread count, for both engines,
            so that the bytes agree.
        address: Ray cluster address (``"auto"``, ``"ray://head:10001"``, ...); ``None``
            uses ``RAY_ADDRESS``, else joins a cluster started on this machine with
            ``ray start``, else starts a local Ray. Ignored when Ray is already initialised in
            this process.
        max_retries: extra attempts of a failed job (an exception, or its worker dying).
        storage_options: fsspec options of ``output_dir``.
        local_files_only: never download the model.
        on_result: called in this process with each job's manifest entry: first those of the
            jobs skipped as finished, then each new one as it lands (for progress bars).
        adapter_dirs: folders the recipes' adapter files may be read from (none by default).
        before_attempt: see :class:`RenderWorker` (fault-injection tests).
        flush_interval_s: rewrite the manifest at most this often while running (it is
            always written at the end, also after an error or interruption).
        wait_for_resources: with ``engine="ray"``, do not refuse workers that no node of the
            cluster can hold now (``gpus_per_worker`` GPUs and ``cpus_per_worker`` CPUs on one
            node); for autoscaling clusters that add such nodes on demand.
        batch_size: the most jobs rendered together, an int in [1, 64]: jobs whose recipes
            are one window with identical settings except prompt and seed
            (:mod:`riffusion.batch.groups`) share one UNet batch, one group per worker call.
            1 (the default) renders one job at a time. A group's images can differ from those
            of the jobs rendered alone by a grey level here and there (the UNet sums in another
            order over a larger batch), so its files' bytes can too; a failing group falls back
            to one job at a time, and retries render their job alone.

    Returns:
        A :class:`BatchResult`; failed jobs are in ``failed`` and in the manifest, not raised.

    Raises:
        ParameterError: a bad argument or job (before any model loads), or (``engine="ray"``)
            no node of the cluster has the GPUs and CPUs one worker asks for.
        ModelLoadError: a worker could not load the model.
    """
    started = time.perf_counter()
    _check_engine(engine, workers, gpus_per_worker, cpus_per_worker, max_retries)
    check_integer("batch_size", batch_size, minimum=1, maximum=MAX_BATCH_SIZE)
    model_name = os.fspath(model) if model is not None else None
    batch = check_unique([make_job(spec, model=model_name) for spec in jobs])
    model_name = _batch_model(batch, model_name)
    storage = Storage(output_dir, storage_options)
    storage.prepare()
    manifest = Manifest(storage, flush_interval_s)
    todo, skipped = _split_finished(batch, manifest, storage)
    recorder = _Recorder(manifest, on_result)
    recorder.announce(skipped)
    options = _worker_options(
        device, dtype, cpus_per_worker, local_files_only, adapter_dirs, before_attempt
    )
    run_engine = functools.partial(
        _engine(engine, workers, gpus_per_worker, cpus_per_worker, address, wait_for_resources),
        batch_size=batch_size,
    )
    startup_s = _run_jobs(
        run_engine, todo, model_name, storage, options, recorder, manifest, max_retries, started
    )
    return _batch_result(
        storage.root, batch, todo, skipped, manifest.entries, recorder.new, startup_s, started
    )


def _split_finished(
    batch: list[BatchJob], manifest: Manifest, storage: Storage
) -> tuple[list[BatchJob], tuple[str, ...]]:
    """The jobs still to render and the ids of those an earlier run finished, in job order."""
    todo = [job for job in batch if not is_finished(manifest.entries.get(job.id), job, storage)]
    todo_ids = {job.id for job in todo}
    skipped = tuple(job.id for job in batch if job.id not in todo_ids)
    return todo, skipped


def _run_jobs(
    run_engine: Callable[..., float],
    todo: list[BatchJob],
    model: str,
    storage: Storage,
    options: dict[str, Any],
    recorder: _Recorder,
    manifest: Manifest,
    max_retries: int,
    started: float,
) -> float:
    """Render ``todo`` on ``run_engine``; the manifest is written at the end, also after an
    error or interruption.

    Returns:
        Seconds until the first worker was ready (``0.0`` when there is nothing to render).
    """
    startup_s = 0.0
    try:
        if todo:
            startup_s = run_engine(
                todo,
                model,
                storage,
                options,
                record=recorder,
                max_retries=max_retries,
                started=started,
            )
    finally:
        manifest.flush()
    return startup_s


def _batch_result(
    output_dir: str,
    batch: list[BatchJob],
    todo: list[BatchJob],
    skipped: tuple[str, ...],
    entries: Mapping[str, ManifestEntry],
    new: Mapping[str, ManifestEntry],
    startup_s: float,
    started: float,
) -> BatchResult:
    """The :class:`BatchResult` from the manifest ``entries`` and the ``new`` ones of this run
    (``started``: :func:`time.perf_counter` at the start of :func:`render`)."""
    return BatchResult(
        output_dir=output_dir,
        entries=tuple(entries[job.id] for job in batch if job.id in entries),
        rendered=tuple(job.id for job in todo if new[job.id].status == "done"),
        skipped=skipped,
        failed=tuple(job.id for job in todo if new[job.id].status == "failed"),
        startup_s=startup_s,
        elapsed_s=time.perf_counter() - started,
    )


def _worker_options(
    device: str,
    dtype: Any,
    cpus_per_worker: int,
    local_files_only: bool,
    adapter_dirs: Sequence[str | os.PathLike[str]],
    before_attempt: Callable[[str, int], None] | None,
) -> dict[str, Any]:
    """The keyword arguments of every :class:`RenderWorker` of the batch (its torch threads are
    the worker's CPU cores, for both engines, so that their bytes agree)."""
    return {
        "device": device,
        "dtype": dtype,
        "num_threads": cpus_per_worker,
        "local_files_only": local_files_only,
        "adapter_dirs": [os.path.abspath(os.fspath(folder)) for folder in adapter_dirs],
        "before_attempt": before_attempt,
    }


def _engine(
    engine: str,
    workers: int,
    gpus_per_worker: float,
    cpus_per_worker: int,
    address: str | None,
    wait_for_resources: bool = False,
) -> Callable[..., float]:
    """The engine's run function, with Ray's placement of the workers bound for ``"ray"``."""
    if engine == "local":
        return run_local
    return functools.partial(
        run_ray,
        workers=workers,
        gpus_per_worker=float(gpus_per_worker),
        cpus_per_worker=cpus_per_worker,
        address=address,
        wait_for_resources=bool(wait_for_resources),
    )


def _check_engine(
    engine: Any, workers: Any, gpus_per_worker: Any, cpus_per_worker: Any, max_retries: Any
) -> None:
    """Check :func:`render`'s engine settings before any job is read or model loaded."""
    if engine not in ENGINES:
        raise ParameterError(f"engine={engine!r} must be one of {', '.join(ENGINES)}")
    check_integer("workers", workers)
    check_integer("cpus_per_worker", cpus_per_worker)
    check_integer("max_retries", max_retries, minimum=0)
    gpus = finite_float(gpus_per_worker)
    if gpus is None or gpus < 0:
        raise ParameterError(f"gpus_per_worker={gpus_per_worker!r} must be a number >= 0")
    if engine == "local" and (workers != 1 or gpus_per_worker):
        raise ParameterError("workers and gpus_per_worker apply to engine='ray' only")


def _batch_model(batch: list[BatchJob], model: str | None) -> str:
    """The one model every job renders with: ``model`` if given, else the one the recipes name
    (Riffusion's checkpoint when there are no jobs)."""
    if model is not None:
        return model
    models = {job.recipe.model for job in batch}
    if len(models) > 1:
        raise ParameterError(
            f"the recipes name {len(models)} models ({', '.join(sorted(models))}); "
            "pass model= to render them all with one"
        )
    return models.pop() if models else DEFAULT_MODEL


class _Recorder:
    """Turns each job's final answer into its manifest entry, as the engines deliver them."""

    def __init__(
        self, manifest: Manifest, on_result: Callable[[ManifestEntry], None] | None
    ) -> None:
        self.manifest = manifest
        self.on_result = on_result
        self.new: dict[str, ManifestEntry] = {}  # job id -> entry recorded by this run

    def announce(self, skipped: Sequence[str]) -> None:
        """Report the entries of jobs an earlier run finished, before any new one lands."""
        if self.on_result is not None:
            for job_id in skipped:
                self.on_result(self.manifest.entries[job_id])

    def __call__(
        self, job: BatchJob, result: Mapping[str, Any], attempts: int, total_s: float
    ) -> None:
        entry = ManifestEntry(
            id=job.id,
            status="done" if result["ok"] else "failed",
            recipe_sha256=job.digest,
            files=result["files"],
            error=result["error"],
            attempts=attempts,
            timings_s={**result["timings_s"], "total": total_s},
            worker=result.get("worker"),
        )
        self.new[job.id] = entry
        self.manifest.record(entry)
        if self.on_result is not None:
            self.on_result(entry)
