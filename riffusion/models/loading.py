"""Opening an image model for the front door: hub ids and folders, single files, the CPU
default sampler, and the model id recipes record."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from riffusion.errors import ParameterError

__all__ = [
    "CPU_DEFAULT_SCHEDULER",
    "CPU_DEFAULT_STEPS",
    "model_id",
    "open_pretrained",
    "register_model",
    "unregister_model",
]

#: On the CPU, unless a scheduler is asked for, DPM-Solver++ multistep at 25 steps: about 2x
#: fewer UNet calls than the checkpoint's 50-step PNDM.
CPU_DEFAULT_SCHEDULER = "dpm++"
CPU_DEFAULT_STEPS = 25


# Model ids served by a factory of their own instead of a diffusers checkpoint: another model
# family, or a toy model in tests. Looked up before anything is downloaded or opened.
_FACTORIES: dict[str, Callable[..., Any]] = {}
_FACTORIES_LOCK = threading.Lock()


def register_model(name: str, factory: Callable[..., Any], *, replace: bool = False) -> None:
    """Serve the model id ``name`` (in ``Riffuser.from_pretrained`` and recipes) from ``factory``.

    ``factory(device=..., dtype=..., scheduler=..., **kwargs)`` returns an image model (an object
    with the members of :class:`~riffusion.models.ImageModel`); it gets what
    ``from_pretrained`` was given. ``Riffuser.from_recipe`` of a recipe made with it then loads
    it again by its id.

    Args:
        name: the model id, as recipes record it (e.g. ``"my-family/small"``).
        factory: a callable returning the image model.
        replace: allow replacing a factory registered under ``name``.

    Raises:
        ParameterError: ``name`` is not a non-empty string, ``factory`` is not callable, or the
            name is taken.
    """
    if not isinstance(name, str) or not name.strip():
        raise ParameterError(f"model name {name!r} must be a non-empty string")
    if not callable(factory):
        raise ParameterError(f"factory={factory!r} must be callable")
    with _FACTORIES_LOCK:
        if name in _FACTORIES and not replace:
            raise ParameterError(f"a model named {name!r} is already registered")
        _FACTORIES[name] = factory


def unregister_model(name: str) -> None:
    """Forget the factory registered as ``name`` (nothing happens if there is none).

    Args:
        name: the model id given to :func:`register_model`.
    """
    with _FACTORIES_LOCK:
        _FACTORIES.pop(name, None)


def model_id(model: Any) -> str:
    """A hub id as given; an existing folder as its absolute path (recipes render anywhere).

    Args:
        model: a hub id or a folder (``str`` or ``PathLike``).
    """
    text = os.fspath(model) if isinstance(model, os.PathLike) else str(model)
    try:
        return str(Path(text).resolve()) if Path(text).exists() else text
    except (OSError, ValueError):  # not a usable path (NUL, too long): an id
        return text


def open_pretrained(
    model: Any,
    *,
    device: Any = "auto",
    dtype: Any = None,
    scheduler: str | None = None,
    **kwargs: Any,
) -> tuple[Any, int | None]:
    """An image model and the default steps it calls for: a model registered with
    :func:`register_model`, else a :class:`~riffusion.models.sd1.RiffusionPipeline`.

    On the CPU without a ``scheduler``, the sampler is :data:`CPU_DEFAULT_SCHEDULER` and the
    steps :data:`CPU_DEFAULT_STEPS`, said in the progress bar's label and one INFO log line (a
    warning would break quiet command lines); elsewhere the steps are ``None`` (the verbs' 50).
    ``torch_dtype=`` (diffusers' name) is accepted for ``dtype``; other ``kwargs`` go to
    :meth:`RiffusionPipeline.from_pretrained`.

    Args:
        model: hub id or folder.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` or a ``torch.device``.
        dtype: the weights' dtype, or ``None`` for the device's default.
        scheduler: a scheduler name, or ``None``.
        **kwargs: ``torch_dtype``, ``variant``, ``use_safetensors``, ``local_files_only`` …
    """
    if "torch_dtype" in kwargs:
        torch_dtype = kwargs.pop("torch_dtype")
        if dtype is not None and torch_dtype is not None:
            raise ParameterError(
                f"dtype={dtype!r} and torch_dtype={torch_dtype!r} name the same thing; pass one"
            )
        dtype = torch_dtype if dtype is None else dtype
    with _FACTORIES_LOCK:
        factory = _FACTORIES.get(model) if isinstance(model, str) else None
    if factory is not None:
        return factory(device=device, dtype=dtype, scheduler=scheduler, **kwargs), None
    from riffusion.models.sd1 import RiffusionPipeline
    from riffusion.models.sd1.devices import resolve_device

    cpu_default = scheduler is None and resolve_device(device, dtype)[0].type == "cpu"
    pipeline = RiffusionPipeline.from_pretrained(
        model,
        device=device,
        torch_dtype=dtype,
        scheduler=CPU_DEFAULT_SCHEDULER if cpu_default else scheduler,
        **kwargs,
    )
    if not cpu_default:
        return pipeline, None
    pipeline.set_progress_bar_config(desc=f"{CPU_DEFAULT_SCHEDULER} (CPU default)")
    logging.getLogger("riffusion.riffuser").info(
        "riffusion: on the CPU, using the %s scheduler with %d steps by default (about "
        "2x faster than the checkpoint's 50-step PNDM); pass scheduler='default', "
        "num_inference_steps=50 for the original",
        CPU_DEFAULT_SCHEDULER,
        CPU_DEFAULT_STEPS,
    )
    return pipeline, CPU_DEFAULT_STEPS
