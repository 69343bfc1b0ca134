"""How the tests check an error: its type, the value it names and what it says was expected.

An error test pins behaviour, not wording: the exception's exact type (a :class:`RiffusionError`),
that the message names the offending argument and echoes its value, and a key phrase of what was
expected. The library's convention is ``name=value must be ...``, so ``named`` is what the
message must *start* with (which also refuses a message wrapped in anything): ``seed=-1``, or
the subject of a message that names it otherwise (``audio file '/x.wav'``, ``min_bpm=0,
max_bpm=200.0``), followed by a space or a separator, so ``seed=1`` does not match ``seed=10``.
Names and values further in (``cannot convert 2 channels to num_channels=3``) are ``mentions``.
Rewording a message keeps these tests passing; naming the wrong argument or value, or saying
something else was expected, does not.

    assert_refused(stream_schedule, ["x"], seed=-1, named="seed=-1", phrase="[0, 2**63)")

    with refused(AudioFileError, named=f"cannot write {str(target)!r}", phrase="No space"):
        save_to_a_full_disk(target)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from riffusion.errors import ParameterError, RiffusionError

__all__ = ["assert_refused", "refused"]

# What may follow ``name=value`` at the start of a message: the end, a space or a separator,
# never more of a value (``seed=1`` must not match ``seed=10``).
_AFTER_NAMED = ("", " ", ",", ":", ";")


def _as_tuple(parts: str | tuple[str, ...]) -> tuple[str, ...]:
    return (parts,) if isinstance(parts, str) else tuple(parts)


def _check(
    exception: BaseException,
    error: type[RiffusionError],
    named: str | None,
    mentions: str | tuple[str, ...],
    phrase: str | tuple[str, ...],
) -> str:
    assert type(exception) is error, f"raised {type(exception).__name__}, not {error.__name__}"
    assert isinstance(exception, RiffusionError)
    message = str(exception)
    if named is not None:
        assert message.startswith(named), f"{message!r} does not start with {named!r}"
        assert message[len(named) : len(named) + 1] in _AFTER_NAMED, (
            f"{message!r} names more than {named!r}"
        )
    for part in (*_as_tuple(mentions), *_as_tuple(phrase)):
        assert part in message, f"{part!r} is not in {message!r}"
    return message


@contextlib.contextmanager
def refused(
    error: type[RiffusionError] = ParameterError,
    *,
    named: str | None = None,
    mentions: str | tuple[str, ...] = (),
    phrase: str | tuple[str, ...],
) -> Iterator[pytest.ExceptionInfo[RiffusionError]]:
    """The block must raise exactly ``error`` with a message that starts with ``named``, holds
    every one of ``mentions`` (names and values not at its start) and every key ``phrase``.

    Yields the ``pytest.ExceptionInfo``, filled once the block has raised (for ``__cause__``).
    """
    with pytest.raises(RiffusionError) as info:
        yield info
    _check(info.value, error, named, mentions, phrase)


def assert_refused(
    call: Callable[..., Any],
    /,
    *args: Any,
    error: type[RiffusionError] = ParameterError,
    named: str | None = None,
    mentions: str | tuple[str, ...] = (),
    phrase: str | tuple[str, ...],
    **kwargs: Any,
) -> str:
    """``call(*args, **kwargs)`` must raise as :func:`refused` says; returns the message.

    ``error``, ``named``, ``mentions`` and ``phrase`` are this helper's: to pass arguments of
    those names to ``call``, wrap it (``functools.partial``) or use :func:`refused`.
    """
    with pytest.raises(RiffusionError) as info:
        call(*args, **kwargs)
    return _check(info.value, error, named, mentions, phrase)
