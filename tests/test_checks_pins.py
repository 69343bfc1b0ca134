"""Pins for riffusion._checks: what each shared check refuses, its boundaries and return types."""

from __future__ import annotations

import numpy as np
import pytest

from riffusion._checks import MAX_SEED, check_integer, check_number, check_seed, check_seed_walk
from tests.errors import assert_refused


# --------------------------------------------------------------------------- check_integer
def test_check_integer_returns_the_value_at_and_above_the_minimum():
    assert check_integer("steps", 1) == 1
    assert check_integer("steps", 7) == 7
    assert check_integer("offset", 0, minimum=0) == 0
    assert check_integer("count", 3, minimum=3) == 3
    assert check_integer("delta", -2, minimum=-2) == -2


@pytest.mark.parametrize(
    ("value", "minimum", "named", "expected"),
    [
        (0, 1, "steps=0", "must be a positive integer"),
        (-1, 0, "steps=-1", "must be a non-negative integer"),
        (2, 3, "steps=2", "must be an integer >= 3"),
        (-3, -2, "steps=-3", "must be an integer >= -2"),
        (True, 1, "steps=True", "must be a positive integer"),
        (False, 0, "steps=False", "must be a non-negative integer"),
        (2.0, 1, "steps=2.0", "must be a positive integer"),
        ("3", 1, "steps='3'", "must be a positive integer"),
        (None, 1, "steps=None", "must be a positive integer"),
    ],
)
def test_check_integer_refuses(value, minimum, named, expected):
    assert_refused(check_integer, "steps", value, minimum=minimum, named=named, phrase=expected)


def test_check_integer_default_minimum_is_one():
    assert_refused(check_integer, "n", 0, named="n=0", phrase="must be a positive integer")


def test_check_integer_maximum_is_inclusive_and_named():
    assert check_integer("n", 5, maximum=5) == 5
    assert check_integer("n", -7, minimum=None, maximum=5) == -7
    assert check_integer("n", 10**30, minimum=None) == 10**30
    assert_refused(check_integer, "n", 6, maximum=5, named="n=6", phrase="in [1, 5]")
    assert_refused(check_integer, "n", 0, maximum=5, named="n=0", phrase="in [1, 5]")
    assert_refused(
        check_integer, "n", 6, minimum=None, maximum=5, named="n=6", phrase="an integer <= 5"
    )
    # No bounds: only the type is checked.
    message = assert_refused(
        check_integer, "n", 1.5, minimum=None, named="n=1.5", phrase="must be an integer"
    )
    assert message.endswith("integer")


@pytest.mark.parametrize(
    ("value", "named"),
    [
        # Integers beyond 128 bits are described by their size.
        (2**128, "n=(an integer of 129 bits)"),
        (-(2**200), "n=-(an integer of 201 bits)"),
        # Up to 40 characters a value is echoed whole; longer, its first 20 and last 8.
        (2**128 - 1, f"n={2**128 - 1}"),
        ("a" * 38, f"n='{'a' * 38}'"),
        ("0123456789" * 3 + "abcdefghi", "n='0123456789012345678…cdefghi' (41 characters)"),
    ],
)
def test_values_in_messages_are_described_briefly(value, named):
    # [0, 0]: every value here is refused.
    assert_refused(check_integer, "n", value, minimum=0, maximum=0, named=named, phrase="in [0, 0]")


# ------------------------------------------------------------------------- seeds
def test_check_seed_accepts_0_to_2_63_minus_1():
    assert check_seed("seed", 0) == 0
    assert check_seed("seed", MAX_SEED) == MAX_SEED == 2**63 - 1


@pytest.mark.parametrize("value", [-1, MAX_SEED + 1, True, 1.0, "1", None])
def test_check_seed_refuses(value):
    assert_refused(check_seed, "seed", value, named=f"seed={value!r}", phrase="[0, 2**63)")


def test_check_seed_walk_refuses_windows_past_the_last_seed():
    # Three windows use seeds seed, seed + 1 and seed + 2: MAX_SEED - 2 is the last start.
    check_seed_walk(MAX_SEED - 2, 3)
    check_seed_walk(MAX_SEED, 1)
    assert_refused(
        check_seed_walk,
        MAX_SEED - 1,
        3,
        named=f"seed={MAX_SEED - 1}",
        mentions=("seed + 2", "3 windows"),
        phrase=f"use a seed of at most {MAX_SEED - 2}",
    )


