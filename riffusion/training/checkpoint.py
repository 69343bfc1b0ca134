"""Saving and resuming a training run: the LoRA weights in diffusers' format, and the training
state (adapters, optimizer moments, loss scaler, step and settings) a run resumes from.

Every file is written atomically: a crash leaves the previous weights or state, never half of
one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from riffusion.errors import ParameterError, RiffusionError
from riffusion.training.adapters import adapter_metadata, adapter_state

if TYPE_CHECKING:
    from riffusion.training.model import TrainingModels

__all__ = [
    "LORA_WEIGHT_NAME",
    "STATE_DIR",
    "find_state",
    "load_adapter_state",
    "load_optimizer_state",
    "load_scaler_state",
    "read_state",
    "resume_point",
    "save_checkpoint",
    "save_state",
    "save_weights",
]

#: Weights file, diffusers' LoRA format (what ``load_lora_weights`` reads from a folder).
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
#: Folder of the resumable training state inside the output folder.
STATE_DIR = "training_state"


# ------------------------------------------------------------------------------ saving
def save_checkpoint(
    output_dir: Path, step: int, config: dict[str, Any], models: TrainingModels
) -> None:
    """Save the training state and the weights after optimizer step ``step``.

    Args:
        output_dir: the run's output folder.
        step: optimizer steps done.
        config: the settings a resume must match (``TrainingSettings.state_config``).
        models: the run's models, optimizer and loss scaler.
    """
    unet = models.accelerator.unwrap_model(models.unet)
    text_encoder = (
        models.accelerator.unwrap_model(models.text_encoder) if models.train_text_encoder else None
    )
    save_state(
        output_dir,
        step=step,
        config=config,
        unet=unet,
        text_encoder=text_encoder,
        optimizer=models.optimizer,
        scaler=models.scaler,
    )
    save_weights(output_dir, unet, text_encoder)


def save_state(
    output_dir: Path,
    *,
    step: int,
    config: dict[str, Any],
    unet: Any,
    text_encoder: Any | None,
    optimizer: Any,
    scaler: Any | None,
) -> None:
    """Write the training state to ``STATE_DIR`` atomically (new folder, then swap).

    The folder holds ``unet_lora.safetensors`` (and ``text_encoder_lora.safetensors``),
    ``optimizer.pt``, ``scaler.pt`` with fp16 loss scaling, and ``state.json``
    (``{"step": int, "config": dict}``).
    """
    from safetensors.torch import save_file

    final = output_dir / STATE_DIR
    partial = output_dir / f".{STATE_DIR}.partial"
    old = output_dir / f".{STATE_DIR}.old"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    save_file(adapter_state(unet), partial / "unet_lora.safetensors")
    if text_encoder is not None:
        save_file(adapter_state(text_encoder), partial / "text_encoder_lora.safetensors")
    torch.save(optimizer.state_dict(), partial / "optimizer.pt")
    if scaler is not None:
        torch.save(scaler.state_dict(), partial / "scaler.pt")
    (partial / "state.json").write_text(
        json.dumps({"step": step, "config": config}, indent=1, sort_keys=True) + "\n"
    )
    # The old state stays findable (``find_state``) until the new one is in place.
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)


def save_weights(output_dir: Path, unet: Any, text_encoder: Any | None) -> Path:
    """Write the adapters in diffusers' LoRA format, atomically.

    Returns:
        ``output_dir / LORA_WEIGHT_NAME``: float32 tensors under diffusers' ``unet.`` and
        ``text_encoder.`` prefixes, with each adapter's ``LoraConfig`` in the metadata.
    """
    from diffusers.loaders import StableDiffusionLoraLoaderMixin

    target = output_dir / LORA_WEIGHT_NAME
    partial_name = f".{LORA_WEIGHT_NAME}.partial"
    kwargs: dict[str, Any] = {
        "unet_lora_layers": adapter_state(unet),
        "unet_lora_adapter_metadata": adapter_metadata(unet),
    }
    if text_encoder is not None:
        kwargs["text_encoder_lora_layers"] = adapter_state(text_encoder)
        kwargs["text_encoder_lora_adapter_metadata"] = adapter_metadata(text_encoder)
    StableDiffusionLoraLoaderMixin.save_lora_weights(
        output_dir, weight_name=partial_name, safe_serialization=True, **kwargs
    )
    os.replace(output_dir / partial_name, target)
    return target


# ------------------------------------------------------------------------------ resuming
def resume_point(
    output_dir: Path, config: dict[str, Any], steps: int, *, resume: bool
) -> tuple[Path | None, int]:
    """The saved state a run continues from, and its step.

    Args:
        output_dir: the run's output folder.
        config: this run's settings that a resume must match.
        steps: this run's total number of optimizer steps.
        resume: whether continuing a saved state is wanted.

    Returns:
        ``(state folder, step)``, or ``(None, 0)`` when the folder holds no state.

    Raises:
        ParameterError: a state exists but ``resume`` is false, its settings differ from
            ``config``, or it is past ``steps``.
        RiffusionError: ``state.json`` is damaged.
    """
    state_dir = find_state(output_dir)
    if state_dir is None:
        return None, 0
    if not resume:
        raise ParameterError(
            f"output_dir={str(output_dir)!r} already holds a training state (step "
            f"{read_state(state_dir)['step']}); pass resume=True to continue it, or use a "
            "new folder"
        )
    saved = read_state(state_dir)
    differences = {
        key: (saved["config"].get(key), value)
        for key, value in config.items()
        if saved["config"].get(key) != value
    }
    if differences:
        described = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in differences.items())
        raise ParameterError(f"cannot resume: the settings differ ({described})")
    start_step = int(saved["step"])
    if start_step > steps:
        raise ParameterError(
            f"steps={steps} is below the saved state's step {start_step}; a resumed run "
            "needs the total number of steps"
        )
    return state_dir, start_step


def find_state(output_dir: Path) -> Path | None:
    """The state folder in ``output_dir``: ``STATE_DIR``, or the previous one kept while a save
    was swapping them; ``None`` when there is neither."""
    for candidate in (output_dir / STATE_DIR, output_dir / f".{STATE_DIR}.old"):
        if (candidate / "state.json").is_file():
            return candidate
    return None


def read_state(state_dir: Path) -> dict[str, Any]:
    """``state.json`` of a saved training state: ``{"step": int, "config": dict}``."""
    path = state_dir / "state.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise _corrupt_state(state_dir, "state.json", error) from None
    if (
        not isinstance(saved, dict)
        or isinstance(saved.get("step"), bool)
        or not isinstance(saved.get("step"), int)
        or saved["step"] < 0
        or not isinstance(saved.get("config"), dict)
    ):
        raise _corrupt_state(state_dir, "state.json", "no step count and settings in it")
    return saved


def load_adapter_state(state_dir: Path, unet: Any, text_encoder: Any | None) -> None:
    """Load the saved adapter tensors into the UNet (and the text encoder), in place."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    _load_state_file(
        state_dir,
        "unet_lora.safetensors",
        lambda path: set_peft_model_state_dict(unet, load_file(path)),
    )
    if text_encoder is not None:
        _load_state_file(
            state_dir,
            "text_encoder_lora.safetensors",
            lambda path: set_peft_model_state_dict(text_encoder, load_file(path)),
        )


