"""Batch rendering: many recipes to audio, spectrograms and a manifest, in-process or on Ray.

A *job* is a :class:`~riffusion.riffuser.Recipe` with an id. :func:`render` writes, for each
job, a folder ``<output>/<id>/`` holding ``audio.wav``, ``spectrogram.png`` and ``recipe.json``,
plus one ``<output>/manifest.jsonl`` line per job (id, status, files with sizes and SHA-256,
error, attempts, timings).

Guarantees:

- The bytes of a job's files do not depend on the engine: both engines run the same
  :class:`RenderWorker` class (in-process for ``engine="local"``, as Ray actors for
  ``engine="ray"``) with the same torch thread count, and the recipe fixes every input.
- Reruns skip finished jobs: a job is finished when the manifest says ``done`` for the same
  recipe (by digest) and every file it lists is present with the recorded size.
- A job that fails (an exception, or its worker process dying) is retried up to
  ``max_retries`` times, then recorded as ``failed`` with its error; the other jobs go on.
  Invalid recipes (:class:`~riffusion.errors.ParameterError`) are not retried.
- Output folders come from job ids that cannot leave the output folder (see
  :func:`check_job_id`); every file is written under a temporary name and renamed into place.
- The output may be a local folder or any fsspec URL
  (``s3://bucket/run``, ``gs://...``, ``file:///shared/run``, ``memory://run``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import io
import json
import os
import re
import socket
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from riffusion._checks import finite_float
from riffusion.defaults import DEFAULT_MODEL
from riffusion.errors import ModelLoadError, ParameterError, RiffusionError, install_hint
from riffusion.riffuser import Recipe

__all__ = [
    "AUDIO_NAME",
    "IMAGE_NAME",
    "MANIFEST_NAME",
    "RECIPE_NAME",
    "BatchJob",
    "BatchResult",
    "ManifestEntry",
    "RenderWorker",
    "check_job_id",
    "load_jobs",
    "make_job",
    "read_manifest",
    "recipe_digest",
    "render",
]

MANIFEST_NAME = "manifest.jsonl"
"""Name of the manifest at the root of the output."""
AUDIO_NAME = "audio.wav"
"""Name of a job's audio file (16-bit WAV) inside its folder."""
IMAGE_NAME = "spectrogram.png"
"""Name of a job's spectrogram image (PNG with the spectrogram EXIF) inside its folder."""
RECIPE_NAME = "recipe.json"
"""Name of a job's recipe (the clip's :meth:`Recipe.to_json`) inside its folder."""

ENGINES = ("local", "ray")
_MAX_ID_LENGTH = 128
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_URL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SHORT_KEYS = frozenset(
    {
        "id",
        "kind",
        "prompt",
        "seed",
        "negative_prompt",
        "denoising",
        "guidance",
        "duration_s",
        "num_inference_steps",
        "seed_image",
        "mask_image",
        "scheduler",
        "end",
        "alpha",
        "params",
        "model",
    }
)
_SHORT_KINDS = ("text_to_audio", "loop", "riffuse")


# ------------------------------------------------------------------------------------ jobs
def check_job_id(job_id: Any) -> str:
    """Check that ``job_id`` is safe as a folder name in any file system or object store.

    Allowed: 1 to 128 characters from ``A-Z a-z 0-9 . _ -``, starting with a letter or digit.
    That rules out ``..``, path separators, absolute paths, NUL and other control characters,
    hidden names (which would clash with the temporary files) and names a Windows or S3 user
    could not open.

    Args:
        job_id: the id to check (any value; only well-formed strings pass).

    Returns:
        ``job_id`` unchanged.

    Raises:
        ParameterError: naming the id and the rule it breaks.
    """
    if not isinstance(job_id, str):
        raise ParameterError(f"job id {job_id!r} must be a string, got {type(job_id).__name__}")
    if not job_id or len(job_id) > _MAX_ID_LENGTH:
        raise ParameterError(
            f"job id {job_id[:40]!r}{'...' if len(job_id) > 40 else ''} must be 1 to "
            f"{_MAX_ID_LENGTH} characters long (got {len(job_id)})"
        )
    if not _ID_PATTERN.fullmatch(job_id):
        raise ParameterError(
            f"job id {job_id!r} may only use letters, digits, '.', '_' and '-', and must start "
            "with a letter or digit (no path separators, '..', or absolute paths)"
        )
    return job_id


