"""LoRA adapters on a pipeline's UNet and text encoder, read with diffusers' own LoRA loader.

The weights file is diffusers' format (``pytorch_lora_weights.safetensors`` with ``unet.`` and
``text_encoder.`` keys, as written by :func:`riffusion.training.train_lora` and by diffusers'
training scripts); the Kohya/A1111 formats that diffusers converts are accepted too. Loading goes
through ``StableDiffusionLoraLoaderMixin.lora_state_dict`` / ``load_lora_into_unet`` /
``load_lora_into_text_encoder``, so the adapters are ``peft`` layers exactly as in a diffusers
``StableDiffusionPipeline``. Needs ``peft`` (the ``train`` extra: ``pip install -e ".[train]"``).

Several LoRAs stack, as with diffusers' ``load_lora_weights(..., adapter_name=...)`` and
``set_adapters(names, weights)``: each is a peft adapter of its own, and every adapted layer
computes ``W x + scale_1 Δ_1 x + scale_2 Δ_2 x + ...`` in loading order. A LoRA at scale 0 is
left out of the active adapters, so its layers add nothing; with every scale 0 the adapters are
switched off, and outputs equal the base model's bit for bit.

The few-step LoRAs load as they come from the hub: ``latent-consistency/lcm-lora-sdv1-5``'s
``pytorch_lora_weights.safetensors`` is in Kohya's layout (``lora_unet_<module>.lora_down.weight``,
``.lora_up.weight`` and a per-layer ``.alpha``, UNet only: attention, feed-forward, transformer
projections, resnet convolutions and time projections, down/up-sampler convolutions), which
diffusers converts, alphas kept (each layer is scaled by ``scale * alpha / rank``); pair it with
the ``"lcm"`` scheduler. ``h1t/TCD-SD15-LoRA`` pairs with ``"tcd"``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from riffusion._checks import finite_float
from riffusion._files import file_fingerprint
from riffusion.errors import ModelLoadError, ParameterError, RiffusionError, install_hint

__all__ = [
    "ADAPTER_NAME",
    "LORA_WEIGHT_NAME",
    "LoadedLora",
    "LoraMixin",
    "check_lora_name",
    "check_lora_scale",
    "default_lora_name",
    "load_lora",
    "lora_weights_file",
    "set_lora_scales",
    "unload_lora",
]

#: The peft adapter name of the first LoRA loaded; the next ones are ``riffusion_lora_2``,
#: ``riffusion_lora_3``, ... (the lowest free one). Users name LoRAs freely; these names stay
#: inside the models.
ADAPTER_NAME = "riffusion_lora"
#: The file name diffusers reads from a LoRA folder.
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
#: The longest LoRA name accepted (names are labels: in ``loras``, recipes and messages).
MAX_LORA_NAME_LENGTH = 100


class LoadedLora(NamedTuple):
    """One LoRA loaded on a pipeline, as :attr:`LoraMixin.loras` lists it.

    Attributes:
        name: its name (given to ``load_lora``, or derived from the file).
        path: the absolute path of its ``.safetensors`` file (also when a folder was given).
        fingerprint: the first 16 hex digits of the SHA-256 of the file's bytes when loaded.
        scale: its strength (0 = off, 1 = as trained).
    """

    name: str
    path: str
    fingerprint: str
    scale: float


def check_lora_scale(scale: Any) -> float:
    """Return ``scale`` as a float if it is a finite number.

    Raises:
        ParameterError: e.g. ``scale=nan must be a finite number (0 = off, 1 = as trained)``.
    """
    number = finite_float(scale)
    if number is None:
        raise ParameterError(f"scale={scale!r} must be a finite number (0 = off, 1 = as trained)")
    return number


def check_lora_name(name: Any) -> str:
    """Return ``name`` if it is a usable LoRA name: a non-empty string of at most 100
    printable characters, not only spaces.

    Raises:
        ParameterError: e.g. ``name='' must be a non-empty string ...``.
    """
    if (
        not isinstance(name, str)
        or not name.strip()
        or len(name) > MAX_LORA_NAME_LENGTH
        or not name.isprintable()
    ):
        raise ParameterError(
            f"name={name!r} must be a non-empty string of at most {MAX_LORA_NAME_LENGTH} "
            "printable characters, e.g. 'lofi'"
        )
    return name


def default_lora_name(path: str | os.PathLike[str], taken: Sequence[str] = ()) -> str:
    """The name a LoRA gets when ``load_lora`` is given none: the folder's name for a
    ``pytorch_lora_weights.safetensors`` (``loras/lofi/`` -> ``"lofi"``), else the file's
    stem (``lofi.safetensors`` -> ``"lofi"``); ``-2``, ``-3``, ... appended while it is in
    ``taken``.

    Args:
        path: the weights file.
        taken: the names already in use.
    """
    path = Path(path)
    base = path.parent.name if path.name == LORA_WEIGHT_NAME else path.stem
    base = "".join(char for char in base if char.isprintable()).strip()
    base = base[: MAX_LORA_NAME_LENGTH - 4] or "lora"
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}-{number}"
    return name


def _require_peft() -> None:
    try:
        import peft  # noqa: F401
    except ImportError as error:
        raise RiffusionError(
            f"LoRA weights need the peft package: {install_hint('train')}"
        ) from error


def _adapters(module: Any) -> dict[str, Any]:
    return getattr(module, "peft_config", None) or {}


def lora_weights_file(path: str | os.PathLike[str]) -> Path:
    """The weights file a LoRA ``path`` names: the file itself, or a folder's
    ``pytorch_lora_weights.safetensors``.

    Args:
        path: a ``.safetensors`` file or a folder holding ``pytorch_lora_weights.safetensors``.

    Raises:
        ModelLoadError: neither exists.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / LORA_WEIGHT_NAME).is_file():
            raise ModelLoadError(f"LoRA folder {str(path)!r} has no {LORA_WEIGHT_NAME}")
        return path / LORA_WEIGHT_NAME
    if not path.is_file():
        raise ModelLoadError(f"LoRA weights {str(path)!r} do not exist")
    return path


