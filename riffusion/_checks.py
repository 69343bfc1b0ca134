"""Argument checks shared by the layers, with messages that name the argument and its value."""

from __future__ import annotations

from typing import Any

from riffusion.errors import ParameterError

__all__ = ["check_integer"]


def check_integer(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``value`` if it is an ``int`` (not a bool) of at least ``minimum``.

    Raises:
        ParameterError: e.g. ``steps=0 must be a positive integer``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        if minimum == 1:
            expected = "a positive integer"
        elif minimum == 0:
            expected = "a non-negative integer"
        else:
            expected = f"an integer >= {minimum}"
        raise ParameterError(f"{name}={value!r} must be {expected}")
    return value
