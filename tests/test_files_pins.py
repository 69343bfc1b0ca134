"""Pins for riffusion._files: output-path checks (through the writers that make them) and the
all-or-nothing writer."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from riffusion import Audio
from riffusion._files import atomic_output
from riffusion.errors import AudioFileError, ImageFormatError, ParameterError
from riffusion.image import save_image
from tests.errors import refused


class _BytesPath:
    """An ``os.PathLike`` whose ``__fspath__`` returns bytes."""

    def __fspath__(self) -> bytes:
        return b"clip.wav"


# --------------------------------------------------------------------------- output paths
def _write_bytes(path) -> Path:
    """A writer with atomic_output's defaults (ParameterError, "output"), as the recipe, dataset
    and command-line writers use it."""
    with atomic_output(path) as temporary:
        temporary.write_bytes(b"x")
    return Path(path)


# Each writer checks the path with its own exception family and its own name for the file.
WRITERS = [
    pytest.param(
        lambda path: Audio(np.zeros((1, 100)), 8000).save(path),
        AudioFileError,
        "audio file",
        ".wav",
        id="Audio.save",
    ),
    pytest.param(
        lambda path: save_image(Image.new("L", (1, 1)), path),
        ImageFormatError,
        "image",
        ".png",
        id="save_image",
    ),
    pytest.param(_write_bytes, ParameterError, "output", ".json", id="atomic_output"),
]


@pytest.mark.parametrize(("write", "error", "what", "suffix"), WRITERS)
def test_valid_paths_come_back_as_path(tmp_path, monkeypatch, write, error, what, suffix):
    assert write(str(tmp_path / f"a{suffix}")) == tmp_path / f"a{suffix}"
    assert isinstance(write(tmp_path / f"b{suffix}"), Path)
    monkeypatch.chdir(tmp_path)
    assert write(f"relative{suffix}") == Path(f"relative{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{n}{suffix}" for n in "ab"] + [
        f"relative{suffix}"
    ]


@pytest.mark.parametrize(
    ("path", "named", "expected"),
    [
        (b"x.wav", "path", ("must be a str or pathlib.Path", "got bytes")),
        (5, "path", ("must be a str or pathlib.Path", "got int")),
        (None, "path", ("must be a str or pathlib.Path", "got NoneType")),
        ("", "path ''", "must be a non-empty text path without NUL bytes"),
        ("a\x00b.wav", "path 'a\\x00b.wav'", "must be a non-empty text path without NUL bytes"),
        (_BytesPath(), "path b'clip.wav'", "must be a non-empty text path without NUL bytes"),
    ],
)
@pytest.mark.parametrize(("write", "error", "what", "suffix"), WRITERS)
def test_bad_paths_are_refused_by_every_writer(
    tmp_path, path, named, expected, write, error, what, suffix
):
    with refused(error, named=f"{what} {named}", phrase=expected):
        write(path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("write", "error", "what", "suffix"), WRITERS)
def test_folders_and_missing_folders_are_refused(tmp_path, write, error, what, suffix):
    with refused(error, named=f"{what} path {str(tmp_path)!r}", phrase="is a folder"):
        write(tmp_path)
    target = tmp_path / "no" / f"x{suffix}"
    with refused(
        error,
        named=f"output folder {str(tmp_path / 'no')!r}",
        mentions=f"{what} {str(target)!r}",
        phrase="does not exist",
    ):
        write(target)
    # A file where the folder should be is not a folder either.
    (tmp_path / "file").write_text("x")
    with refused(error, named=f"output folder {str(tmp_path / 'file')!r}", phrase="does not exist"):
        write(tmp_path / "file" / f"x{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize(("write", "error", "what", "suffix"), WRITERS)
def test_file_names_of_more_than_237_bytes_are_refused(tmp_path, write, error, what, suffix):
    # 237 bytes is the longest name whose hidden temporary (18 bytes longer) still fits the
    # file systems' 255: written at the limit, refused one past it.
    longest = "a" * (237 - len(suffix)) + suffix
    assert write(tmp_path / longest) == tmp_path / longest
    too_long = "b" * (238 - len(suffix)) + suffix
    with refused(
        error,
        named=f"{what} file name {too_long[:40]!r}…",
        phrase=("238 bytes long", "at most 237"),
    ):
        write(tmp_path / too_long)
    assert [p.name for p in tmp_path.iterdir()] == [longest]


@pytest.mark.parametrize(("write", "error", "what", "suffix"), WRITERS)
def test_paths_the_file_system_refuses_are_named(tmp_path, write, error, what, suffix):
    # A folder name over the file system's 255 bytes: asking whether it exists already fails.
    target = str(tmp_path / ("d" * 300) / f"x{suffix}")
    with refused(error, named=f"{what} path {target[:200]!r}", phrase="is not usable"):
        write(target)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- atomic_output
def test_success_moves_a_hidden_sibling_into_place(tmp_path):
    target = tmp_path / "song.wav"
    with atomic_output(target) as temporary:
        assert temporary.parent == tmp_path
        assert temporary.name.startswith(".song.") and temporary.name.endswith(".partial.wav")
        assert temporary.exists() and not target.exists()
        temporary.write_bytes(b"payload")
    assert target.read_bytes() == b"payload"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]


def test_output_gets_the_permissions_of_a_plain_open(tmp_path):
    previous = os.umask(0o027)
    try:
        with atomic_output(tmp_path / "a.bin") as temporary:
            temporary.write_bytes(b"x")
        assert os.umask(0o027) == 0o027  # the umask was restored
    finally:
        os.umask(previous)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o640


def test_relative_target_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with atomic_output("plain.txt") as temporary:
        assert temporary.parent.resolve() == tmp_path.resolve()
        temporary.write_text("ok")
    assert (tmp_path / "plain.txt").read_text() == "ok"


def test_failure_in_the_block_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(KeyError), atomic_output(target) as temporary:
        temporary.write_text("new")
        raise KeyError("writer failed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_os_errors_in_the_block_become_the_given_error(tmp_path):
    target = tmp_path / "full.flac"
    named = f"cannot write {str(target)!r}"
    with (
        refused(AudioFileError, named=named, phrase="No space left on device") as info,
        atomic_output(target, error=AudioFileError),
    ):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert isinstance(info.value.__cause__, OSError)
    with refused(ParameterError, named=named, phrase="disk on fire"), atomic_output(target):
        raise OSError("disk on fire")
    assert list(tmp_path.iterdir()) == []


def test_temporary_file_creation_failure_is_named(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    target = tmp_path / "x.png"
    with (
        refused(
            ImageFormatError, named=f"cannot write {str(target)!r}", phrase="Permission denied"
        ) as info,
        atomic_output(target, error=ImageFormatError),
    ):
        pytest.fail("the block must not run")
    assert isinstance(info.value.__cause__, PermissionError)


def test_failed_final_move_is_named_and_cleaned_up(tmp_path, monkeypatch):
    def refuse(source, destination):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    target = tmp_path / "x.wav"
    monkeypatch.setattr(os, "replace", refuse)
    with (
        refused(
            AudioFileError,
            named=f"cannot write {str(target)!r}",
            phrase="Invalid cross-device link",
        ),
        atomic_output(target, error=AudioFileError) as temporary,
    ):
        temporary.write_bytes(b"data")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_bad_target_is_checked_before_anything_is_created(tmp_path):
    with (
        refused(AudioFileError, named=f"output path {str(tmp_path)!r}", phrase="is a folder"),
        atomic_output(tmp_path, error=AudioFileError),
    ):
        pytest.fail("the block must not run")
    assert list(tmp_path.iterdir()) == []
