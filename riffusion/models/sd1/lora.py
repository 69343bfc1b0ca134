"""LoRA adapters on a pipeline's UNet and text encoder, read with diffusers' own LoRA loader.

The weights file is diffusers' format (``pytorch_lora_weights.safetensors`` with ``unet.`` and
``text_encoder.`` keys, as written by :func:`riffusion.training.train_lora` and by diffusers'
training scripts); the Kohya/A1111 formats that diffusers converts are accepted too. Loading goes
through ``StableDiffusionLoraLoaderMixin.lora_state_dict`` / ``load_lora_into_unet`` /
``load_lora_into_text_encoder``, so the adapters are ``peft`` layers exactly as in a diffusers
``StableDiffusionPipeline``. Needs ``peft`` (the ``train`` extra: ``pip install -e ".[train]"``).

The few-step LoRAs load as they come from the hub: ``latent-consistency/lcm-lora-sdv1-5``'s
``pytorch_lora_weights.safetensors`` is in Kohya's layout (``lora_unet_<module>.lora_down.weight``,
``.lora_up.weight`` and a per-layer ``.alpha``, UNet only: attention, feed-forward, transformer
projections, resnet convolutions and time projections, down/up-sampler convolutions), which
diffusers converts, alphas kept (each layer is scaled by ``scale * alpha / rank``); pair it with
the ``"lcm"`` scheduler. ``h1t/TCD-SD15-LoRA`` pairs with ``"tcd"``.

At ``scale=0`` the adapters are switched off, so outputs equal the base model's bit for bit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

from riffusion._checks import finite_float
from riffusion.errors import ModelLoadError, ParameterError, RiffusionError, install_hint

__all__ = [
    "ADAPTER_NAME",
    "LORA_WEIGHT_NAME",
    "LoraMixin",
    "check_lora_scale",
    "load_lora",
    "lora_weights_file",
    "set_lora_scale",
    "unload_lora",
]

#: The adapter name riffusion gives the loaded LoRA (one at a time).
ADAPTER_NAME = "riffusion_lora"
#: The file name diffusers reads from a LoRA folder.
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


def check_lora_scale(scale: Any) -> float:
    """Return ``scale`` as a float if it is a finite number.

    Raises:
        ParameterError: e.g. ``scale=nan must be a finite number (0 = off, 1 = as trained)``.
    """
    number = finite_float(scale)
    if number is None:
        raise ParameterError(f"scale={scale!r} must be a finite number (0 = off, 1 = as trained)")
    return number


def _require_peft() -> None:
    try:
        import peft  # noqa: F401
    except ImportError as error:
        raise RiffusionError(
            f"LoRA weights need the peft package: {install_hint('train')}"
        ) from error


def _has_adapter(module: Any) -> bool:
    return ADAPTER_NAME in (getattr(module, "peft_config", None) or {})


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


def load_lora(unet: Any, text_encoder: Any, path: str | os.PathLike[str], scale: float) -> None:
    """Load LoRA weights into ``unet`` and ``text_encoder``, replacing a LoRA loaded before.

    Args:
        unet: the ``UNet2DConditionModel``.
        text_encoder: the ``CLIPTextModel``.
        path: a ``.safetensors`` file, or a folder holding ``pytorch_lora_weights.safetensors``.
        scale: strength of the adapters (0 = off, 1 = as trained).

    Raises:
        ModelLoadError: missing or unreadable file, or weights that do not fit the model.
        ParameterError: a non-finite ``scale``.
    """
    scale = check_lora_scale(scale)
    _require_peft()
    from diffusers.loaders import StableDiffusionLoraLoaderMixin as Loader

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
    unload_lora(unet, text_encoder)
    try:
        if any(key.startswith("unet.") for key in state_dict) or not any(
            key.startswith("text_encoder.") for key in state_dict
        ):
            Loader.load_lora_into_unet(
                state_dict, alphas, unet, adapter_name=ADAPTER_NAME, metadata=metadata
            )
        if any(key.startswith("text_encoder.") for key in state_dict):
            Loader.load_lora_into_text_encoder(
                state_dict, alphas, text_encoder, adapter_name=ADAPTER_NAME, metadata=metadata
            )
    except Exception as error:
        unload_lora(unet, text_encoder)
        raise ModelLoadError(
            f"LoRA weights {str(path)!r} do not fit this model: {str(error).splitlines()[0]}"
        ) from error
    if not (_has_adapter(unet) or _has_adapter(text_encoder)):
        raise ModelLoadError(f"LoRA weights {str(path)!r} matched no layer of this model")
    set_lora_scale(unet, text_encoder, scale)


def set_lora_scale(unet: Any, text_encoder: Any, scale: float) -> None:
    """Set the strength of the loaded LoRA; 0 switches the adapters off (exactly the base)."""
    scale = check_lora_scale(scale)
    from diffusers.loaders.lora_base import (
        disable_lora_for_text_encoder,
        enable_lora_for_text_encoder,
        set_adapters_for_text_encoder,
    )

    if _has_adapter(unet):
        if scale == 0.0:
            unet.disable_lora()
        else:
            unet.enable_lora()
            unet.set_adapters([ADAPTER_NAME], weights=[scale])
    if _has_adapter(text_encoder):
        if scale == 0.0:
            disable_lora_for_text_encoder(text_encoder)
        else:
            enable_lora_for_text_encoder(text_encoder)
            set_adapters_for_text_encoder([ADAPTER_NAME], text_encoder, [scale])


def unload_lora(unet: Any, text_encoder: Any) -> None:
    """Remove every LoRA layer; the models are their base selves again (bit for bit)."""
    if getattr(unet, "peft_config", None):
        unet.unload_lora()
    if getattr(text_encoder, "peft_config", None):
        from diffusers.utils.peft_utils import recurse_remove_peft_layers

        recurse_remove_peft_layers(text_encoder)
        del text_encoder.peft_config
        text_encoder._hf_peft_config_loaded = None


_Pipeline = TypeVar("_Pipeline", bound="LoraMixin")


class LoraMixin:
    """The LoRA methods of :class:`~riffusion.models.sd1.pipeline.RiffusionPipeline`, as
    diffusers' ``StableDiffusionLoraLoaderMixin``: one LoRA at a time on ``unet`` and
    ``text_encoder``, remembered in ``_lora`` as ``(weights file, scale)``."""

    unet: Any
    text_encoder: Any
    _lora: tuple[str, float] | None

    def load_lora(self: _Pipeline, path: str | os.PathLike[str], scale: float = 1.0) -> _Pipeline:
        """Load LoRA weights (diffusers format) into the UNet and text encoder.

        One LoRA at a time: a LoRA loaded before is removed first. Uses diffusers' own LoRA
        loader (``StableDiffusionLoraLoaderMixin``), so files written by
        :func:`riffusion.training.train_lora` or by diffusers' training scripts both work.
        Needs ``peft`` (the ``train`` extra: ``pip install -e ".[train]"``).

        Args:
            path: a ``.safetensors`` file, or a folder holding
                ``pytorch_lora_weights.safetensors``.
            scale: strength (0 = off: the base model bit for bit; 1 = as trained).

        Returns:
            ``self``.

        Raises:
            ModelLoadError: missing, unreadable or non-matching weights.
            ParameterError: a non-finite ``scale``.
        """
        load_lora(self.unet, self.text_encoder, path, scale)
        self._lora = (os.path.abspath(lora_weights_file(path)), float(scale))
        return self

    def set_lora_scale(self: _Pipeline, scale: float) -> _Pipeline:
        """Change the strength of the loaded LoRA (0 = off, 1 = as trained); returns ``self``.

        Args:
            scale: LoRA strength, a finite number (0 = off, 1 = as trained).

        Raises:
            RiffusionError: no LoRA is loaded.
        """
        if self._lora is None:
            raise RiffusionError("no LoRA is loaded; call load_lora(path, scale) first")
        set_lora_scale(self.unet, self.text_encoder, scale)
        self._lora = (self._lora[0], float(scale))
        return self

    def unload_lora(self: _Pipeline) -> _Pipeline:
        """Remove the loaded LoRA (if any): the base model again. Returns ``self``."""
        if self._lora is not None:
            unload_lora(self.unet, self.text_encoder)
            self._lora = None
        return self

    @property
    def lora(self) -> tuple[str, float] | None:
        """``(weights file, scale)`` of the loaded LoRA (the absolute path of the
        ``.safetensors`` file, also when a folder was given), or ``None``."""
        return self._lora
