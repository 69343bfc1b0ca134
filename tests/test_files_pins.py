"""Pins for riffusion._files: output-path checks and the all-or-nothing writer."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest

from riffusion._files import atomic_output, check_output_path
from riffusion.errors import AudioFileError, ImageFormatError, ParameterError


class _BytesPath:
    """An ``os.PathLike`` whose ``__fspath__`` returns bytes."""

    def __fspath__(self) -> bytes:
        return b"clip.wav"


# ----------------------------------------------------------------------- check_output_path
def test_valid_paths_come_back_as_path(tmp_path, monkeypatch):
    assert check_output_path(str(tmp_path / "a.wav")) == tmp_path / "a.wav"
    assert isinstance(check_output_path(tmp_path / "a.wav"), Path)
    monkeypatch.chdir(tmp_path)
    assert check_output_path("relative.png") == Path("relative.png")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (b"x.wav", "output path must be a str or pathlib.Path, got bytes"),
        (5, "output path must be a str or pathlib.Path, got int"),
        (None, "output path must be a str or pathlib.Path, got NoneType"),
        ("", "output path '' must be a non-empty text path without NUL bytes"),
        ("a\x00b.wav", "output path 'a\\x00b.wav' must be a non-empty text path without NUL bytes"),
        (_BytesPath(), "output path b'clip.wav' must be a non-empty text path without NUL bytes"),
    ],
)
def test_bad_paths_raise_parameter_error_by_default(path, message):
    with pytest.raises(ParameterError) as info:
        check_output_path(path)
    assert type(info.value) is ParameterError
    assert str(info.value) == message


def test_folder_and_missing_folder_messages_use_the_given_error_and_name(tmp_path):
    with pytest.raises(AudioFileError) as info:
        check_output_path(tmp_path, error=AudioFileError, what="audio file")
    assert (
        str(info.value)
        == f"audio file path {str(tmp_path)!r} is a folder; give a file name inside it"
    )
    target = tmp_path / "no" / "x.png"
    with pytest.raises(ImageFormatError) as info:
        check_output_path(target, error=ImageFormatError, what="image")
    assert str(info.value) == (
        f"output folder {str(tmp_path / 'no')!r} does not exist (for image {str(target)!r})"
    )
    # A file where the folder should be is not a folder either.
    (tmp_path / "file").write_text("x")
    with pytest.raises(ParameterError, match="output folder .* does not exist"):
        check_output_path(tmp_path / "file" / "x.wav")


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
    with pytest.raises(AudioFileError) as info, atomic_output(target, error=AudioFileError):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(info.value) == f"cannot write {str(target)!r}: No space left on device"
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(ParameterError) as info, atomic_output(target):
        raise OSError("disk on fire")
    assert type(info.value) is ParameterError
    assert str(info.value) == f"cannot write {str(target)!r}: disk on fire"
    assert list(tmp_path.iterdir()) == []


def test_temporary_file_creation_failure_is_named(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    target = tmp_path / "x.png"
    with pytest.raises(ImageFormatError) as info, atomic_output(target, error=ImageFormatError):
        pytest.fail("the block must not run")
    assert str(info.value) == f"cannot write {str(target)!r}: Permission denied"
    assert isinstance(info.value.__cause__, PermissionError)


def test_failed_final_move_is_named_and_cleaned_up(tmp_path, monkeypatch):
    def refuse(source, destination):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    target = tmp_path / "x.wav"
    monkeypatch.setattr(os, "replace", refuse)
    with (
        pytest.raises(AudioFileError) as info,
        atomic_output(target, error=AudioFileError) as temporary,
    ):
        temporary.write_bytes(b"data")
    monkeypatch.undo()
    assert str(info.value) == f"cannot write {str(target)!r}: Invalid cross-device link"
    assert list(tmp_path.iterdir()) == []


def test_bad_target_is_checked_before_anything_is_created(tmp_path):
    with (
        pytest.raises(AudioFileError, match="is a folder"),
        atomic_output(tmp_path, error=AudioFileError),
    ):
        pytest.fail("the block must not run")
    assert list(tmp_path.iterdir()) == []
