"""File-system helpers shared by the writers: outputs appear whole or not at all."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from riffusion.errors import ParameterError, RiffusionError

__all__ = ["atomic_output", "check_output_path", "file_fingerprint"]


def check_output_path(
    path: object, *, error: type[RiffusionError] = ParameterError, what: str = "output"
) -> Path:
    """``path`` as a :class:`~pathlib.Path` whose folder exists and that is not itself a folder.

    Args:
        path: a ``str`` or ``os.PathLike`` naming the file to write.
        error: the exception class to raise (each writer raises its own family).
        what: how the message names the file ("audio file", "image", ...).

    Raises:
        error: not a path, a folder, a missing folder, or a path with a NUL byte.
    """
    if isinstance(path, bytes) or not isinstance(path, str | os.PathLike):
        raise error(f"{what} path must be a str or pathlib.Path, got {type(path).__name__}")
    text = os.fspath(path)
    if isinstance(text, bytes) or not text or "\x00" in text:
        raise error(f"{what} path {text!r} must be a non-empty text path without NUL bytes")
    path = Path(text)
    if path.is_dir():
        raise error(f"{what} path {text!r} is a folder; give a file name inside it")
    directory = path.parent
    if not directory.is_dir():
        raise error(f"output folder {str(directory)!r} does not exist (for {what} {text!r})")
    return path


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike[str], *, error: type[RiffusionError] = ParameterError
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    The temporary file keeps ``path``'s suffix so that writers choosing a format by extension
    behave the same. On any exception the temporary file is removed and ``path`` is untouched.

    Args:
        path: the file to write.
        error: the exception class that operating-system failures (missing or read-only folder,
            a folder in the way, a full disk) are reported as.

    Raises:
        error: the folder is missing or not writable, ``path`` is a folder, or the final move
            fails; the message names the path and the reason.
    """
    path = check_output_path(path, error=error)
    directory = path.parent
    try:
        handle, temporary_name = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=directory
        )
    except OSError as failure:
        raise error(f"cannot write {str(path)!r}: {failure.strerror or failure}") from failure
    os.close(handle)
    temporary = Path(temporary_name)
    # mkstemp creates private files; give the output the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(temporary, 0o666 & ~umask)
        yield temporary
        os.replace(temporary, path)
    except OSError as failure:
        raise error(f"cannot write {str(path)!r}: {failure.strerror or failure}") from failure
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """A short, stable identity of a file's bytes: the first 16 hex digits of their SHA-256.

    Cached per (path, size, modification time), so asking again for an unchanged file (every
    clip made with a loaded LoRA) does not read it again.

    Args:
        path: an existing file.

    Raises:
        OSError: the file cannot be read (callers report it in their own error family).
    """
    status = os.stat(path)
    return _fingerprint(os.path.realpath(path), status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _fingerprint(path: str, size: int, modified_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
