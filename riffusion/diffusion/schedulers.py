"""Noise schedulers by short name.

Any diffusers scheduler instance can be assigned to ``pipeline.scheduler``; these names are a
convenience for the common ones. A scheduler is always built with ``Cls.from_config(config)`` from
the current scheduler's config, so the checkpoint's noise schedule (betas, number of training
timesteps, steps offset, prediction type) carries over and only the sampling algorithm changes.
"""

from __future__ import annotations

from typing import Any

import diffusers
from diffusers import SchedulerMixin

from riffusion.errors import ParameterError

__all__ = ["SCHEDULER_NAMES", "make_scheduler"]

# name -> (diffusers class name, config overrides). "default" is handled by the pipeline: it is
# the scheduler the checkpoint ships with.
# DDIM's clip_sample defaults to True, which Stable Diffusion's latents must not get (they are not
# in [-1, 1]); diffusers' own StableDiffusionPipeline forces it off for the same reason.
_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {"clip_sample": False}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
}

#: Every name accepted by :func:`make_scheduler` and ``RiffusionPipeline.set_scheduler``.
SCHEDULER_NAMES: tuple[str, ...] = ("default", *_SCHEDULERS)


def make_scheduler(name: str, config: Any) -> SchedulerMixin:
    """Build the scheduler called ``name`` from an existing scheduler config.

    Args:
        name: One of :data:`SCHEDULER_NAMES` except ``"default"`` (which only the pipeline knows):
            ``"ddim"``, ``"dpm++"`` (DPM-Solver++ multistep), ``"euler"``, ``"euler_ancestral"``,
            ``"lms"`` (needs scipy), ``"pndm"``.
        config: A diffusers scheduler config (``scheduler.config``), whose noise schedule is kept.

    Returns:
        A fresh scheduler instance.

    Raises:
        ParameterError: If the name is unknown (the message lists the choices), or if the
            scheduler's optional dependency is missing.
    """
    if not isinstance(name, str) or name.strip().lower() not in _SCHEDULERS:
        raise ParameterError(
            f"scheduler={name!r} is not a known scheduler; expected one of {list(SCHEDULER_NAMES)}"
        )
    class_name, overrides = _SCHEDULERS[name.strip().lower()]
    cls = getattr(diffusers, class_name)
    try:
        return cls.from_config(config, **overrides)
    except ImportError as exc:
        # diffusers exposes a dummy class when an optional backend (scipy for LMS) is missing.
        raise ParameterError(
            f"scheduler={name!r} needs an optional dependency that is not installed: "
            f"{str(exc).strip().splitlines()[0]} (pip install scipy)"
        ) from exc