def load_optimizer_state(state_dir: Path, optimizer: torch.optim.Optimizer) -> None:
    """Load the saved optimizer moments and step counts into ``optimizer``."""
    _load_state_file(
        state_dir,
        "optimizer.pt",
        lambda path: optimizer.load_state_dict(
            torch.load(path, map_location="cpu", weights_only=True)
        ),
    )


def load_scaler_state(state_dir: Path, scaler: Any | None) -> None:
    """Load the saved fp16 loss scale, when the run has a scaler and the state one."""
    if scaler is not None and (state_dir / "scaler.pt").is_file():
        _load_state_file(
            state_dir,
            "scaler.pt",
            lambda path: scaler.load_state_dict(torch.load(path, weights_only=True)),
        )


def _load_state_file(state_dir: Path, name: str, load: Callable[[Path], Any]) -> Any:
    """``load(state_dir / name)``; a missing or damaged file is a clear error, not a traceback."""
    try:
        return load(state_dir / name)
    except Exception as error:  # safetensors, torch.load and peft each raise their own types
        raise _corrupt_state(state_dir, name, error) from None


def _corrupt_state(state_dir: Path, name: str, error: object) -> RiffusionError:
    reason = " ".join(str(error).split())[:300]
    return RiffusionError(
        f"the training state in {str(state_dir)!r} is damaged ({name}: {reason}); delete that "
        "folder to start over, or use a new output_dir"
    )