def recipe_digest(recipe: Recipe) -> str:
    """SHA-256 (hex) of the recipe's canonical JSON (sorted keys, no spaces).

    Two recipes have the same digest exactly when every field is equal.

    Args:
        recipe: a :class:`~riffusion.Recipe`.
    """
    canonical = json.dumps(recipe.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class BatchJob:
    """One clip to render.

    Attributes:
        id: folder name of its outputs (see :func:`check_job_id`).
        recipe: what to render; it must need no input besides itself (no ``audio_to_audio``,
            no ``custom:`` seed or mask image).
    """

    id: str
    recipe: Recipe

    def __post_init__(self) -> None:
        check_job_id(self.id)
        if not isinstance(self.recipe, Recipe):
            raise ParameterError(
                f"job {self.id!r}: recipe must be a Recipe, got {type(self.recipe).__name__}"
            )
        if self.recipe.kind == "audio_to_audio":
            raise ParameterError(
                f"job {self.id!r}: audio_to_audio recipes need their input audio; batch jobs "
                "render from the recipe alone"
            )
        for name in ("seed_image", "mask_image"):
            identity = getattr(self.recipe, name)
            if isinstance(identity, str) and identity.startswith("custom:"):
                raise ParameterError(
                    f"job {self.id!r}: {name}={identity!r} is a custom image; batch jobs can "
                    "use built-in seed images and masks only"
                )

    @property
    def digest(self) -> str:
        """:func:`recipe_digest` of the recipe."""
        return recipe_digest(self.recipe)


def _prompt_input(value: Any, *, what: str, start: Any = None) -> Any:
    from riffusion.inputs import PromptInput

    if isinstance(value, str):
        seed = start.seed if start is not None else 0
        return PromptInput(prompt=value, seed=seed)
    if isinstance(value, Mapping):
        return PromptInput.from_dict(value)
    raise ParameterError(f"{what}={value!r} must be a prompt string or a prompt object")


def _short_form_recipe(data: Mapping[str, Any], model: str | None) -> Recipe:
    """Build the Recipe a short-form job describes (keys as :meth:`Riffuser.text_to_audio`)."""
    from riffusion.inputs import PromptInput
    from riffusion.params import SpectrogramParams

    unknown = sorted(set(data) - _SHORT_KEYS)
    if unknown:
        raise ParameterError(f"unknown keys {unknown}; expected a subset of {sorted(_SHORT_KEYS)}")
    kind = data.get("kind", "text_to_audio")
    if kind not in _SHORT_KINDS:
        raise ParameterError(
            f"kind={kind!r} must be one of {', '.join(_SHORT_KINDS)} (audio_to_audio needs "
            "input audio, which a batch job cannot carry)"
        )
    if "seed" not in data:
        raise ParameterError("a short-form job needs a 'seed' (so that it renders the same again)")
    start = PromptInput(
        **{
            key: data[key]
            for key in ("prompt", "seed", "negative_prompt", "denoising", "guidance")
            if key in data
        }
    )
    values: dict[str, Any] = {
        "kind": kind,
        "model": str(data.get("model") or model or DEFAULT_MODEL),
        "scheduler": data.get("scheduler", "default"),
        "start": start,
    }
    for key in ("num_inference_steps", "seed_image", "mask_image", "duration_s"):
        if key in data:
            values[key] = data[key]
    if "params" in data:
        if not isinstance(data["params"], Mapping):
            raise ParameterError(f"params={data['params']!r} must be an object")
        try:
            values["params"] = SpectrogramParams(**data["params"])
        except TypeError as error:
            raise ParameterError(f"params: {error}") from None
    if kind == "riffuse":
        if "end" in data:
            values["end"] = _prompt_input(data["end"], what="end", start=start)
        values["alpha"] = data.get("alpha", 0.0)
    else:
        for key in ("end", "alpha"):
            if key in data:
                raise ParameterError(f"{key!r} applies to kind 'riffuse' only, not {kind!r}")
        if kind == "loop" and "duration_s" in data:
            raise ParameterError("a loop is one window long; 'duration_s' does not apply")
    _check_short_values(values)
    return Recipe(**values)


def _check_short_values(values: Mapping[str, Any]) -> None:
    steps = values.get("num_inference_steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ParameterError(f"num_inference_steps={steps!r} must be a positive integer")
    duration = values.get("duration_s")
    if duration is not None and ((number := finite_float(duration)) is None or number <= 0):
        raise ParameterError(f"duration_s={duration!r} must be a positive number of seconds")
    alpha = values.get("alpha")
    if alpha is not None and (
        isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1
    ):
        raise ParameterError(f"alpha={alpha!r} must be a number in [0, 1]")
    for key in ("seed_image", "mask_image", "scheduler"):
        value = values.get(key)
        if value is not None and not isinstance(value, str):
            raise ParameterError(f"{key}={value!r} must be a name (string) or null")


def make_job(spec: Any, *, model: str | None = None) -> BatchJob:
    """Turn one job description into a :class:`BatchJob`.

    Accepted forms:

    - a :class:`BatchJob` (returned as is) or a :class:`Recipe`;
    - a recipe string: its JSON or its ``riffusion:1:`` URL;
    - ``{"id"?, "recipe": <recipe object or string>}``;
    - a recipe object (:meth:`Recipe.to_dict`) with an optional ``"id"`` key;
    - the short form ``{"id"?, "prompt", "seed", "duration_s"?, "kind"?, ...}``: ``kind`` is
      ``text_to_audio`` (default), ``loop`` or ``riffuse`` (with ``end`` and ``alpha``); the
      other keys are those of :meth:`Riffuser.text_to_audio` (``negative_prompt``,
      ``denoising``, ``guidance``, ``num_inference_steps``, ``seed_image``, ``mask_image``) plus
      ``scheduler``, ``params`` (spectrogram parameters) and ``model``.

    Without an ``id``, the id is ``job-`` and the first 16 hex digits of the recipe's
    :func:`recipe_digest`.

    Args:
        spec: the job description.
        model: model recorded in short-form recipes (default: Riffusion's checkpoint).

    Raises:
        ParameterError: the description is malformed, names an unsafe id, or needs inputs a
            batch job cannot carry (input audio, custom images).
    """
    if isinstance(spec, BatchJob):
        return spec
    job_id = None
    if isinstance(spec, Recipe):
        recipe = spec
    elif isinstance(spec, str):
        recipe = _recipe_from_text(spec)
    elif isinstance(spec, Mapping):
        data = dict(spec)
        job_id = data.pop("id", None)
        if job_id is not None:
            check_job_id(job_id)
        try:
            if "recipe" in data:
                extra = sorted(set(data) - {"recipe"})
                if extra:
                    raise ParameterError(
                        f"a job with a 'recipe' takes only 'id' besides, got {extra}"
                    )
                given = data["recipe"]
                recipe = (
                    _recipe_from_text(given) if isinstance(given, str) else Recipe.from_dict(given)
                )
            elif "start" in data:
                recipe = Recipe.from_dict(data)
            elif "prompt" in data:
                recipe = _short_form_recipe(data, model)
            else:
                raise ParameterError(
                    "a job object needs 'prompt' (short form), 'start' (a recipe) or 'recipe'"
                )
        except ParameterError as error:
            label = f"job {job_id!r}" if job_id is not None else "job"
            raise ParameterError(f"{label}: {error}") from None
    else:
        raise ParameterError(
            f"a job must be a Recipe, a recipe string or an object, got {type(spec).__name__}"
        )
    if job_id is None:
        job_id = "job-" + recipe_digest(recipe)[:16]
    return BatchJob(id=job_id, recipe=recipe)


def _recipe_from_text(text: str) -> Recipe:
    text = text.strip()
    if text.startswith("riffusion:"):
        return Recipe.from_url(text)
    return Recipe.from_json(text)


def load_jobs(
    source: str | os.PathLike[str] | Iterable[str], *, model: str | None = None
) -> list[BatchJob]:
    """Read jobs from JSON Lines: one job (see :func:`make_job`) per line.

    Blank lines and lines starting with ``#`` are skipped; a line may also be a bare
    ``riffusion:1:`` recipe URL.

    Args:
        source: a file path, ``"-"`` for standard input, or an iterable of lines.
        model: model recorded in short-form recipes.

    Raises:
        ParameterError: naming the line of the first malformed job or duplicate id.
    """
    name = "<lines>"
    if isinstance(source, str | os.PathLike):
        name = os.fspath(source)
        if name == "-":
            import sys

            lines: Iterable[str] = sys.stdin.read().splitlines()
        else:
            path = Path(name)
            if not path.is_file():
                raise ParameterError(f"jobs file {name!r} does not exist or is not a regular file")
            if path.stat().st_size > _MAX_JOBS_FILE_BYTES:
                raise ParameterError(
                    f"jobs file {name!r} is {path.stat().st_size} bytes; at most "
                    f"{_MAX_JOBS_FILE_BYTES} (split it into several batches)"
                )
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError as error:
                raise ParameterError(f"jobs file {name!r} is not UTF-8 text: {error}") from None
    else:
        lines = source
    jobs = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            if text.startswith("riffusion:"):
                jobs.append(make_job(text, model=model))
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as error:
                raise ParameterError(f"not valid JSON: {error}") from None
            jobs.append(make_job(data, model=model))
        except ParameterError as error:
            raise ParameterError(f"{name}, line {number}: {error}") from None
    return _check_unique(jobs)


def _check_unique(jobs: list[BatchJob]) -> list[BatchJob]:
    """Drop exact repeats (same id and recipe); reject ids that clash (case-insensitively)."""
    seen: dict[str, BatchJob] = {}
    unique = []
    for job in jobs:
        key = job.id.lower()
        if key in seen:
            other = seen[key]
            if other.id == job.id and other.recipe == job.recipe:
                continue
            raise ParameterError(
                f"job id {job.id!r} is used twice (ids must differ, also in letter case, since "
                "some file systems do not tell case apart)"
            )
        seen[key] = job
        unique.append(job)
    return unique


# -------------------------------------------------------------------------------- manifest
@dataclass(frozen=True)
class ManifestEntry:
    """One line of ``manifest.jsonl``.

    Attributes:
        id: the job id.
        status: ``"done"`` or ``"failed"``.
        recipe_sha256: :func:`recipe_digest` of the job's recipe.
        files: for ``done`` jobs, ``{"audio" | "image" | "recipe": {"path", "bytes",
            "sha256"}}`` with paths relative to the output root; empty for failed jobs.
        error: the last error of a failed job (``"TypeName: message"``), else ``None``.
        attempts: how many times the job was tried in the run that recorded it.
        timings_s: ``render`` and ``write`` (last attempt, in the worker) and ``total`` (all
            attempts, seen from the driver), in seconds.
        worker: ``host:pid`` of the process that made the last attempt.
    """

    id: str
    status: str
    recipe_sha256: str
    files: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 0
    timings_s: Mapping[str, float] = field(default_factory=dict)
    worker: str | None = None

    def __post_init__(self) -> None:
        if self.status not in ("done", "failed"):
            raise ParameterError(f"status={self.status!r} must be 'done' or 'failed'")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = dataclasses.asdict(self)
        data["files"] = {name: dict(info) for name, info in self.files.items()}
        data["timings_s"] = dict(self.timings_s)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ManifestEntry:
        """The inverse of :meth:`to_dict`.

        Args:
            data: one decoded line of ``manifest.jsonl``.
        """
        if not isinstance(data, Mapping):
            raise ParameterError(f"manifest entry must be an object, got {type(data).__name__}")
        try:
            return cls(**data)
        except TypeError as error:
            raise ParameterError(f"malformed manifest entry: {error}") from None


# --------------------------------------------------------------------------------- storage
class _Storage:
    """A local folder or an fsspec URL; every write lands whole (temporary name, then rename).

    Picklable: it holds the URL and options only, and opens the file system lazily in each
    process.
    """

    def __init__(self, root: str | os.PathLike[str], storage_options: Mapping[str, Any] | None):
        text = os.fspath(root)
        if not isinstance(text, str) or not text:
            raise ParameterError(f"output_dir={root!r} must be a non-empty path or URL")
        self.root = text
        self.storage_options = dict(storage_options or {})
        self.is_url = bool(_URL_PATTERN.match(text))
        if self.storage_options and not self.is_url:
            raise ParameterError("storage_options apply to fsspec URLs only, not local folders")
        self._fs: Any = None
        self._base = ""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fs"] = None
        return state

    def _filesystem(self) -> tuple[Any, str]:
        if self._fs is None:
            try:
                import fsspec
            except ImportError:
                raise RiffusionError(
                    f"writing to {self.root!r} needs fsspec: {install_hint('ray')}"
                ) from None
            try:
                self._fs, self._base = fsspec.core.url_to_fs(self.root, **self.storage_options)
            except (ValueError, ImportError) as error:
                raise ParameterError(f"cannot open output {self.root!r}: {error}") from None
            self._base = self._base.rstrip("/")
        return self._fs, self._base

    def location(self, relative: str) -> str:
        """Where ``relative`` lives, for messages."""
        return f"{self.root.rstrip('/')}/{relative}"

    def prepare(self) -> None:
        if self.is_url:
            fs, base = self._filesystem()
            fs.makedirs(base, exist_ok=True)
            return
        root = Path(self.root).expanduser()
        if root.exists() and not root.is_dir():
            raise ParameterError(f"output_dir={self.root!r} exists and is not a folder")
        root.mkdir(parents=True, exist_ok=True)

    def write(self, relative: str, data: bytes) -> None:
        folder, _, name = relative.rpartition("/")
        temporary_name = f".{name}.{uuid.uuid4().hex}.partial"
        if self.is_url:
            fs, base = self._filesystem()
            directory = f"{base}/{folder}" if folder else base
            fs.makedirs(directory, exist_ok=True)
            temporary = f"{directory}/{temporary_name}"
            fs.pipe_file(temporary, data)
            try:
                fs.mv(temporary, f"{base}/{relative}")
            finally:
                with contextlib.suppress(OSError):
                    if fs.exists(temporary):
                        fs.rm(temporary)
            return
        local_dir = Path(self.root).expanduser() / folder
        local_dir.mkdir(parents=True, exist_ok=True)
        local_temporary = local_dir / temporary_name
        try:
            with open(local_temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(local_temporary, local_dir / name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                local_temporary.unlink()

    def read(self, relative: str) -> bytes | None:
        if self.is_url:
            fs, base = self._filesystem()
            try:
                return fs.cat_file(f"{base}/{relative}")
            except FileNotFoundError:
                return None
        try:
            return (Path(self.root).expanduser() / relative).read_bytes()
        except FileNotFoundError:
            return None

    def size(self, relative: str) -> int | None:
        if self.is_url:
            fs, base = self._filesystem()
            try:
                return int(fs.size(f"{base}/{relative}"))
            except FileNotFoundError:
                return None
        try:
            return (Path(self.root).expanduser() / relative).stat().st_size
        except FileNotFoundError:
            return None


def read_manifest(
    output_dir: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> list[ManifestEntry]:
    """The entries of ``<output_dir>/manifest.jsonl`` in file order (empty when absent).

    Args:
        output_dir: the batch's output folder (local path or fsspec URL).
        storage_options: fsspec options for a remote ``output_dir`` (credentials, endpoint).

    Raises:
        RiffusionError: the manifest exists but is not a riffusion batch manifest.
    """
    return list(_load_manifest(_Storage(output_dir, storage_options)).values())


def _load_manifest(storage: _Storage) -> dict[str, ManifestEntry]:
    data = storage.read(MANIFEST_NAME)
    entries: dict[str, ManifestEntry] = {}
    if data is None:
        return entries
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = ManifestEntry.from_dict(json.loads(line))
        except (json.JSONDecodeError, ParameterError) as error:
            raise RiffusionError(
                f"{storage.location(MANIFEST_NAME)}, line {number} is not a batch manifest "
                f"entry ({error}); move the file away to start over"
            ) from None
        entries[entry.id] = entry
    return entries


def _is_finished(entry: ManifestEntry | None, job: BatchJob, storage: _Storage) -> bool:
    if entry is None or entry.status != "done" or entry.recipe_sha256 != job.digest:
        return False
    return bool(entry.files) and all(
        storage.size(info["path"]) == info["bytes"] for info in entry.files.values()
    )


# ---------------------------------------------------------------------------------- worker
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
        output_dir: str | os.PathLike[str] | _Storage,
        *,
        device: str = "auto",
        dtype: Any = None,
        num_threads: int | None = 1,
        storage_options: Mapping[str, Any] | None = None,
        local_files_only: bool = False,
        adapter_dirs: Sequence[str] = (),
        before_attempt: Callable[[str, int], None] | None = None,
    ) -> None:
        from riffusion.riffuser import Riffuser

        self.adapter_dirs = [os.fspath(folder) for folder in adapter_dirs]

        self.storage = (
            output_dir
            if isinstance(output_dir, _Storage)
            else _Storage(output_dir, storage_options)
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
            job: ``{"id": str, "recipe": recipe JSON, "attempt": int}``.

        Returns:
            ``{"id", "ok", "retry", "error", "files", "timings_s", "worker"}``; errors are
            returned, not raised, so that one job never stops a worker.
        """
        job_id, attempt = job["id"], int(job["attempt"])
        result: dict[str, Any] = {
            "id": job_id,
            "ok": False,
            "retry": True,
            "error": None,
            "files": {},
            "timings_s": {},
            "worker": self.name,
        }
        try:
            if self.before_attempt is not None:
                self.before_attempt(job_id, attempt)
            recipe = Recipe.from_json(job["recipe"])
            started = time.perf_counter()
            with _torch_threads(self.num_threads):
                clip = self._riffuser_for(recipe).render(recipe)
            rendered = time.perf_counter()
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
            result.update(
                ok=True,
                files=files,
                timings_s={
                    "render": rendered - started,
                    "write": time.perf_counter() - rendered,
                },
            )
        except Exception as error:  # reported in the manifest; the worker goes on
            result["error"] = f"{type(error).__name__}: {' '.join(str(error).split())}"
            result["retry"] = _retryable(error)
        return result


_MAX_JOBS_FILE_BYTES = 256 * 1024 * 1024  # about a million jobs

# A full disk, a read-only or forbidden folder: another attempt would fail the same way.
_PERMANENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


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


# --------------------------------------------------------------------------------- results
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


class _Manifest:
    """The manifest in memory, written whole (atomically) when it changed."""

    def __init__(self, storage: _Storage, flush_interval_s: float) -> None:
        self.storage = storage
        self.entries = _load_manifest(storage)
        self.flush_interval_s = flush_interval_s
        self.dirty = False
        self.last_flush = time.monotonic()

    def record(self, entry: ManifestEntry) -> None:
        self.entries[entry.id] = entry
        self.dirty = True
        if time.monotonic() - self.last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        if not self.dirty:
            return
        text = "".join(
            json.dumps(entry.to_dict(), sort_keys=True) + "\n" for entry in self.entries.values()
        )
        self.storage.write(MANIFEST_NAME, text.encode())
        self.dirty = False
        self.last_flush = time.monotonic()


def _payload(job: BatchJob, attempt: int) -> dict[str, Any]:
    return {"id": job.id, "recipe": job.recipe.to_json(indent=None), "attempt": attempt}


def _check_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(f"{name}={value!r} must be an integer >= {minimum}")
    return value


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
            uses ``RAY_ADDRESS`` or starts a local Ray. Ignored when Ray is already
            initialised in this process.
        max_retries: extra attempts of a failed job (an exception, or its worker dying).
        storage_options: fsspec options of ``output_dir``.
        local_files_only: never download the model.
        on_result: called in this process with each job's manifest entry: first those of the
            jobs skipped as finished, then each new one as it lands (for progress bars).
        adapter_dirs: folders the recipes' adapter files may be read from (none by default).
        before_attempt: see :class:`RenderWorker` (fault-injection tests).
        flush_interval_s: rewrite the manifest at most this often while running (it is
            always written at the end, also after an error or interruption).

    Returns:
        A :class:`BatchResult`; failed jobs are in ``failed`` and in the manifest, not raised.

    Raises:
        ParameterError: a bad argument or job (before any model loads).
        ModelLoadError: a worker could not load the model.
    """
    started = time.perf_counter()
    if engine not in ENGINES:
        raise ParameterError(f"engine={engine!r} must be one of {', '.join(ENGINES)}")
    _check_count("workers", workers, 1)
    _check_count("cpus_per_worker", cpus_per_worker, 1)
    _check_count("max_retries", max_retries, 0)
    gpus = finite_float(gpus_per_worker)
    if gpus is None or gpus < 0:
        raise ParameterError(f"gpus_per_worker={gpus_per_worker!r} must be a number >= 0")
    if engine == "local" and (workers != 1 or gpus_per_worker):
        raise ParameterError("workers and gpus_per_worker apply to engine='ray' only")
    model_name = os.fspath(model) if model is not None else None
    batch = _check_unique([make_job(spec, model=model_name) for spec in jobs])
    if model_name is None:
        models = {job.recipe.model for job in batch}
        if len(models) > 1:
            raise ParameterError(
                f"the recipes name {len(models)} models ({', '.join(sorted(models))}); "
                "pass model= to render them all with one"
            )
        model_name = models.pop() if models else DEFAULT_MODEL
    storage = _Storage(output_dir, storage_options)
    storage.prepare()
    manifest = _Manifest(storage, flush_interval_s)
    todo = [job for job in batch if not _is_finished(manifest.entries.get(job.id), job, storage)]
    todo_ids = {job.id for job in todo}
    skipped = tuple(job.id for job in batch if job.id not in todo_ids)
    new: dict[str, ManifestEntry] = {}
    startup = [0.0]
    if on_result is not None:
        for job_id in skipped:
            on_result(manifest.entries[job_id])

    def record(job: BatchJob, result: Mapping[str, Any], attempts: int, total_s: float) -> None:
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
        new[job.id] = entry
        manifest.record(entry)
        if on_result is not None:
            on_result(entry)

    options = {
        "device": device,
        "dtype": dtype,
        "num_threads": cpus_per_worker,
        "local_files_only": local_files_only,
        "adapter_dirs": [os.path.abspath(os.fspath(folder)) for folder in adapter_dirs],
        "before_attempt": before_attempt,
    }
    try:
        if todo:
            run = _run_local if engine == "local" else _run_ray
            run(
                todo,
                model_name,
                storage,
                options,
                record=record,
                max_retries=max_retries,
                workers=workers,
                gpus_per_worker=float(gpus_per_worker),
                cpus_per_worker=cpus_per_worker,
                address=address,
                started=started,
                startup=startup,
            )
    finally:
        manifest.flush()
    entries = tuple(manifest.entries[job.id] for job in batch if job.id in manifest.entries)
    return BatchResult(
        output_dir=storage.root,
        entries=entries,
        rendered=tuple(job.id for job in todo if new[job.id].status == "done"),
        skipped=skipped,
        failed=tuple(job.id for job in todo if new[job.id].status == "failed"),
        startup_s=startup[0],
        elapsed_s=time.perf_counter() - started,
    )


def _run_local(
    todo: list[BatchJob],
    model: str,
    storage: _Storage,
    options: dict[str, Any],
    *,
    record: Callable[..., None],
    max_retries: int,
    started: float,
    startup: list[float],
    **_: Any,
) -> None:
    try:
        worker = RenderWorker(model, storage, **options)
    except RiffusionError:
        raise
    except Exception as error:
        raise ModelLoadError(f"could not load model {model!r}: {error}") from error
    startup[0] = time.perf_counter() - started
    for job in todo:
        job_started = time.perf_counter()
        attempt = 1
        while True:
            result = worker(_payload(job, attempt))
            if result["ok"] or not result["retry"] or attempt > max_retries:
                break
            attempt += 1
        record(job, result, attempt, time.perf_counter() - job_started)


def _run_ray(
    todo: list[BatchJob],
    model: str,
    storage: _Storage,
    options: dict[str, Any],
    *,
    record: Callable[..., None],
    max_retries: int,
    workers: int,
    gpus_per_worker: float,
    cpus_per_worker: int,
    address: str | None,
    started: float,
    startup: list[float],
) -> None:
    try:
        import ray
        from ray.exceptions import RayActorError, RayError
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
    if not storage.is_url and sum(1 for node in ray.nodes() if node.get("Alive")) > 1:
        warnings.warn(
            f"output_dir={storage.root!r} is a local path on a cluster of several nodes: each "
            "worker writes to that path on its own node unless it is a shared file system; "
            "use a URL (s3://, gs://, ...) otherwise",
            stacklevel=3,
        )
    actor_class = ray.remote(RenderWorker).options(
        num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_restarts=0, max_task_retries=0
    )
    storage_root = storage.root if storage.is_url else str(Path(storage.root).resolve())
    worker_storage = _Storage(storage_root, storage.storage_options)

    def start_actor() -> tuple[Any, Any]:
        actor = actor_class.remote(model, worker_storage, **options)
        return actor, actor.info.remote()

    actors: list[Any] = []
    starting: dict[Any, Any] = {}  # info() ref -> actor still loading the model
    idle: list[Any] = []
    in_flight: dict[Any, tuple[Any, BatchJob, int]] = {}
    queue = deque((job, 1) for job in todo)
    first_started: dict[str, float] = {}
    try:
        for _ in range(min(workers, len(todo))):
            actor, ready = start_actor()
            actors.append(actor)
            starting[ready] = actor
        while queue or in_flight:
            while idle and queue:
                actor = idle.pop()
                job, attempt = queue.popleft()
                first_started.setdefault(job.id, time.perf_counter())
                call = actor.__call__.remote(_payload(job, attempt))
                in_flight[call] = (actor, job, attempt)
            done, _ = ray.wait([*starting, *in_flight], num_returns=1)
            ref = done[0]
            if ref in starting:
                actor = starting.pop(ref)
                try:
                    ray.get(ref)
                except RayError as error:
                    raise ModelLoadError(
                        f"a Ray worker could not load model {model!r}: {error}"
                    ) from error
                if not startup[0]:
                    startup[0] = time.perf_counter() - started
                idle.append(actor)
                continue
            actor, job, attempt = in_flight.pop(ref)
            try:
                result = ray.get(ref)
                idle.append(actor)
            except RayActorError as error:
                # The worker process died (killed, out of memory, a crash in native code):
                # blame this attempt, start a replacement with its own model.
                reason = " ".join(str(error).split())[:300]
                result = {
                    "id": job.id,
                    "ok": False,
                    "retry": True,
                    "error": f"WorkerDied: the worker process ended during the job ({reason})",
                    "files": {},
                    "timings_s": {},
                    "worker": None,
                }
                actors.remove(actor)
                replacement, ready = start_actor()
                actors.append(replacement)
                starting[ready] = replacement
            except RayError as error:  # the call itself failed (serialisation, ...)
                result = {
                    "id": job.id,
                    "ok": False,
                    "retry": True,
                    "error": f"{type(error).__name__}: {' '.join(str(error).split())[:300]}",
                    "files": {},
                    "timings_s": {},
                    "worker": None,
                }
                idle.append(actor)
            if result["ok"] or not result["retry"] or attempt > max_retries:
                record(job, result, attempt, time.perf_counter() - first_started[job.id])
            else:
                queue.append((job, attempt + 1))
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        if owns_ray:
            ray.shutdown()
