"""Batch jobs: what one job is, its safe id, and reading jobs from their written forms.

A job is a :class:`~riffusion.Recipe` with an id. :func:`make_job` accepts every form a job is
written in (a recipe in any of the forms :meth:`Recipe.parse <riffusion.Recipe.parse>` reads,
the short form of :meth:`Riffuser.text_to_audio`'s arguments, an object with ``id`` and
``recipe``), :func:`load_jobs` a JSON Lines file of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from riffusion._checks import check_integer, finite_float
from riffusion._files import file_fingerprint
from riffusion.defaults import DEFAULT_MODEL
from riffusion.errors import ParameterError
from riffusion.inputs import PromptInput
from riffusion.params import SpectrogramParams
from riffusion.recipe import Adapter, Recipe

__all__ = ["BatchJob", "check_job_id", "check_unique", "load_jobs", "make_job", "recipe_digest"]

_MAX_ID_LENGTH = 128
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MAX_JOBS_FILE_BYTES = 256 * 1024 * 1024  # about a million jobs
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
        "lora",
        "lora_scale",
    }
)
_SHORT_KINDS = ("text_to_audio", "loop", "riffuse")


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


# ------------------------------------------------------------------------------ short form
def _prompt_input(value: Any, *, what: str, start: PromptInput | None = None) -> PromptInput:
    if isinstance(value, str):
        seed = start.seed if start is not None else 0
        return PromptInput(prompt=value, seed=seed)
    if isinstance(value, Mapping):
        return PromptInput.from_dict(value)
    raise ParameterError(f"{what}={value!r} must be a prompt string or a prompt object")


def _short_lora(data: Mapping[str, Any], base_dir: str | os.PathLike[str] | None) -> Adapter:
    """The LoRA of a short-form job: ``lora`` (a weights file) at ``lora_scale`` (default 1)."""
    path, scale = data["lora"], data.get("lora_scale", 1.0)
    if not isinstance(path, str) or not path.strip():
        raise ParameterError(f"lora={path!r} must be the path of a LoRA weights file")
    if isinstance(scale, bool) or finite_float(scale) is None:
        raise ParameterError(f"lora_scale={scale!r} must be a finite number")
    resolved = Path(base_dir or ".", os.path.expanduser(path)).resolve()
    try:
        fingerprint = file_fingerprint(resolved)
    except OSError as error:
        raise ParameterError(
            f"lora={path!r} (resolved to {str(resolved)!r}) must be a readable LoRA weights "
            f"file: {error.strerror or error}"
        ) from None
    return Adapter(kind="lora", path=str(resolved), fingerprint=fingerprint, scale=float(scale))


def _short_form_recipe(
    data: Mapping[str, Any],
    model: str | None,
    base_dir: str | os.PathLike[str] | None = None,
) -> Recipe:
    """Build the Recipe a short-form job describes (keys as :meth:`Riffuser.text_to_audio`)."""
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
    if "lora" in data:
        values["adapters"] = (_short_lora(data, base_dir),)
    elif "lora_scale" in data:
        raise ParameterError("'lora_scale' needs a 'lora' (the weights file)")
    values.update(_short_kind_values(data, kind, start))
    _check_short_values(values)
    return Recipe(**values)


def _short_kind_values(data: Mapping[str, Any], kind: str, start: PromptInput) -> dict[str, Any]:
    """The values only some kinds take: ``end`` and ``alpha`` of a riffuse; none for the rest."""
    if kind == "riffuse":
        values: dict[str, Any] = {}
        if "end" in data:
            values["end"] = _prompt_input(data["end"], what="end", start=start)
        values["alpha"] = data.get("alpha", 0.0)
        return values
    for key in ("end", "alpha"):
        if key in data:
            raise ParameterError(f"{key!r} applies to kind 'riffuse' only, not {kind!r}")
    if kind == "loop" and "duration_s" in data:
        raise ParameterError("a loop is one window long; 'duration_s' does not apply")
    return {}


def _check_short_values(values: Mapping[str, Any]) -> None:
    steps = values.get("num_inference_steps")
    if steps is not None:
        check_integer("num_inference_steps", steps)
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


# ------------------------------------------------------------------------------- job forms
def make_job(
    spec: Any, *, model: str | None = None, base_dir: str | os.PathLike[str] | None = None
) -> BatchJob:
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
      ``scheduler``, ``params`` (spectrogram parameters), ``model``, and ``lora`` (a LoRA
      weights file, recorded with its fingerprint) with ``lora_scale`` (default 1).

    Without an ``id``, the id is ``job-`` and the first 16 hex digits of the recipe's
    :func:`recipe_digest`.

    Args:
        spec: the job description.
        model: model recorded in short-form recipes (default: Riffusion's checkpoint).
        base_dir: folder a short form's relative ``lora`` path is relative to (default: the
            working folder). The file is read here for its fingerprint; the workers load it
            only from their ``adapter_dirs``.

    Raises:
        ParameterError: the description is malformed, names an unsafe id, or needs inputs a
            batch job cannot carry (input audio, custom images).
    """
    if isinstance(spec, BatchJob):
        return spec
    job_id = None
    if isinstance(spec, Recipe | str):
        recipe = Recipe.parse(spec)
    elif isinstance(spec, Mapping):
        data = dict(spec)
        job_id = data.pop("id", None)
        if job_id is not None:
            check_job_id(job_id)
        try:
            recipe = _object_recipe(data, model, base_dir)
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