# ---------------------------------------------------------------------------- check_number
def test_check_number_returns_python_floats():
    for value, expected in [(3, 3.0), (0.25, 0.25), (np.float32(0.5), 0.5), (np.int64(-4), -4.0)]:
        result = check_number("x", value)
        assert result == expected and type(result) is float


@pytest.mark.parametrize(
    ("value", "named", "expected"),
    [
        (True, "x=True", ("must be a finite number", "got bool")),
        ("1", "x='1'", ("must be a finite number", "got str")),
        (None, "x=None", ("must be a finite number", "got NoneType")),
        (np.bool_(True), "x=np.True_", ("must be a finite number", "got bool")),
        ([1.0], "x=[1.0]", ("must be a finite number", "got list")),
        (float("nan"), "x=nan", "must be a finite number"),
        (float("-inf"), "x=-inf", "must be a finite number"),
        (np.float64("inf"), "x=np.float64(inf)", "must be a finite number"),
    ],
)
def test_check_number_refuses_non_numbers_and_non_finite(value, named, expected):
    assert_refused(check_number, "x", value, named=named, phrase=expected)


def test_check_number_huge_integer_is_named():
    # Described by its size, not echoed digit by digit (beyond 4,300 digits repr itself fails).
    named = "gain=(an integer of 1329 bits)"
    assert_refused(check_number, "gain", 10**400, named=named, phrase="too large to be a float")
    named = "gain=-(an integer of 16610 bits)"
    assert_refused(check_number, "gain", -(10**5000), named=named, phrase="too large")


def test_check_number_bounds_are_inclusive_and_named():
    assert check_number("x", 0, minimum=0.0) == 0.0
    assert check_number("x", 0, maximum=0.0) == 0.0
    assert check_number("x", -100, minimum=-100.0, maximum=0.0) == -100.0
    assert_refused(check_number, "x", -0.5, minimum=0.0, named="x=-0.5", phrase="must be >= 0")
    assert_refused(check_number, "x", 3, maximum=0.0, named="x=3", phrase="must be <= 0")
    assert_refused(
        check_number, "x", -101, minimum=-100.0, named="x=-101", phrase="must be >= -100"
    )
    assert_refused(
        check_number, "x", 1.5, minimum=0.0, maximum=1.0, named="x=1.5", phrase="must be <= 1"
    )
    # Without bounds any finite value passes.
    assert check_number("x", -1e300) == -1e300


def test_check_device_refuses_devices_this_machine_lacks(monkeypatch):
    import torch

    from riffusion._checks import check_device
    from riffusion.errors import DeviceError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for value in ("cuda", "cuda:0", torch.device("cuda", 1)):
        assert_refused(
            check_device,
            "device",
            value,
            error=DeviceError,
            named=f"device={value!r}",
            phrase="CUDA is not available on this machine; use 'cpu'",
        )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("device", "cuda:1") == torch.device("cuda", 1)
    assert_refused(
        check_device,
        "device",
        "cuda:2",
        error=DeviceError,
        named="device='cuda:2'",
        phrase=("only 2 CUDA device(s)", "(indices 0..1)", "use 'cpu'"),
    )
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert_refused(
        check_device,
        "device",
        "mps",
        error=DeviceError,
        named="device='mps'",
        phrase="Apple MPS is not available on this machine; use 'cpu'",
    )
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert check_device("device", "mps") == torch.device("mps")
    assert check_device("device", "cpu") == torch.device("cpu")
    assert check_device("device", torch.device("cpu")) == torch.device("cpu")


def test_check_device_refuses_what_is_not_a_device():
    import torch

    from riffusion._checks import check_device

    assert_refused(
        check_device,
        "device",
        5,
        named="device=5",
        phrase=("must be a device name", "or a torch.device"),
    )
    message = assert_refused(
        check_device,
        "device",
        "gpu",
        named="device='gpu'",
        phrase=("is not a device torch knows", "'cpu', 'cuda', 'cuda:1', 'mps'"),
    )
    assert message.endswith("'mps')")
    assert torch.device("cpu").type == "cpu"
