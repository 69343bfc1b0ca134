"""The batch worker: loads the model once, renders one job (or one group of jobs, see
:mod:`riffusion.batch.groups`) per call and writes their files.

Both engines run this class (in-process, or as Ray actors) with the same torch thread count,
so a job's bytes do not depend on the engine. Calls and answers are plain dicts, so that they
cross process boundaries unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from riffusion.batch.groups import Window, clip_from_window, generate_group
from riffusion.batch.jobs import BatchJob, check_job_id
from riffusion.batch.storage import Storage
from riffusion.errors import ModelLoadError, ParameterError
from riffusion.recipe import Recipe

__all__ = [
    "AUDIO_NAME",
    "IMAGE_NAME",
    "RECIPE_NAME",
    "RenderWorker",
    "failed_result",
    "job_payload",
]

AUDIO_NAME = "audio.wav"
"""Name of a job's audio file (16-bit WAV) inside its folder."""
IMAGE_NAME = "spectrogram.png"
"""Name of a job's spectrogram image (PNG with the spectrogram EXIF) inside its folder."""
RECIPE_NAME = "recipe.json"
"""Name of a job's recipe (the clip's :meth:`Recipe.to_json`) inside its folder."""

_LOG = logging.getLogger(__name__)

# A full disk, a read-only or forbidden folder: another attempt would fail the same way.
_PERMANENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def job_payload(job: BatchJob, attempt: int) -> dict[str, Any]:
    """The call of one attempt: ``{"id", "recipe" (one-line JSON), "attempt" (from 1)}``.

    Args:
        job: the job to render.
        attempt: which attempt this is, counting from 1.
    """
    return {"id": job.id, "recipe": job.recipe.to_json(indent=None), "attempt": attempt}


def failed_result(job_id: str, error: str | None, *, worker: str | None = None) -> dict[str, Any]:
    """The answer of an attempt that failed and may be tried again.

    Args:
        job_id: the job's id.
        error: ``"TypeName: message"`` recorded in the manifest (``None`` while the attempt
            is still running in the worker).
        worker: ``host:pid`` of the worker, or ``None`` when no worker answered.
    """
    return {
        "id": job_id,
        "ok": False,
        "retry": True,
        "error": error,
        "files": {},
        "timings_s": {},
        "worker": worker,
    }


@contextlib.contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads, then restore the previous count."""
    import torch

    if count is None or count == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _file_record(path: str, data: bytes) -> dict[str, Any]:
    return {"path": path, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _fail(result: dict[str, Any], error: BaseException) -> None:
    """Record ``error`` in a job's answer: ``"TypeName: message"``, and whether to retry."""
    result["error"] = f"{type(error).__name__}: {' '.join(str(error).split())}"
    result["retry"] = _retryable(error)


def _retryable(error: BaseException) -> bool:
    """Whether a failed job may succeed when tried again: not a bad value, not an adapter file
    that is missing, changed or not allowed, not a full disk."""
    if isinstance(error, ParameterError | ModelLoadError):
        return False
    cause: BaseException | None = error
    for _ in range(16):  # the chain of causes; bounded, as a chain can loop
        if cause is None:
            break
        if isinstance(cause, OSError) and cause.errno in _PERMANENT_ERRNOS:
            return False
        cause = cause.__cause__ or cause.__context__
    return True