def load_lora(
    unet: Any,
    text_encoder: Any,
    path: str | os.PathLike[str],
    *,
    adapter_name: str = ADAPTER_NAME,
) -> None:
    """Load LoRA weights into ``unet`` and ``text_encoder`` as the peft adapter
    ``adapter_name``, next to the adapters loaded before.

    The new adapter is not activated: :func:`set_lora_scales` chooses the active adapters and
    their strengths. On failure nothing of it stays loaded; the other adapters are untouched.

    Args:
        unet: the ``UNet2DConditionModel``.
        text_encoder: the ``CLIPTextModel``.
        path: a ``.safetensors`` file, or a folder holding ``pytorch_lora_weights.safetensors``.
        adapter_name: the peft adapter name, not yet loaded on either model.

    Raises:
        ModelLoadError: missing or unreadable file, or weights that do not fit the model.
        ParameterError: ``adapter_name`` is loaded already.
    """
    _require_peft()
    from diffusers.loaders import StableDiffusionLoraLoaderMixin as Loader

    if adapter_name in _adapters(unet) or adapter_name in _adapters(text_encoder):
        raise ParameterError(f"adapter_name={adapter_name!r} is loaded already")
    path = Path(path)
    file = lora_weights_file(path)
    folder, weight_name = file.parent, file.name
    try:
        state_dict, alphas, metadata = Loader.lora_state_dict(
            str(folder), weight_name=weight_name, local_files_only=True, return_lora_metadata=True
        )
    except Exception as error:  # safetensors/pickle errors of every kind become one line
        raise ModelLoadError(f"cannot read LoRA weights {str(path)!r}: {error}") from error
    if not state_dict or not all("lora" in key for key in state_dict):
        raise ModelLoadError(
            f"{str(path)!r} is not a LoRA file: every key must contain 'lora' (diffusers format)"
        )
    unet_keys = any(key.startswith("unet.") for key in state_dict)
    text_keys = any(key.startswith("text_encoder.") for key in state_dict)
    try:
        with warnings.catch_warnings():
            # peft's note on a second adapter in a model: stacking is what is meant here.
            warnings.filterwarnings(
                "ignore", "Already found a `peft_config` attribute", UserWarning
            )
            if unet_keys or not text_keys:
                Loader.load_lora_into_unet(
                    state_dict, alphas, unet, adapter_name=adapter_name, metadata=metadata
                )
            if text_keys:
                Loader.load_lora_into_text_encoder(
                    state_dict, alphas, text_encoder, adapter_name=adapter_name, metadata=metadata
                )
    except Exception as error:
        unload_lora(unet, text_encoder, adapter_name)
        raise ModelLoadError(
            f"LoRA weights {str(path)!r} do not fit this model: {str(error).splitlines()[0]}"
        ) from error
    if adapter_name not in _adapters(unet) and adapter_name not in _adapters(text_encoder):
        unload_lora(unet, text_encoder, adapter_name)
        raise ModelLoadError(f"LoRA weights {str(path)!r} matched no layer of this model")


