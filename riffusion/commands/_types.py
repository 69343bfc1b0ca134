"""``argparse`` value types shared by the command line's sub-commands: numbers in a range, with
one-line messages that name the value and what was expected."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["float_in", "int_at_least", "int_in", "positive_int"]


def int_in(low: int, high: int | None, what: str) -> Callable[[str], int]:
    """A parser of integers in ``[low, high)`` (no upper bound when ``high`` is ``None``).

    Args:
        low: the smallest value accepted.
        high: the first value refused above ``low``, or ``None``.
        what: how the message describes a valid value ("a positive integer").
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value >= high):
            raise argparse.ArgumentTypeError(f"{text} must be {what}")
        return value

    return parse


def int_at_least(minimum: int) -> Callable[[str], int]:
    """A parser of integers ``>= minimum`` ("must be an integer >= 2").

    Args:
        minimum: the smallest value accepted.
    """
    return int_in(minimum, None, f"an integer >= {minimum}")


positive_int = int_in(1, None, "a positive integer")
"""Integers >= 1 ("must be a positive integer"): counts, sizes, steps."""


def float_in(
    low: float, high: float, what: str, *, open_low: bool = False
) -> Callable[[str], float]:
    """A parser of finite numbers in ``[low, high]`` (``(low, high]`` with ``open_low``).

    Args:
        low: the lower bound.
        high: the upper bound (``math.inf``: none).
        what: how the message describes a valid value ("a number in [0, 1]").
        open_low: refuse ``low`` itself.
    """

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        too_low = value <= low if open_low else value < low
        if not math.isfinite(value) or too_low or value > high:
            raise argparse.ArgumentTypeError(f"{text} must be {what}")
        return value

    return parse
