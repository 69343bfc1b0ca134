"""Argument checks shared by the layers, with messages that name the argument and its value."""

from __future__ import annotations

import math
from typing import Any

from riffusion.errors import ParameterError

__all__ = ["check_integer", "check_number"]


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


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    """Return ``value`` as a float if it is a finite real number within the given bounds.

    Booleans, strings, ``None``, NaN and infinities are refused, so a swapped or missing
    argument fails here, naming itself, instead of deep inside numpy or torch.

    Raises:
        ParameterError: e.g. ``start_s='1' must be a finite number`` or
            ``peak_dbfs=3 must be <= 0``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            import numpy as np

            if isinstance(value, np.integer | np.floating) and not isinstance(value, np.bool_):
                value = value.item()
            else:
                raise TypeError
        except TypeError:
            raise ParameterError(
                f"{name}={value!r} must be a finite number, got {type(value).__name__}"
            ) from None
    try:
        number = float(value)
    except OverflowError:
        raise ParameterError(f"{name}={value!r} is too large to be a float") from None
    if not math.isfinite(number):
        raise ParameterError(f"{name}={value!r} must be a finite number")
    if minimum is not None and number < minimum:
        raise ParameterError(f"{name}={value!r} must be >= {minimum:g}")
    if maximum is not None and number > maximum:
        raise ParameterError(f"{name}={value!r} must be <= {maximum:g}")
    return number