def set_lora_scales(unet: Any, text_encoder: Any, scales: Sequence[tuple[str, float]]) -> None:
    """Activate the adapters ``(adapter_name, scale)`` of ``scales``, in that order, at their
    scales; those at scale 0 are left out, and with none left the adapters are switched off
    (exactly the base).

    Args:
        unet: the ``UNet2DConditionModel``.
        text_encoder: the ``CLIPTextModel``.
        scales: every loaded adapter's peft name and scale, in loading order.

    Raises:
        ParameterError: a non-finite scale.
    """
    active = [(name, check_lora_scale(scale)) for name, scale in scales]
    active = [(name, scale) for name, scale in active if scale != 0.0]
    from diffusers.loaders.lora_base import (
        disable_lora_for_text_encoder,
        enable_lora_for_text_encoder,
        set_adapters_for_text_encoder,
    )

    for module, enable, disable, activate in (
        (unet, unet.enable_lora, unet.disable_lora, unet.set_adapters),
        (
            text_encoder,
            lambda: enable_lora_for_text_encoder(text_encoder),
            lambda: disable_lora_for_text_encoder(text_encoder),
            lambda names, weights: set_adapters_for_text_encoder(names, text_encoder, weights),
        ),
    ):
        loaded = _adapters(module)
        if not loaded:
            continue
        here = [(name, scale) for name, scale in active if name in loaded]
        if not here:
            disable()
        else:
            enable()
            activate([name for name, _ in here], [scale for _, scale in here])


def _remove_all(module: Any) -> None:
    """Remove every peft layer of ``module``: the base model again, bit for bit."""
    from diffusers.utils.peft_utils import recurse_remove_peft_layers

    recurse_remove_peft_layers(module)
    if hasattr(module, "peft_config"):
        del module.peft_config
    if hasattr(module, "_hf_peft_config_loaded"):
        module._hf_peft_config_loaded = None


def unload_lora(unet: Any, text_encoder: Any, adapter_name: str | None = None) -> None:
    """Remove the adapter ``adapter_name``, or every LoRA layer (``None``).

    A model left without adapters loses its peft layers too: it is its base self again, bit
    for bit. Call :func:`set_lora_scales` afterwards to choose the active adapters among the
    remaining ones.

    Args:
        unet: the ``UNet2DConditionModel``.
        text_encoder: the ``CLIPTextModel``.
        adapter_name: a peft adapter name; ``None`` removes all.
    """
    from diffusers.loaders.lora_base import delete_adapter_layers

    for module in (unet, text_encoder):
        loaded = _adapters(module)
        if adapter_name is None or set(loaded) <= {adapter_name}:
            _remove_all(module)  # also the layers of a half-loaded adapter
        elif adapter_name in loaded:
            if module is unet:
                unet.delete_adapters(adapter_name)
            else:
                delete_adapter_layers(module, adapter_name)
            _adapters(module).pop(adapter_name, None)


_Pipeline = TypeVar("_Pipeline", bound="LoraMixin")


