"""The batch manifest: one JSON line per job at the root of the output, and what it proves.

A job is finished when the manifest says ``done`` for the same recipe (by digest) and every
file it lists is present with the recorded size; reruns skip finished jobs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from riffusion.batch.jobs import BatchJob
from riffusion.batch.storage import Storage
from riffusion.errors import ParameterError, RiffusionError

__all__ = ["MANIFEST_NAME", "Manifest", "ManifestEntry", "is_finished", "read_manifest"]

MANIFEST_NAME = "manifest.jsonl"
"""Name of the manifest at the root of the output."""


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
    return list(_load_manifest(Storage(output_dir, storage_options)).values())


def _load_manifest(storage: Storage) -> dict[str, ManifestEntry]:
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


def is_finished(entry: ManifestEntry | None, job: BatchJob, storage: Storage) -> bool:
    """Whether ``entry`` proves ``job`` done: same recipe, every listed file at its size.

    Args:
        entry: the job's manifest entry from an earlier run, or ``None``.
        job: the job as given now.
        storage: the output its files are in.
    """
    if entry is None or entry.status != "done" or entry.recipe_sha256 != job.digest:
        return False
    return bool(entry.files) and all(
        storage.size(info["path"]) == info["bytes"] for info in entry.files.values()
    )


class Manifest:
    """The manifest in memory, written whole (atomically) when it changed.

    Args:
        storage: the output holding ``manifest.jsonl`` (read now, if present).
        flush_interval_s: :meth:`record` rewrites the file at most this often (seconds).
    """

    def __init__(self, storage: Storage, flush_interval_s: float) -> None:
        self.storage = storage
        self.entries = _load_manifest(storage)
        self.flush_interval_s = flush_interval_s
        self.dirty = False
        self.last_flush = time.monotonic()

    def record(self, entry: ManifestEntry) -> None:
        """Set the job's entry (replacing an earlier run's); flush if the interval passed.

        Args:
            entry: the job's new entry.
        """
        self.entries[entry.id] = entry
        self.dirty = True
        if time.monotonic() - self.last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Write the whole manifest if anything changed since the last write."""
        if not self.dirty:
            return
        text = "".join(
            json.dumps(entry.to_dict(), sort_keys=True) + "\n" for entry in self.entries.values()
        )
        self.storage.write(MANIFEST_NAME, text.encode())
        self.dirty = False
        self.last_flush = time.monotonic()