class RenderWorker:
    """Loads the model once and renders one job per call, writing its files.

    The local engine calls an instance in-process; the Ray engine runs instances as actors
    (one model per actor). Same class, same code path, same bytes.

    Args:
        model: hub id or diffusers folder of the checkpoint.
        output_dir: local folder or fsspec URL of the outputs.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        dtype: weights dtype (float16 on CUDA by default, float32 elsewhere).
        num_threads: torch intra-op threads while rendering (``None``: leave as is). The
            rendered bytes on CPU depend on it, so both engines use the same count.
        storage_options: fsspec options of ``output_dir`` (credentials, endpoint, ...).
        local_files_only: never download the model.
        adapter_dirs: folders the recipes' LoRA and textual-inversion files may be read from
            (none by default: recipes with adapters fail; see ``Riffuser.use_adapters``).
        before_attempt: called in the worker as ``before_attempt(job_id, attempt)`` before
            each attempt; an exception it raises fails that attempt. For instrumentation and
            fault-injection tests; ``None`` in normal use.
    """

    def __init__(
        self,
        model: str,
        output_dir: str | os.PathLike[str] | Storage,
        *,
        device: str = "auto",
        dtype: Any = None,
        num_threads: int | None = 1,
        storage_options: Mapping[str, Any] | None = None,
        local_files_only: bool = False,
        adapter_dirs: Sequence[str] = (),
        before_attempt: Callable[[str, int], None] | None = None,
    ) -> None:
        # The generation code (diffusers, transformers) loads here, not when the batch
        # module is imported: reading jobs and manifests stays light.
        from riffusion.riffuser import Riffuser

        self.adapter_dirs = [os.fspath(folder) for folder in adapter_dirs]

        self.storage = (
            output_dir if isinstance(output_dir, Storage) else Storage(output_dir, storage_options)
        )
        self.num_threads = num_threads
        self.before_attempt = before_attempt
        with _torch_threads(num_threads):
            self.riffuser = Riffuser.from_pretrained(
                model, device=device, dtype=dtype, local_files_only=local_files_only
            )
        self.riffuser.pipeline.set_progress_bar_config(disable=True)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def info(self) -> dict[str, Any]:
        """Where this worker runs: ``{"worker": "host:pid", "device": "cuda:0" | ...}``."""
        return {"worker": self.name, "device": str(self.riffuser.pipeline.device)}

    def _riffuser_for(self, recipe: Recipe) -> Any:
        # One loaded pipeline serves every spectrogram size: re-wrap it when a recipe's
        # parameters differ (the scheduler the pipeline holds goes along).
        from riffusion.riffuser import Riffuser

        current = self.riffuser
        if recipe.params != current.params:
            self.riffuser = Riffuser(
                current.pipeline,
                model=current.model,
                params=recipe.params,
                decode_method=current.decode_method,
                decode_seed=current.decode_seed,
                scheduler=current.scheduler_name,
            )
        # The recipe's LoRA and textual inversions, loaded from their recorded files.
        return self.riffuser.use_adapters(recipe.adapters, adapter_dirs=self.adapter_dirs)

    def __call__(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """Render one attempt of a job and write its files.

        Args:
            job: ``{"id": str, "recipe": recipe JSON, "attempt": int}`` (see
                :func:`job_payload`).

        Returns:
            ``{"id", "ok", "retry", "error", "files", "timings_s", "worker"}``; errors are
            returned, not raised, so that one job never stops a worker.
        """
        result = failed_result(job["id"], None, worker=self.name)
        recipe = self._start_attempt(job, result)
        if recipe is not None:
            self._finish(result, lambda: self._render_alone(recipe))
        return result

    def render_group(self, jobs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Render one attempt of each job of a group, their windows in one UNet batch.

        The jobs are those :func:`~riffusion.batch.groups.form_groups` put together (one
        :func:`~riffusion.batch.groups.group_key`). A group of one is :meth:`__call__`. A job
        whose attempt fails before rendering (``before_attempt``, its recipe) fails alone; if
        the batched generation fails, every job is rendered alone, so one bad job never fails
        its neighbours.

        Args:
            jobs: the payloads of the group's jobs (see :func:`job_payload`).

        Returns:
            One answer per job, in order, as :meth:`__call__` gives them.
        """
        if len(jobs) == 1:
            return [self(jobs[0])]
        results = [failed_result(job["id"], None, worker=self.name) for job in jobs]
        ready: list[tuple[dict[str, Any], Recipe]] = []  # (answer, recipe) of jobs to render
        for job, result in zip(jobs, results, strict=True):
            recipe = self._start_attempt(job, result)
            if recipe is not None:
                ready.append((result, recipe))
        windows = self._group_windows([recipe for _, recipe in ready])
        for position, (result, recipe) in enumerate(ready):
            if windows is None:
                self._finish(result, functools.partial(self._render_alone, recipe))
            else:
                make = functools.partial(self._clip_from_window, recipe, windows[position])
                self._finish(result, make, extra_s=windows[position].share_s)
        return results

    def _start_attempt(self, job: Mapping[str, Any], result: dict[str, Any]) -> Recipe | None:
        """Run ``before_attempt`` and read the job's recipe; ``None`` (``result`` failed) when
        either raises."""
        try:
            if self.before_attempt is not None:
                self.before_attempt(job["id"], int(job["attempt"]))
            return Recipe.from_json(job["recipe"])
        except Exception as error:  # reported in the manifest; the worker goes on
            _fail(result, error)
            return None

    def _render_alone(self, recipe: Recipe) -> Any:
        with _torch_threads(self.num_threads):
            return self._riffuser_for(recipe).render(recipe)

    def _clip_from_window(self, recipe: Recipe, window: Window) -> Any:
        with _torch_threads(self.num_threads):
            return clip_from_window(self.riffuser, recipe, window)

    def _group_windows(self, recipes: Sequence[Recipe]) -> list[Window] | None:
        """The group's windows from one batched generation, or ``None`` (logged) when there
        are fewer than two recipes or it failed: the jobs are then rendered alone."""
        if len(recipes) < 2:
            return None
        try:
            with _torch_threads(self.num_threads):
                return generate_group(self._riffuser_for(recipes[0]), recipes)
        except Exception as error:
            _LOG.info(
                "batched generation of %d jobs failed (%s: %s); rendering them one at a time",
                len(recipes),
                type(error).__name__,
                error,
            )
            return None

    def _finish(
        self, result: dict[str, Any], make_clip: Callable[[], Any], extra_s: float = 0.0
    ) -> None:
        """Make the clip, write its files and fill ``result``; an exception fails ``result``.

        Args:
            result: the job's answer, updated in place.
            make_clip: renders the job's clip.
            extra_s: seconds already spent on it (its share of a group's generation).
        """
        try:
            started = time.perf_counter()
            clip = make_clip()
            rendered = time.perf_counter()
            files = self._write_clip(result["id"], clip)
            result.update(
                ok=True,
                files=files,
                timings_s={
                    "render": extra_s + rendered - started,
                    "write": time.perf_counter() - rendered,
                },
            )
        except Exception as error:  # reported in the manifest; the worker goes on
            _fail(result, error)

    def _write_clip(self, job_id: str, clip: Any) -> dict[str, dict[str, Any]]:
        """Write the clip's audio, image and recipe under ``<job_id>/``; their file records."""
        png = io.BytesIO()
        clip.image.save(png, format="PNG", exif=clip.image.getexif())
        outputs = {
            "audio": (AUDIO_NAME, clip.audio.to_bytes("WAV")),
            "image": (IMAGE_NAME, png.getvalue()),
            "recipe": (RECIPE_NAME, clip.recipe.to_json().encode()),
        }
        files = {}
        for kind, (name, data) in outputs.items():
            relative = f"{check_job_id(job_id)}/{name}"
            self.storage.write(relative, data)
            files[kind] = _file_record(relative, data)
        return files