class LoraMixin:
    """The LoRA methods of :class:`~riffusion.models.sd1.pipeline.RiffusionPipeline`, as
    diffusers' ``StableDiffusionLoraLoaderMixin``: LoRAs stacked on ``unet`` and
    ``text_encoder``, each a named peft adapter, listed by :attr:`loras` in loading order."""

    unet: Any
    text_encoder: Any
    _lora_stack: list[tuple[LoadedLora, str]]

    def _lora_slots(self) -> list[tuple[LoadedLora, str]]:
        """The loaded LoRAs and their peft adapter names, in loading order."""
        slots: list[tuple[LoadedLora, str]] | None = getattr(self, "_lora_stack", None)
        if slots is None:
            slots = []
            self._lora_stack = slots
        return slots

    def _find_lora(self, name: Any) -> int:
        slots = self._lora_slots()
        for index, (lora, _) in enumerate(slots):
            if lora.name == name:
                return index
        if not slots:
            raise ParameterError(f"name={name!r}: no LoRA is loaded")
        raise ParameterError(
            f"name={name!r} is not a loaded LoRA; loaded: {[lora.name for lora, _ in slots]}"
        )

    def _apply_lora_scales(self) -> None:
        set_lora_scales(
            self.unet,
            self.text_encoder,
            [(adapter, lora.scale) for lora, adapter in self._lora_slots()],
        )

    def load_lora(
        self: _Pipeline,
        path: str | os.PathLike[str],
        scale: float = 1.0,
        name: str | None = None,
    ) -> _Pipeline:
        """Load LoRA weights (diffusers format) into the UNet and text encoder, on top of the
        LoRAs loaded before (they stack: ``W x + scale_1 Δ_1 x + scale_2 Δ_2 x``).

        Uses diffusers' own LoRA loader (``StableDiffusionLoraLoaderMixin``, one peft adapter
        per LoRA), so files written by :func:`riffusion.training.train_lora` or by diffusers'
        training scripts both work. Needs ``peft`` (the ``train`` extra:
        ``pip install -e ".[train]"``).

        Args:
            path: a ``.safetensors`` file, or a folder holding
                ``pytorch_lora_weights.safetensors``.
            scale: strength, a finite number (0 = off; every LoRA at 0: the base model bit for
                bit; 1 = as trained).
            name: what to call it in :attr:`loras`, :meth:`set_lora_scale` and
                :meth:`unload_lora`; ``None``: derived from the file (see
                :func:`default_lora_name`), made unique.

        Returns:
            ``self``.

        Raises:
            ModelLoadError: missing, unreadable or non-matching weights (the LoRAs loaded
                before stay as they were).
            ParameterError: a non-finite ``scale``, a bad ``name``, or a ``name`` that is
                loaded already.
        """
        scale = check_lora_scale(scale)
        slots = self._lora_slots()
        taken = [lora.name for lora, _ in slots]
        if name is not None:
            check_lora_name(name)
            if name in taken:
                raise ParameterError(
                    f"name={name!r} is loaded already (loaded: {taken}); unload_lora({name!r}) "
                    "first, or give another name"
                )
        file = os.path.abspath(lora_weights_file(path))
        try:
            fingerprint = file_fingerprint(file)
        except OSError as error:
            raise ModelLoadError(f"cannot read LoRA weights {file!r}: {error}") from error
        adapters = {adapter for _, adapter in slots}
        adapter, number = ADAPTER_NAME, 1
        while adapter in adapters:
            number += 1
            adapter = f"{ADAPTER_NAME}_{number}"
        try:
            load_lora(self.unet, self.text_encoder, path, adapter_name=adapter)
        except BaseException:
            self._apply_lora_scales()  # the failed load removed its own layers only
            raise
        if name is None:
            name = default_lora_name(file, taken)
        slots.append((LoadedLora(name, file, fingerprint, scale), adapter))
        self._apply_lora_scales()
        return self

    def set_lora_scale(self: _Pipeline, scale: float, name: str | None = None) -> _Pipeline:
        """Change the strength of a loaded LoRA, or of all of them; returns ``self``.

        Args:
            scale: LoRA strength, a finite number (0 = off, 1 = as trained).
            name: the LoRA's name (see :attr:`loras`); ``None``: every loaded LoRA.

        Raises:
            RiffusionError: no LoRA is loaded.
            ParameterError: a non-finite ``scale``, or an unknown ``name``.
        """
        scale = check_lora_scale(scale)
        slots = self._lora_slots()
        if not slots and name is None:
            raise RiffusionError("no LoRA is loaded; call load_lora(path, scale) first")
        chosen = range(len(slots)) if name is None else [self._find_lora(name)]
        for index in chosen:
            lora, adapter = slots[index]
            slots[index] = (lora._replace(scale=scale), adapter)
        self._apply_lora_scales()
        return self

    def unload_lora(self: _Pipeline, name: str | None = None) -> _Pipeline:
        """Remove a loaded LoRA, or all of them (``None``: the base model again, bit for bit).
        The others keep their scales. Returns ``self``.

        Args:
            name: the LoRA's name (see :attr:`loras`); ``None``: every LoRA.

        Raises:
            ParameterError: an unknown ``name``.
        """
        slots = self._lora_slots()
        if name is None:
            if slots:
                unload_lora(self.unet, self.text_encoder)
                slots.clear()
            return self
        _, adapter = slots.pop(self._find_lora(name))
        if slots:
            unload_lora(self.unet, self.text_encoder, adapter)
        else:
            unload_lora(self.unet, self.text_encoder)
        self._apply_lora_scales()
        return self

    @property
    def loras(self) -> tuple[LoadedLora, ...]:
        """The loaded LoRAs in loading order: ``(name, path, fingerprint, scale)`` each
        (:class:`LoadedLora`; ``path`` is the absolute path of the ``.safetensors`` file, also
        when a folder was given)."""
        return tuple(lora for lora, _ in self._lora_slots())
