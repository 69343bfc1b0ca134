"""Where a batch writes: a local folder or an fsspec URL, every file landing whole."""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from riffusion.errors import ParameterError, RiffusionError, install_hint

__all__ = ["Storage"]

_URL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class Storage:
    """A local folder or an fsspec URL; every write lands whole (temporary name, then rename).

    Picklable: it holds the URL and options only, and opens the file system lazily in each
    process (Ray ships it to every worker).

    Args:
        root: local folder or fsspec URL (``s3://bucket/run``, ``memory://run``, ...).
        storage_options: fsspec options of a URL (credentials, endpoint); none for a folder.

    Raises:
        ParameterError: an empty root, or options given for a local folder.
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
        """Where ``relative`` (a ``/``-separated path under the root) lives, for messages."""
        return f"{self.root.rstrip('/')}/{relative}"

    def prepare(self) -> None:
        """Create the root folder (or URL prefix) if missing."""
        if self.is_url:
            fs, base = self._filesystem()
            fs.makedirs(base, exist_ok=True)
            return
        root = Path(self.root).expanduser()
        if root.exists() and not root.is_dir():
            raise ParameterError(f"output_dir={self.root!r} exists and is not a folder")
        root.mkdir(parents=True, exist_ok=True)

    def write(self, relative: str, data: bytes) -> None:
        """Write ``data`` to ``relative`` under a hidden temporary name, then rename it.

        Args:
            relative: ``/``-separated path under the root.
            data: the file's bytes.
        """
        folder, _, name = relative.rpartition("/")
        temporary_name = f".{name}.{uuid.uuid4().hex}.partial"
        if self.is_url:
            self._write_url(folder, temporary_name, relative, data)
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

    def _write_url(self, folder: str, temporary_name: str, relative: str, data: bytes) -> None:
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

    def read(self, relative: str) -> bytes | None:
        """The bytes of ``relative``, or ``None`` when it does not exist.

        Args:
            relative: ``/``-separated path under the root.
        """
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
        """The size of ``relative`` in bytes, or ``None`` when it does not exist.

        Args:
            relative: ``/``-separated path under the root.
        """
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
