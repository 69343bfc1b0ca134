"""Noise schedulers by short name.

Any diffusers scheduler instance can be assigned to ``pipeline.scheduler``; these names are a
convenience for the common ones. A scheduler is always built with ``Cls.from_config(config)`` from
the current scheduler's config, so the checkpoint's noise schedule (betas, number of training
timesteps, steps offset, prediction type) carries over and only the sampling algorithm changes.
"""

from __future__ import annotations

from typing import Any, cast

import diffusers
from diffusers import SchedulerMixin

from riffusion.defaults import SCHEDULER_NAMES
from riffusion.errors import ParameterError

__all__ = ["build_scheduler", "describe_scheduler", "make_scheduler"]

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
    "unipc": ("UniPCMultistepScheduler", {}),
    "dpm++2m-karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "lcm": ("LCMScheduler", {}),
    "tcd": ("TCDScheduler", {}),
}


def make_scheduler(name: str, config: Any) -> SchedulerMixin:
    """Build the scheduler called ``name`` from an existing scheduler config.

    Args:
        name: One of :data:`SCHEDULER_NAMES` except ``"default"`` (which only the pipeline knows):
            ``"ddim"``, ``"dpm++"`` (DPM-Solver++ multistep), ``"euler"``, ``"euler_ancestral"``,
            ``"lms"`` (needs scipy), ``"pndm"``, and the few-step ``"unipc"``,
            ``"dpm++2m-karras"`` (DPM-Solver++ 2M, Karras sigmas), ``"lcm"``, ``"tcd"``.
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


def _plain_config(config: Any) -> dict[str, Any]:
    """A scheduler config as a plain dict without diffusers' private ``_`` keys."""
    return {key: value for key, value in dict(config).items() if not key.startswith("_")}


def _json_value(value: Any) -> Any:
    """Config values as JSON has them (tuples → lists), so recipes compare after a round trip."""
    if isinstance(value, tuple | list):
        return [_json_value(item) for item in value]
    return value


def _candidate(name: str, default_cls: Any, default_config: Any) -> SchedulerMixin:
    if name == "default":
        return default_cls.from_config(default_config)
    if name in _SCHEDULERS:
        return make_scheduler(name, default_config)
    cls = getattr(diffusers, name, None)
    if not isinstance(cls, type) or not issubclass(cls, SchedulerMixin):
        raise ParameterError(
            f"scheduler={name!r} is neither one of {list(SCHEDULER_NAMES)} nor a diffusers "
            "scheduler class name"
        )
    return cast(Any, cls).from_config(default_config)


def describe_scheduler(
    scheduler: SchedulerMixin, default_cls: Any, default_config: Any
) -> tuple[str, dict[str, Any]]:
    """Name a scheduler instance the way recipes record it.

    The name is ``"default"`` (the checkpoint's own scheduler), a name of
    :data:`SCHEDULER_NAMES` whose scheduler (built from the checkpoint's config) has the same
    class, or else the diffusers class name (``"UniPCMultistepScheduler"``). Config entries that
    differ from what that name builds are returned as overrides, so
    ``build_scheduler(name, overrides, default_cls, default_config)`` makes the same scheduler.

    Args:
        scheduler: the scheduler in use.
        default_cls: class of the checkpoint's own scheduler.
        default_config: config of the checkpoint's own scheduler.

    Returns:
        ``(name, overrides)``; ``overrides`` is ``{}`` when the name alone rebuilds it.
    """
    config = {key: _json_value(value) for key, value in _plain_config(scheduler.config).items()}
    best: tuple[str, dict[str, Any]] | None = None
    for name in (*SCHEDULER_NAMES, type(scheduler).__name__):
        try:
            candidate = _candidate(name, default_cls, default_config)
        except ParameterError:
            continue
        if type(candidate) is not type(scheduler):
            continue
        built = {k: _json_value(v) for k, v in _plain_config(candidate.config).items()}
        overrides = {key: value for key, value in config.items() if built.get(key) != value}
        if not overrides:
            return name, {}
        if best is None:
            best = (name, overrides)
    if best is None:  # a class diffusers does not export: only its name can be recorded
        return type(scheduler).__name__, {}
    return best


def build_scheduler(
    name: str, overrides: dict[str, Any] | None, default_cls: Any, default_config: Any
) -> SchedulerMixin:
    """A fresh scheduler from a recipe's ``(name, overrides)`` (see :func:`describe_scheduler`).

    Raises:
        ParameterError: unknown name, or overrides the scheduler rejects.
    """
    scheduler = _candidate(name, default_cls, default_config)
    if overrides:
        try:
            scheduler = type(scheduler).from_config({**dict(scheduler.config), **overrides})
        except (TypeError, ValueError) as error:
            raise ParameterError(
                f"scheduler_config={overrides!r} is not valid for {name!r}: {error}"
            ) from error
    return scheduler