def _object_recipe(
    data: dict[str, Any], model: str | None, base_dir: str | os.PathLike[str] | None = None
) -> Recipe:
    """The recipe of a job object (its ``id`` already removed): wrapped, whole or short form."""
    if "recipe" in data:
        extra = sorted(set(data) - {"recipe"})
        if extra:
            raise ParameterError(f"a job with a 'recipe' takes only 'id' besides, got {extra}")
        return Recipe.parse(data["recipe"])
    if "start" in data:
        return Recipe.parse(data)
    if "prompt" in data:
        return _short_form_recipe(data, model, base_dir)
    raise ParameterError("a job object needs 'prompt' (short form), 'start' (a recipe) or 'recipe'")


# ------------------------------------------------------------------------------ jobs files
def load_jobs(
    source: str | os.PathLike[str] | Iterable[str], *, model: str | None = None
) -> list[BatchJob]:
    """Read jobs from JSON Lines: one job (see :func:`make_job`) per line.

    Blank lines and lines starting with ``#`` are skipped; a line may also be a bare
    ``riffusion:1:`` recipe URL. A short form's relative ``lora`` path is relative to the jobs
    file's folder (the working folder for standard input and lines).

    Args:
        source: a file path, ``"-"`` for standard input, or an iterable of lines.
        model: model recorded in short-form recipes.

    Raises:
        ParameterError: naming the line of the first malformed job or duplicate id.
    """
    lines: Iterable[str]
    base_dir = None
    if isinstance(source, str | os.PathLike):
        name = os.fspath(source)
        lines = _read_lines(name)
        if name != "-":
            base_dir = os.path.dirname(os.path.abspath(name))
    else:
        name, lines = "<lines>", source
    jobs = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            jobs.append(_job_from_line(text, model, base_dir))
        except ParameterError as error:
            raise ParameterError(f"{name}, line {number}: {error}") from None
    return check_unique(jobs)


def _read_lines(name: str) -> list[str]:
    """The lines of the jobs file ``name`` (``"-"``: standard input), size and UTF-8 checked."""
    if name == "-":
        import sys

        return sys.stdin.read().splitlines()
    path = Path(name)
    if not path.is_file():
        raise ParameterError(f"jobs file {name!r} does not exist or is not a regular file")
    if path.stat().st_size > _MAX_JOBS_FILE_BYTES:
        raise ParameterError(
            f"jobs file {name!r} is {path.stat().st_size} bytes; at most "
            f"{_MAX_JOBS_FILE_BYTES} (split it into several batches)"
        )
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ParameterError(f"jobs file {name!r} is not UTF-8 text: {error}") from None


def _job_from_line(text: str, model: str | None, base_dir: str | None = None) -> BatchJob:
    """One non-blank line of a jobs file: a bare share string, or a job as a JSON value."""
    if text.startswith("riffusion:"):
        return make_job(text, model=model)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:
        # ValueError: malformed JSON (JSONDecodeError), or an integer of more digits than
        # Python converts; RecursionError: nesting deeper than the parser goes.
        raise ParameterError(f"not valid JSON: {error}") from None
    return make_job(data, model=model, base_dir=base_dir)


def check_unique(jobs: list[BatchJob]) -> list[BatchJob]:
    """Drop exact repeats (same id and recipe); reject ids that clash (case-insensitively).

    Args:
        jobs: the jobs in order.

    Returns:
        The jobs in order, each (id, recipe) once.

    Raises:
        ParameterError: two different jobs share an id, also in another letter case (some file
            systems do not tell case apart).
    """
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
