"""How the front door's generating methods are called: diffusers' keyword names, the default
number of steps, and one generation at a time per :class:`~riffusion.Riffuser`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from riffusion.errors import ParameterError

__all__ = ["DIFFUSERS_ALIASES", "generating"]

#: diffusers' keyword names the generating methods accept, and ours they stand for.
DIFFUSERS_ALIASES = {"guidance_scale": "guidance", "strength": "denoising"}


def _rename_aliases(method_name: str, accepted: Any, kwargs: dict[str, Any]) -> None:
    for alias, ours in DIFFUSERS_ALIASES.items():
        if alias not in kwargs:
            continue
        if ours not in accepted:
            raise ParameterError(
                f"{alias}= (diffusers' name for {ours}=) is not a parameter of "
                f"{method_name}(); set {ours} on the PromptInput values instead"
            )
        if ours in kwargs:
            raise ParameterError(
                f"{alias}={kwargs[alias]!r} and {ours}={kwargs[ours]!r} name the same "
                f"thing ({alias} is diffusers' name for {ours}); pass only {ours}="
            )
        kwargs[ours] = kwargs.pop(alias)


def generating(method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a generating method: it holds the instance's ``lock`` while it runs, takes
    diffusers' keyword names (:data:`DIFFUSERS_ALIASES`) and fills ``num_inference_steps`` from
    the instance's ``default_num_inference_steps`` when not given.

    Args:
        method: a method of a class with ``lock`` and ``default_num_inference_steps``.
    """
    accepted = inspect.signature(method).parameters

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        _rename_aliases(method.__name__, accepted, kwargs)
        steps = getattr(self, "default_num_inference_steps", None)
        if steps is not None and "num_inference_steps" in accepted:
            kwargs.setdefault("num_inference_steps", steps)
        with self.lock:
            return method(self, *args, **kwargs)

    return call
