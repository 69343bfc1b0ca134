"""Argument checks shared by the layers, with messages that name the argument and its value."""

from __future__ import annotations

import math
from typing import Any

from riffusion.errors import DeviceError, ParameterError

__all__ = [
    "MAX_SEED",
    "check_device",
    "check_integer",
    "check_number",
    "check_seed",
    "check_seed_walk",
    "describe",
    "finite_float",
    "mps_available",
    "unavailable_reason",
]


def describe(value: Any) -> str:
    """``repr(value)`` for an error message, at most about 40 characters.

    A 400-digit integer is not echoed back in full, and one beyond Python's 4,300-digit limit
    for ``str(int)`` (where ``repr`` itself raises) is described by its size.

    Args:
        value: any value.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"{'-' if value < 0 else ''}(an integer of {value.bit_length()} bits)"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}…{text[-8:]} ({len(text)} characters)"


def finite_float(value: Any) -> float | None:
    """``value`` as a float if it is a real number (not a bool) that is finite as a float.

    ``None`` for anything else: other types, NaN, infinities, and integers too large for a float
    (``10**400``, where ``math.isfinite`` itself raises ``OverflowError``). Validation code
    reads ``number = finite_float(value)`` and then checks ``number`` against its bounds.

    Args:
        value: any value.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def check_integer(
    name: str, value: Any, *, minimum: int | None = 1, maximum: int | None = None
) -> int:
    """Return ``value`` if it is an ``int`` (not a bool) in ``[minimum, maximum]``.

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        minimum: the smallest allowed value (``None``: no lower bound).
        maximum: the largest allowed value (``None``: no upper bound).

    Raises:
        ParameterError: e.g. ``steps=0 must be a positive integer``.
    """
    too_small = minimum is not None and isinstance(value, int) and value < minimum
    too_large = maximum is not None and isinstance(value, int) and value > maximum
    if isinstance(value, bool) or not isinstance(value, int) or too_small or too_large:
        if minimum is not None and maximum is not None:
            expected = f"an integer in [{minimum}, {maximum}]"
        elif maximum is not None:
            expected = f"an integer <= {maximum}"
        elif minimum == 1:
            expected = "a positive integer"
        elif minimum == 0:
            expected = "a non-negative integer"
        elif minimum is not None:
            expected = f"an integer >= {minimum}"
        else:
            expected = "an integer"
        raise ParameterError(f"{name}={describe(value)} must be {expected}")
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
                f"{name}={describe(value)} must be a finite number, got {type(value).__name__}"
            ) from None
    try:
        number = float(value)
    except OverflowError:
        raise ParameterError(f"{name}={describe(value)} is too large to be a float") from None
    if not math.isfinite(number):
        raise ParameterError(f"{name}={describe(value)} must be a finite number")
    if minimum is not None and number < minimum:
        raise ParameterError(f"{name}={describe(value)} must be >= {minimum:g}")
    if maximum is not None and number > maximum:
        raise ParameterError(f"{name}={describe(value)} must be <= {maximum:g}")
    return number


#: Seeds are 64-bit: torch generators take any int in [0, 2**63).
MAX_SEED = 2**63 - 1


def check_seed(name: str, value: Any) -> int:
    """Return ``value`` if it is an int in ``[0, 2**63)`` (what torch generators accept).

    Raises:
        ParameterError: e.g. ``seed=-1 must be an integer in [0, 2**63)``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ParameterError(f"{name}={describe(value)} must be an integer in [0, 2**63)")
    return value


def check_seed_walk(seed: int, windows: int) -> None:
    """Refuse, before generating, a clip whose window seeds ``seed + k`` (``k < windows``)
    walk past 2**63 − 1 (it would fail after the first window, its work thrown away)."""
    if seed + windows - 1 > MAX_SEED:
        raise ParameterError(
            f"seed={seed} walks to seed + {windows - 1} over the {windows} windows of this "
            f"clip, past 2**63 - 1; use a seed of at most {MAX_SEED - windows + 1}"
        )


def check_device(name: str, value: Any) -> Any:
    """Return ``value`` as a ``torch.device`` if it names one this machine has.

    Args:
        name: the argument's name, for the message.
        value: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, ... or a ``torch.device``.

    Raises:
        ParameterError: not a string or ``torch.device``, or not a device name torch knows.
        DeviceError: a CUDA or MPS device this machine does not have.
    """
    import torch

    if isinstance(value, torch.device):
        device = value
    elif not isinstance(value, str):
        raise ParameterError(
            f"{name}={value!r} must be a device name such as 'cpu' or 'cuda', or a torch.device"
        )
    else:
        try:
            device = torch.device(value)
        except (RuntimeError, ValueError) as error:
            raise ParameterError(
                f"{name}={value!r} is not a device torch knows (e.g. 'cpu', 'cuda', 'cuda:1', "
                "'mps')"
            ) from error
    reason = unavailable_reason(device)
    if reason is not None:
        raise DeviceError(f"{name}={value!r}: {reason}; use 'cpu'")
    return device


def mps_available() -> bool:
    """Whether torch can use Apple's MPS backend on this machine."""
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def unavailable_reason(device: Any) -> str | None:
    """Why this machine cannot run on ``device`` (a ``torch.device``), or ``None`` if it can.

    The one availability check of CUDA (and its device index) and MPS, shared by
    :func:`check_device` and :func:`riffusion.models.sd1.devices.resolve_device`; each words
    its own error around the reason.

    Args:
        device: a ``torch.device``; types other than ``cuda`` and ``mps`` are always available.
    """
    import torch

    if device.type == "cuda":
        if not torch.cuda.is_available():
            return "CUDA is not available on this machine"
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            return f"only {count} CUDA device(s) exist (indices 0..{count - 1})"
    elif device.type == "mps" and not mps_available():
        return "Apple MPS is not available on this machine"
    return None
