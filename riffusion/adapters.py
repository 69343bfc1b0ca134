"""LoRA and textual-inversion weights as recipes record them, on any image model that has
them (``load_lora``, ``load_textual_inversion``, ``lora``, ``textual_inversions``).

A recipe may come from a stranger: its adapter paths are read only inside folders the caller
allowed (:func:`riffusion._files.check_allowed_file`), never outside, not even to say whether a
file exists, and each file must still have the recorded fingerprint.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from riffusion._files import check_allowed_file, file_fingerprint
from riffusion.errors import ModelLoadError, ParameterError
from riffusion.limits import MAX_ADAPTER_BYTES
from riffusion.recipe import Adapter, Recipe

__all__ = ["adapters_of", "loaded_adapters", "use_adapters"]


def _fingerprint(kind: str, path: str) -> str:
    """The fingerprint of an adapter's weights file, or a :class:`ModelLoadError` naming it."""
    try:
        return file_fingerprint(path)
    except OSError as error:
        raise ModelLoadError(f"cannot read the {kind} weights {path!r}: {error}") from error


def _check_file(adapter: Adapter, adapter_dirs: Sequence[Any]) -> None:
    """The adapter's file, if it is an allowed regular file with the recorded bytes."""
    check_allowed_file(
        adapter.path,
        allowed_dirs=adapter_dirs,
        max_bytes=MAX_ADAPTER_BYTES,
        what=f"{adapter.kind} weights",
        error=ModelLoadError,
    )
    found = _fingerprint(adapter.kind, adapter.path)
    if found != adapter.fingerprint:
        raise ModelLoadError(
            f"{adapter.kind} weights {adapter.path!r} have fingerprint {found}, the recipe's are "
            f"{adapter.fingerprint}: the file changed since the clip was made"
        )


def _loaded_loras(model: Any) -> list[Adapter]:
    """The LoRAs on ``model``, in loading order (its ``loras``: name, path, fingerprint,
    scale)."""
    return [
        Adapter(kind="lora", path=path, fingerprint=fingerprint, scale=scale, name=name)
        for name, path, fingerprint, scale in getattr(model, "loras", ())
    ]


def loaded_adapters(model: Any) -> tuple[Adapter, ...]:
    """The textual inversions, then the LoRAs in loading order, loaded on ``model`` now, as
    recipes record them.

    Args:
        model: an image model (its ``loras`` and its ``textual_inversions``).
    """
    adapters = [
        Adapter(
            kind="textual_inversion",
            path=path,
            fingerprint=_fingerprint("textual_inversion", path),
            token=token,
        )
        for path, token in getattr(model, "textual_inversions", ())
    ]
    return (*adapters, *_loaded_loras(model))


def _describe(adapters: tuple[Adapter, ...]) -> str:
    return ", ".join(f"{a.kind} {a.path} ({a.fingerprint})" for a in adapters) or "none"


def _set_scales(model: Any, loras: Sequence[Adapter], scales: Sequence[float | None]) -> None:
    """Give the loaded ``loras`` (as :func:`loaded_adapters` lists them) the ``scales``."""
    for lora, scale in zip(loras, scales, strict=True):
        if scale is not None and lora.scale != scale:
            model.set_lora_scale(scale, name=lora.name)


@contextlib.contextmanager
def adapters_of(model: Any, recipe: Recipe) -> Iterator[None]:
    """Check that the recipe's adapters are the loaded ones; run the block at its LoRA scales.

    The weights must be the same (by fingerprint; paths and LoRA names may differ between
    machines) and loaded in the same order; only the LoRA scales may differ, and they are set
    for the block and put back after.

    Args:
        model: the image model the recipe is rendered with.
        recipe: the recipe whose adapters must be the loaded ones.
    """

    def identity(adapters: tuple[Adapter, ...]) -> list[tuple[str, str, str | None]]:
        return [(a.kind, a.fingerprint, a.token) for a in adapters]

    loaded = loaded_adapters(model)
    if identity(loaded) != identity(recipe.adapters):
        raise ParameterError(
            f"the recipe was made with adapters [{_describe(recipe.adapters)}] but this "
            f"Riffuser has [{_describe(loaded)}]: load the same weights "
            "(load_lora / load_textual_inversion) in the same order, or use "
            "Riffuser.from_recipe(recipe)"
        )
    own = [a for a in loaded if a.kind == "lora"]
    wanted = [a.scale for a in recipe.adapters if a.kind == "lora"]
    if [a.scale for a in own] == wanted:
        yield
        return
    _set_scales(model, own, wanted)
    try:
        yield
    finally:
        now = [a for a in loaded_adapters(model) if a.kind == "lora"]
        _set_scales(model, now, [a.scale for a in own])


