"""Pins for riffusion._checks: exact messages, boundaries and return types of the shared checks."""

from __future__ import annotations

import numpy as np
import pytest

from riffusion._checks import check_integer, check_number
from riffusion.errors import ParameterError


def _message(call, *args, **kwargs) -> str:
    with pytest.raises(ParameterError) as info:
        call(*args, **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------- check_integer
def test_check_integer_returns_the_value_at_and_above_the_minimum():
    assert check_integer("steps", 1) == 1
    assert check_integer("steps", 7) == 7
    assert check_integer("offset", 0, minimum=0) == 0
    assert check_integer("count", 3, minimum=3) == 3
    assert check_integer("delta", -2, minimum=-2) == -2


@pytest.mark.parametrize(
    ("value", "minimum", "message"),
    [
        (0, 1, "steps=0 must be a positive integer"),
        (-1, 0, "steps=-1 must be a non-negative integer"),
        (2, 3, "steps=2 must be an integer >= 3"),
        (-3, -2, "steps=-3 must be an integer >= -2"),
        (True, 1, "steps=True must be a positive integer"),
        (False, 0, "steps=False must be a non-negative integer"),
        (2.0, 1, "steps=2.0 must be a positive integer"),
        ("3", 1, "steps='3' must be a positive integer"),
        (None, 1, "steps=None must be a positive integer"),
    ],
)
def test_check_integer_messages(value, minimum, message):
    assert _message(check_integer, "steps", value, minimum=minimum) == message


def test_check_integer_default_minimum_is_one():
    assert _message(check_integer, "n", 0) == "n=0 must be a positive integer"


# ---------------------------------------------------------------------------- check_number
def test_check_number_returns_python_floats():
    for value, expected in [(3, 3.0), (0.25, 0.25), (np.float32(0.5), 0.5), (np.int64(-4), -4.0)]:
        result = check_number("x", value)
        assert result == expected and type(result) is float


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "x=True must be a finite number, got bool"),
        ("1", "x='1' must be a finite number, got str"),
        (None, "x=None must be a finite number, got NoneType"),
        (np.bool_(True), "x=np.True_ must be a finite number, got bool"),
        ([1.0], "x=[1.0] must be a finite number, got list"),
        (float("nan"), "x=nan must be a finite number"),
        (float("-inf"), "x=-inf must be a finite number"),
        (np.float64("inf"), "x=np.float64(inf) must be a finite number"),
    ],
)
def test_check_number_refuses_non_numbers_and_non_finite(value, message):
    assert _message(check_number, "x", value) == message


def test_check_number_huge_integer_is_named():
    message = _message(check_number, "gain", 10**400)
    # Described by its size, not echoed digit by digit (beyond 4,300 digits repr itself fails).
    assert message == "gain=(an integer of 1329 bits) is too large to be a float"
    assert _message(check_number, "gain", -(10**5000)).startswith("gain=-(an integer of 16610")


def test_check_number_bounds_are_inclusive_and_named():
    assert check_number("x", 0, minimum=0.0) == 0.0
    assert check_number("x", 0, maximum=0.0) == 0.0
    assert check_number("x", -100, minimum=-100.0, maximum=0.0) == -100.0
    assert _message(check_number, "x", -0.5, minimum=0.0) == "x=-0.5 must be >= 0"
    assert _message(check_number, "x", 3, maximum=0.0) == "x=3 must be <= 0"
    assert _message(check_number, "x", -101, minimum=-100.0) == "x=-101 must be >= -100"
    assert _message(check_number, "x", 1.5, minimum=0.0, maximum=1.0) == "x=1.5 must be <= 1"
    # Without bounds any finite value passes.
    assert check_number("x", -1e300) == -1e300


def test_check_device_refuses_devices_this_machine_lacks(monkeypatch):
    import torch

    from riffusion._checks import check_device
    from riffusion.errors import DeviceError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for value in ("cuda", "cuda:0", torch.device("cuda", 1)):
        with pytest.raises(DeviceError, match="CUDA is not available on this machine; use 'cpu'"):
            check_device("device", value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("device", "cuda:1") == torch.device("cuda", 1)
    message = r"device='cuda:2': only 2 CUDA device\(s\) exist \(indices 0\.\.1\); use 'cpu'"
    with pytest.raises(DeviceError, match=message):
        check_device("device", "cuda:2")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="Apple MPS is not available"):
        check_device("device", "mps")
    assert check_device("device", "cpu") == torch.device("cpu")
