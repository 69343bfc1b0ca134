"""File-system helpers shared by the writers: outputs appear whole or not at all."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from riffusion.errors import ParameterError, RiffusionError

__all__ = ["atomic_output", "check_allowed_file", "check_output_path", "file_fingerprint"]

# Most file systems allow 255 bytes per name; atomic_output's temporary name is 18 bytes longer
# than the file's ("." + stem + "." + 8 random characters + ".partial" + suffix), so a name the
# temporary can still have is at most 255 - 18 bytes.
_MAX_NAME_BYTES = 237


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
    try:
        is_folder, folder_exists = path.is_dir(), path.parent.is_dir()
    except OSError as failure:  # a name too long for the file system, a loop of links, ...
        raise error(f"{what} path {text[:200]!r} is not usable: {failure.strerror}") from None
    if is_folder:
        raise error(f"{what} path {text!r} is a folder; give a file name inside it")
    if not folder_exists:
        raise error(f"output folder {str(path.parent)!r} does not exist (for {what} {text!r})")
    if len(os.fsencode(path.name)) > _MAX_NAME_BYTES:
        raise error(
            f"{what} file name {path.name[:40]!r}… is {len(os.fsencode(path.name))} bytes long; "
            f"at most {_MAX_NAME_BYTES} (file systems refuse longer names)"
        )
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


def check_allowed_file(
    path: object,
    *,
    allowed_dirs: Iterable[str | os.PathLike[str]],
    max_bytes: int,
    what: str,
    error: type[RiffusionError] = ParameterError,
) -> Path:
    """``path`` resolved, if it is a regular file of at most ``max_bytes`` under an allowed folder.

    For file names that come from someone else (a recipe, a share string): the name is resolved
    (links followed) and compared with the allowed folders *before* the file system is asked
    anything about it, so a name outside them reveals nothing (not even whether it exists).
    Inside them, the file is opened without blocking and checked to be a regular file (not a
    FIFO or a device, which would block or never end) of a bounded size.

    Args:
        path: the file name (``str`` or ``os.PathLike``).
        allowed_dirs: folders whose files may be read; none allows nothing.
        max_bytes: largest file accepted.
        what: how the message names the file ("LoRA weights").
        error: the exception class to raise.

    Raises:
        error: outside the allowed folders, missing, not a regular file, or too large.
    """
    if not isinstance(path, str | os.PathLike) or isinstance(path, bytes):
        raise error(f"{what} path must be a str or pathlib.Path, got {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str) or "\x00" in text:
        raise error(f"{what} path {text!r} must be a text path without NUL bytes")
    folders = [os.path.realpath(os.fspath(folder)) for folder in allowed_dirs]
    real = os.path.realpath(text)
    if not any(os.path.commonpath([real, folder]) == folder for folder in folders):
        allowed = ", ".join(repr(folder) for folder in folders) or "none"
        raise error(
            f"{what} {text!r} is outside the folders allowed to be read ({allowed}); allow its "
            "folder (adapter_dirs=[...], or --adapter-dir on the command line) to use it"
        )
    try:
        handle = os.open(real, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as failure:
        raise error(f"cannot read {what} {text!r}: {failure.strerror}") from None
    try:
        status = os.fstat(handle)
    finally:
        os.close(handle)
    if not stat.S_ISREG(status.st_mode):
        raise error(f"{what} {text!r} is not a regular file")
    if status.st_size > max_bytes:
        raise error(
            f"{what} {text!r} is {status.st_size} bytes; at most {max_bytes} are read "
            "(riffusion.limits.MAX_ADAPTER_BYTES)"
        )
    return Path(real)
