"""Saving and resuming a training run: checkpoints, each a folder ``checkpoint-<step>`` in the
output folder (diffusers' naming) with the LoRA weights in diffusers' format and the training
state (adapters, optimizer moments, learning-rate schedule, loss scaler, step and settings) a run
resumes from.

Every checkpoint is written atomically (a hidden folder, then a rename), and so is the weights
file in the output folder: a crash leaves the previous checkpoint or weights, never half of one.
"""

from __future__ import annotations

import json
import os
import re
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
    "CHECKPOINT_PREFIX",
    "LORA_WEIGHT_NAME",
    "checkpoint_dir",
    "find_checkpoints",
    "load_adapter_state",
    "load_optimizer_state",
    "load_scaler_state",
    "load_scheduler_state",
    "prune_checkpoints",
    "read_state",
    "resume_point",
    "save_checkpoint",
    "save_state",
    "save_weights",
]

#: Weights file, diffusers' LoRA format (what ``load_lora_weights`` reads from a folder).
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
#: Name of a checkpoint folder in the output folder, before its step: ``checkpoint-500``.
CHECKPOINT_PREFIX = "checkpoint-"
_CHECKPOINT_NAME = re.compile(re.escape(CHECKPOINT_PREFIX) + r"([0-9]+)")


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    """The folder of the checkpoint after optimizer step ``step``: ``checkpoint-<step>``."""
    return output_dir / f"{CHECKPOINT_PREFIX}{step}"


# ------------------------------------------------------------------------------ saving
def save_checkpoint(
    output_dir: Path,
    step: int,
    config: dict[str, Any],
    models: TrainingModels,
    *,
    total_limit: int | None = None,
) -> Path:
    """Save the checkpoint of optimizer step ``step`` and the weights in ``output_dir``.

    Args:
        output_dir: the run's output folder.
        step: optimizer steps done.
        config: the settings a resume must match (``TrainingSettings.state_config``).
        models: the run's models, optimizer, learning-rate schedule and loss scaler.
        total_limit: checkpoints kept; the oldest beyond it are deleted after the save
            (``None``: all kept).

    Returns:
        The checkpoint folder, ``output_dir / f"checkpoint-{step}"``.
    """
    unet = models.accelerator.unwrap_model(models.unet)
    text_encoder = (
        models.accelerator.unwrap_model(models.text_encoder) if models.train_text_encoder else None
    )
    folder = save_state(
        output_dir,
        step=step,
        config=config,
        unet=unet,
        text_encoder=text_encoder,
        optimizer=models.optimizer,
        lr_scheduler=models.lr_scheduler,
        scaler=models.scaler,
    )
    save_weights(output_dir, unet, text_encoder)
    if total_limit is not None:
        prune_checkpoints(output_dir, total_limit)
    return folder


def save_state(
    output_dir: Path,
    *,
    step: int,
    config: dict[str, Any],
    unet: Any,
    text_encoder: Any | None,
    optimizer: Any,
    lr_scheduler: Any,
    scaler: Any | None,
) -> Path:
    """Write the checkpoint folder of step ``step`` atomically (new folder, then rename).

    The folder holds the LoRA weights (``pytorch_lora_weights.safetensors``, loadable with
    ``load_lora``), the adapters as peft saves them (``unet_lora.safetensors``, and
    ``text_encoder_lora.safetensors``), ``optimizer.pt``, ``lr_scheduler.pt``, ``scaler.pt``
    with fp16 loss scaling, and ``state.json`` (``{"step": int, "config": dict}``).

    Returns:
        The checkpoint folder.
    """
    from safetensors.torch import save_file

    final = checkpoint_dir(output_dir, step)
    partial = output_dir / f".{final.name}.partial"
    old = output_dir / f".{final.name}.old"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    save_file(adapter_state(unet), partial / "unet_lora.safetensors")
    if text_encoder is not None:
        save_file(adapter_state(text_encoder), partial / "text_encoder_lora.safetensors")
    save_weights(partial, unet, text_encoder)
    torch.save(optimizer.state_dict(), partial / "optimizer.pt")
    torch.save(lr_scheduler.state_dict(), partial / "lr_scheduler.pt")
    if scaler is not None:
        torch.save(scaler.state_dict(), partial / "scaler.pt")
    (partial / "state.json").write_text(
        json.dumps({"step": step, "config": config}, indent=1, sort_keys=True) + "\n"
    )
    # Saving a step again (a resumed run that ends where it started) replaces the folder.
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def prune_checkpoints(output_dir: Path, total_limit: int) -> list[Path]:
    """Delete the oldest checkpoints (lowest steps) until ``total_limit`` are left.

    Returns:
        The folders deleted.
    """
    checkpoints = find_checkpoints(output_dir)
    doomed = checkpoints[: max(0, len(checkpoints) - total_limit)]
    for folder in doomed:
        shutil.rmtree(folder)
    return doomed


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
    output_dir: Path, config: dict[str, Any], steps: int, *, resume: bool | str | os.PathLike[str]
) -> tuple[Path | None, int]:
    """The checkpoint a run continues from, and its step.

    Args:
        output_dir: the run's output folder.
        config: this run's settings that a resume must match.
        steps: this run's total number of optimizer steps.
        resume: ``True``: the latest checkpoint in ``output_dir`` (none: a new run);
            ``False``: a new run; a path: that checkpoint folder.

    Returns:
        ``(checkpoint folder, step)``, or ``(None, 0)`` for a new run.

    Raises:
        ParameterError: checkpoints exist but ``resume`` is false, the named checkpoint does not
            exist, its settings differ from ``config``, or it is past ``steps``.
        RiffusionError: ``state.json`` is damaged.
    """
    checkpoints = find_checkpoints(output_dir)
    if resume is False:
        if checkpoints:
            raise ParameterError(
                f"output_dir={str(output_dir)!r} already holds checkpoints (the latest: "
                f"{checkpoints[-1].name}); pass resume=True (--resume) to continue it, or use a "
                "new folder"
            )
        return None, 0
    if resume is True:
        if not checkpoints:
            return None, 0
        state_dir = checkpoints[-1]
    else:
        state_dir = Path(resume)
        if not (state_dir / "state.json").is_file():
            raise ParameterError(
                f"resume={str(resume)!r} is not a checkpoint folder (no state.json in it); "
                f"expected a {CHECKPOINT_PREFIX}<step> folder of a training run"
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


def find_checkpoints(output_dir: Path) -> list[Path]:
    """The complete checkpoint folders in ``output_dir`` (those with a ``state.json``), oldest
    (lowest step) first."""
    if not output_dir.is_dir():
        return []
    found = []
    for path in output_dir.iterdir():
        match = _CHECKPOINT_NAME.fullmatch(path.name)
        if match and (path / "state.json").is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


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


def load_scheduler_state(state_dir: Path, lr_scheduler: Any) -> None:
    """Load the saved learning-rate schedule position (``last_epoch``, base rates)."""
    _load_state_file(
        state_dir,
        "lr_scheduler.pt",
        lambda path: lr_scheduler.load_state_dict(
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
        "folder to start over, or resume from an older checkpoint"
    )
