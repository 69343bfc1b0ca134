"""Interpolation between two prompts: the prompt input record and the pure mixing math.

Riffusion generates a smooth stream of clips by walking ``alpha`` from 0 to 1 between a start
and an end :class:`PromptInput`: text embeddings, denoising strength and guidance are mixed
linearly (:func:`lerp`) and the two seeds' noise tensors spherically (:func:`slerp`), because a
linear mix of two independent Gaussian tensors has a smaller norm than either and would decode to
a washed-out image, while a spherical mix keeps the norm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import torch

from riffusion.errors import ParameterError

__all__ = ["PromptInput", "check_alpha", "lerp", "slerp"]

_MAX_SEED = 2**63
# Above this |cos(angle)| the vectors are nearly parallel: sin(angle) ~ 0 makes the slerp weights
# ill-conditioned while lerp is then a very good approximation of the arc.
_PARALLEL_DOT = 0.9995

T = TypeVar("T", float, torch.Tensor)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_alpha(alpha: Any, *, name: str = "alpha") -> float:
    """Validate an interpolation weight and return it as a float.

    Args:
        alpha: A real number in [0, 1].
        name: Argument name used in the error message.

    Raises:
        ParameterError: If ``alpha`` is not a finite real number in [0, 1].
    """
    if not _is_real(alpha) or not math.isfinite(alpha) or not 0.0 <= alpha <= 1.0:
        raise ParameterError(f"{name}={alpha!r} must be a real number in [0, 1]")
    return float(alpha)


@dataclass(frozen=True)
class PromptInput:
    """One end of an interpolation, with riffusion's JSON field names and defaults.

    Attributes:
        prompt: The text prompt (may contain ``(word:1.3)`` style weights).
        seed: Seed of the starting noise, an int in [0, 2**63).
        negative_prompt: What to steer away from; ``None`` means the empty prompt.
        denoising: img2img strength in [0, 1]: 0 keeps the seed image (no denoising steps), 1
            regenerates it entirely. Ignored for text-to-image (no seed image).
        guidance: Classifier-free guidance scale, finite and >= 0 (1 = no guidance, 0 = the
            negative prompt alone).
    """

    prompt: str
    seed: int = 0
    negative_prompt: str | None = None
    denoising: float = 0.75
    guidance: float = 7.0

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise ParameterError(f"prompt={self.prompt!r} must be a str")
        if self.negative_prompt is not None and not isinstance(self.negative_prompt, str):
            raise ParameterError(f"negative_prompt={self.negative_prompt!r} must be a str or None")
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int)
            or not 0 <= self.seed < _MAX_SEED
        ):
            raise ParameterError(f"seed={self.seed!r} must be an int in [0, 2**63)")
        object.__setattr__(self, "denoising", check_alpha(self.denoising, name="denoising"))
        if not _is_real(self.guidance) or not math.isfinite(self.guidance) or self.guidance < 0:
            raise ParameterError(f"guidance={self.guidance!r} must be a finite number >= 0")
        object.__setattr__(self, "guidance", float(self.guidance))

    def to_dict(self) -> dict[str, Any]:
        """Return the riffusion JSON object: ``prompt``, ``seed``, ``negative_prompt``,
        ``denoising``, ``guidance``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptInput:
        """Build from the riffusion JSON object (missing optional keys take their defaults).

        Raises:
            ParameterError: If ``data`` is not a mapping, has unknown keys, lacks ``prompt``, or
                a value is invalid.
        """
        if not isinstance(data, Mapping):
            raise ParameterError(f"data={data!r} must be a mapping (a JSON object)")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ParameterError(
                f"data has unknown keys {unknown}; expected a subset of {sorted(known)}"
            )
        if "prompt" not in data:
            raise ParameterError(f"data={dict(data)!r} lacks the required key 'prompt'")
        return cls(**data)


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
    norm_a = torch.linalg.vector_norm(a)
    norm_b = torch.linalg.vector_norm(b)
    if norm_a == 0 or norm_b == 0:
        return lerp(alpha, v0, v1.to(v0))
    dot = float(torch.dot(a, b) / (norm_a * norm_b))
    if abs(dot) > _PARALLEL_DOT:
        return lerp(alpha, v0, v1.to(v0))
    theta = math.acos(max(-1.0, min(1.0, dot)))
    sin_theta = math.sin(theta)
    w0 = math.sin((1.0 - alpha) * theta) / sin_theta
    w1 = math.sin(alpha * theta) / sin_theta
    mixed = w0 * a + w1 * b
    return mixed.reshape(v0.shape).to(device=v0.device, dtype=v0.dtype)
