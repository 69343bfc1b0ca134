"""Interpolation between two prompts: the mixing math.

Riffusion generates a smooth stream of clips by walking ``alpha`` from 0 to 1 between a start
and an end :class:`~riffusion.PromptInput`: text embeddings, denoising strength and guidance
are mixed linearly (:func:`lerp`) and the two seeds' noise tensors spherically
(:func:`slerp`), because a linear mix of two independent Gaussian tensors has a smaller norm
than either and would decode to a washed-out image, while a spherical mix keeps the norm.
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch

from riffusion.errors import ParameterError
from riffusion.inputs import check_alpha

__all__ = ["lerp", "slerp"]

# Above this |cos(angle)| the vectors are nearly parallel: sin(angle) ~ 0 makes the slerp weights
# ill-conditioned while lerp is then a very good approximation of the arc.
_PARALLEL_DOT = 0.9995

T = TypeVar("T", float, torch.Tensor)


def lerp(alpha: float, a: T, b: T) -> T:
    """Linear interpolation ``(1 - alpha) * a + alpha * b``.

    The endpoints are exact: ``alpha == 0`` returns ``a`` and ``alpha == 1`` returns ``b``
    unchanged (not recomputed), which keeps interpolated generations bitwise equal to the
    single-prompt ones at the ends.

    Args:
        alpha: Weight in [0, 1].
        a: Start value, a float or a tensor.
        b: End value, same type (and shape, for tensors) as ``a``.

    Returns:
        The mixed value, of ``a``'s type (and dtype).

    Raises:
        ParameterError: If alpha is outside [0, 1] or the tensors' shapes differ.
    """
    alpha = check_alpha(alpha)
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            raise ParameterError("lerp needs a and b both tensors or both numbers")
        if a.shape != b.shape:
            raise ParameterError(
                f"a.shape={tuple(a.shape)} and b.shape={tuple(b.shape)} must be equal"
            )
    if alpha == 0.0:
        return a
    if alpha == 1.0:
        return b
    return a * (1.0 - alpha) + b * alpha


def _rescaled(v: torch.Tensor) -> torch.Tensor:
    """``v`` divided by the power of two that brings its largest magnitude into [1, 2) (an exact
    division; zeros stay zeros, as ``frexp(0)`` gives the divisor 0.5)."""
    peak = float(v.abs().max()) if v.numel() else 0.0
    return v / math.ldexp(1.0, math.frexp(peak)[1] - 1)


def slerp(alpha: float, v0: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
    """Spherical linear interpolation between two tensors seen as flat vectors.

    ``slerp = sin((1 - alpha) theta) / sin(theta) * v0 + sin(alpha theta) / sin(theta) * v1``,
    with ``theta`` the angle between ``v0`` and ``v1``. For inputs of equal norm the result keeps
    that norm (two independent Gaussian noise tensors have nearly equal norms, so the mixed noise
    stays at the scale the sampler expects). Nearly parallel inputs (|cos theta| > 0.9995) or a
    zero vector fall back to :func:`lerp`. Computed in float64 on the CPU.

    Args:
        alpha: Weight in [0, 1]; 0 returns ``v0`` and 1 returns ``v1`` exactly.
        v0: Start tensor, any shape, floating point.
        v1: End tensor, same shape as ``v0``.

    Returns:
        A tensor of ``v0``'s shape, dtype and device.

    Raises:
        ParameterError: If alpha is outside [0, 1], the shapes differ, or an input is not a
            floating-point tensor or contains NaN/inf.
    """
    alpha = check_alpha(alpha)
    for name, v in (("v0", v0), ("v1", v1)):
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            raise ParameterError(f"{name}={type(v).__name__} must be a floating-point tensor")
    if v0.shape != v1.shape:
        raise ParameterError(
            f"v0.shape={tuple(v0.shape)} and v1.shape={tuple(v1.shape)} must be equal"
        )
    if alpha == 0.0:
        return v0
    if alpha == 1.0:
        return v1

    # float64 on the CPU: exact enough for the angle, and available on every backend (MPS has
    # no float64). The tensors are noise-sized, so the copy is cheap.
    a = v0.detach().to(device="cpu", dtype=torch.float64).flatten()
    b = v1.detach().to(device="cpu", dtype=torch.float64).flatten()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ParameterError("slerp inputs v0 and v1 must not contain NaN or inf")
    # The angle from copies scaled to a largest entry in [1, 2) by a power of two (exact): the
    # norms of float64 entries near 1e200 or 1e-200 would overflow or underflow.
    unit_a, unit_b = _rescaled(a), _rescaled(b)
    norm_a = torch.linalg.vector_norm(unit_a)
    norm_b = torch.linalg.vector_norm(unit_b)
    if norm_a == 0 or norm_b == 0:
        return lerp(alpha, v0, v1.to(v0))
    dot = float(torch.dot(unit_a, unit_b) / (norm_a * norm_b))
    if abs(dot) > _PARALLEL_DOT:
        return lerp(alpha, v0, v1.to(v0))
    theta = math.acos(dot)  # |dot| <= _PARALLEL_DOT here: no clamping to [-1, 1] needed
    sin_theta = math.sin(theta)
    w0 = math.sin((1.0 - alpha) * theta) / sin_theta
    w1 = math.sin(alpha * theta) / sin_theta
    mixed = w0 * a + w1 * b
    return mixed.reshape(v0.shape).to(device=v0.device, dtype=v0.dtype)