def _checked_arguments(adapters: Any, adapter_dirs: Any) -> tuple[tuple[Adapter, ...], list[Any]]:
    if isinstance(adapter_dirs, str | os.PathLike) or not isinstance(adapter_dirs, Iterable):
        raise ParameterError(
            f"adapter_dirs={adapter_dirs!r} must be a list of folders, e.g. ['loras/']"
        )
    if isinstance(adapters, Adapter | str) or not isinstance(adapters, Iterable):
        raise ParameterError(
            f"adapters={adapters!r} must be a sequence of riffusion.recipe.Adapter objects"
        )
    adapters = tuple(adapters)
    if not all(isinstance(adapter, Adapter) for adapter in adapters):
        raise ParameterError(f"adapters={adapters!r} must be riffusion.recipe.Adapter objects")
    return adapters, list(adapter_dirs)


def use_adapters(model: Any, adapters: Any, adapter_dirs: Any = ()) -> None:
    """Make the LoRAs and textual inversions loaded on ``model`` the given ones.

    What is missing is loaded from the recorded files (allowed folders only, fingerprints
    checked). LoRAs stack in order: loaded ones that start the wanted list are kept and
    rescaled, the rest are loaded after them under their recorded names; otherwise every LoRA
    is unloaded and the wanted ones loaded in order. Textual inversions can only be added (a
    token cannot be taken back out of the tokenizer), so the loaded ones must come first in
    ``adapters``, in the same order.

    Args:
        model: an image model with adapter support (:class:`~riffusion.RiffusionPipeline`).
        adapters: :class:`~riffusion.recipe.Adapter` objects, e.g. ``recipe.adapters``.
        adapter_dirs: folders whose files may be loaded (none by default: nothing is read).

    Raises:
        ModelLoadError: a file outside ``adapter_dirs``, missing, unreadable, not a regular
            file, too large, or not the recorded one.
        ParameterError: a loaded textual inversion is not among ``adapters``, or several
            LoRAs for a model that loads one at a time.
    """
    adapters, adapter_dirs = _checked_arguments(adapters, adapter_dirs)
    present = loaded_adapters(model)
    wanted = [a for a in adapters if a.kind == "textual_inversion"]
    loaded = [a for a in present if a.kind == "textual_inversion"]
    if [(a.fingerprint, a.token) for a in loaded] != [
        (a.fingerprint, a.token) for a in wanted[: len(loaded)]
    ]:
        raise ParameterError(
            "textual inversions cannot be unloaded: this Riffuser has "
            f"{[a.token for a in loaded]}, the adapters start with "
            f"{[a.token for a in wanted[: len(loaded)]]}; use a fresh Riffuser"
        )
    for adapter in wanted[len(loaded) :]:
        _check_file(adapter, adapter_dirs)
        model.load_textual_inversion(adapter.path, token=adapter.token)
    wanted_loras = [a for a in adapters if a.kind == "lora"]
    loaded_loras = [a for a in present if a.kind == "lora"]
    keep = len(loaded_loras)
    if [a.fingerprint for a in loaded_loras] != [a.fingerprint for a in wanted_loras[:keep]]:
        keep = 0  # not a prefix of the wanted ones: load them all again, in order
    for lora in wanted_loras[keep:]:
        _check_file(lora, adapter_dirs)
    if keep == 0 and loaded_loras:
        model.unload_lora()
    _set_scales(model, loaded_loras[:keep], [a.scale for a in wanted_loras[:keep]])
    taken = {a.name for a in loaded_loras[:keep]}
    for lora in wanted_loras[keep:]:
        # Names are labels: one that is taken already is left to load_lora to derive.
        model.load_lora(lora.path, lora.scale, name=lora.name if lora.name not in taken else None)
        taken.add(model.loras[-1].name)
