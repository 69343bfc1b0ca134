"""Pins for riffusion.models.sd1.interpolation: exact values of lerp and slerp (hand-computed
geometry), identity at the endpoints, the parallel threshold at its boundary, dtypes of the
fallbacks, extreme magnitudes, and every refused input (type, named value, key phrase)."""

from __future__ import annotations

import math

import pytest
import torch

from riffusion.models.sd1.interpolation import lerp, slerp
from tests.errors import assert_refused

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics


def _unit(degrees: float, norm: float = 1.0) -> torch.Tensor:
    radians = math.radians(degrees)
    return torch.tensor([math.cos(radians), math.sin(radians)], dtype=torch.float64) * norm


# ----------------------------------------------------------------------------------- lerp
def test_lerp_values():
    assert lerp(0.25, 2.0, 6.0) == 3.0
    assert lerp(0.75, -4.0, 4.0) == 2.0
    mixed = lerp(0.25, torch.tensor([0.0, 8.0]), torch.tensor([4.0, 0.0]))
    assert torch.equal(mixed, torch.tensor([1.0, 6.0]))


def test_lerp_returns_the_endpoints_themselves():
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 5.0])
    assert lerp(0.0, a, b) is a and lerp(1.0, a, b) is b
    # Not recomputed: 0 · inf would be NaN.
    assert lerp(1.0, math.inf, 2.0) == 2.0 and lerp(0.0, 2.0, math.inf) == 2.0


@pytest.mark.parametrize(
    ("a", "b", "named", "expected"),
    [
        (torch.zeros(2), 1.0, None, "both tensors or both numbers"),
        (1.0, torch.zeros(2), None, "both tensors or both numbers"),
        (torch.zeros(2), torch.zeros(3), "a.shape=(2,)", ("b.shape=(3,)", "must be equal")),
        (
            torch.zeros(2, 1),
            torch.zeros(1, 2),
            "a.shape=(2, 1)",
            ("b.shape=(1, 2)", "must be equal"),
        ),
    ],
)
def test_lerp_refuses(a, b, named, expected):
    assert_refused(lerp, 0.5, a, b, named=named, phrase=expected)


# ---------------------------------------------------------------------------------- slerp
@pytest.mark.parametrize(("angle", "alpha"), [(60, 0.5), (60, 0.25), (120, 0.5), (150, 0.2)])
def test_slerp_walks_the_arc_at_constant_speed(angle, alpha):
    # Unit vectors at 0° and `angle`: the result is the unit vector at alpha · angle.
    mixed = slerp(alpha, _unit(0), _unit(angle))
    assert torch.allclose(mixed, _unit(alpha * angle), rtol=0, atol=1e-14)


def test_slerp_weights_of_unequal_norms():
    # w0 = sin((1 - α) θ) / sin θ, w1 = sin(α θ) / sin θ; at θ = 60°, α = 1/2 both are
    # sin 30° / sin 60° = 1 / √3.
    mixed = slerp(0.5, _unit(0), _unit(60, norm=2.0))
    expected = (_unit(0) + _unit(60, norm=2.0)) / math.sqrt(3)
    assert torch.allclose(mixed, expected, rtol=0, atol=1e-14)


def test_slerp_keeps_shape_and_dtype():
    v0 = _unit(0).reshape(1, 2, 1).float()
    v1 = _unit(90).reshape(1, 2, 1)
    mixed = slerp(0.5, v0, v1)
    assert mixed.shape == (1, 2, 1) and mixed.dtype == torch.float32
    half = math.sqrt(0.5)
    assert torch.allclose(mixed.flatten(), torch.tensor([half, half]), rtol=0, atol=1e-7)


def test_slerp_returns_the_endpoints_themselves():
    v0, v1 = _unit(0).float(), _unit(90)  # float32 and float64
    assert slerp(0.0, v0, v1) is v0 and slerp(1.0, v0, v1) is v1


def test_slerp_parallel_threshold_is_exclusive():
    cosine = 0.9995
    v0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    v1 = torch.tensor([cosine, math.sqrt(1 - cosine**2)], dtype=torch.float64)
    assert float(torch.dot(v0, v1) / torch.linalg.vector_norm(v1)) == cosine
    # At |cos θ| = 0.9995 exactly it is still a slerp: the unit norm is kept, where a lerp
    # would shrink it to cos(θ/2) = √((1 + 0.9995) / 2) ≈ 0.999875.
    assert float(slerp(0.5, v0, v1).norm()) == pytest.approx(1.0, abs=1e-12)
    assert float(lerp(0.5, v0, v1).norm()) == pytest.approx(math.sqrt(1.9995 / 2), abs=1e-12)
    # Beyond it, the lerp.
    closer = torch.tensor([0.9996, math.sqrt(1 - 0.9996**2)], dtype=torch.float64)
    assert torch.equal(slerp(0.5, v0, closer), lerp(0.5, v0, closer))


def test_slerp_fallbacks_keep_the_start_dtype():
    # A zero vector and a parallel pair fall back to lerp, converting v1 to v0's dtype first.
    zero = torch.zeros(2, dtype=torch.float32)
    end = torch.tensor([2.0, 4.0], dtype=torch.float64)
    mixed = slerp(0.25, zero, end)
    assert mixed.dtype == torch.float32 and torch.equal(mixed, torch.tensor([0.5, 1.0]))
    parallel = slerp(0.5, torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0], dtype=torch.float64))
    assert parallel.dtype == torch.float32 and torch.equal(parallel, torch.tensor([2.0, 0.0]))
    empty = slerp(0.5, torch.zeros(0), torch.zeros(0, dtype=torch.float64))
    assert empty.shape == (0,) and empty.dtype == torch.float32


@pytest.mark.parametrize("scale", [1e200, 1e-200, 1e-300])
def test_slerp_of_extreme_magnitudes(scale):
    # The norms of these would overflow or underflow in float64; the angle is the same.
    v0, v1 = _unit(0, norm=scale), _unit(60, norm=scale)
    mixed = slerp(0.5, v0, v1)
    assert torch.allclose(mixed / scale, _unit(30), rtol=0, atol=1e-12)


def test_slerp_near_the_largest_float64():
    v0, v1 = _unit(0, norm=1.7e308), _unit(90, norm=1.7e308)
    mixed = slerp(0.5, v0, v1)
    assert torch.allclose(mixed / 1.7e308, _unit(45), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("v0", "v1", "named", "expected"),
    [
        ([1.0], torch.zeros(1), "v0=list", "must be a floating-point tensor"),
        (
            torch.zeros(1),
            torch.zeros(1, dtype=torch.int64),
            "v1=Tensor",
            "must be a floating-point tensor",
        ),
        (torch.zeros(2), torch.zeros(3), "v0.shape=(2,)", ("v1.shape=(3,)", "must be equal")),
        (torch.tensor([1.0, math.nan]), torch.ones(2), None, "must not contain NaN or inf"),
        (torch.ones(2), torch.tensor([math.inf, 1.0]), None, "must not contain NaN or inf"),
    ],
)
def test_slerp_refuses(v0, v1, named, expected):
    assert_refused(slerp, 0.5, v0, v1, named=named, phrase=expected)
