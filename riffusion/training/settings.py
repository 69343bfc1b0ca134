"""The settings of a LoRA training run: :func:`~riffusion.training.train_lora`'s keyword
arguments, checked once and then passed around as one frozen value."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch

from riffusion._checks import check_integer, finite_float
from riffusion.defaults import LR_SCHEDULERS, OPTIMIZERS, REPORT_TO
from riffusion.errors import ParameterError

__all__ = [
    "LR_SCHEDULERS",
    "OPTIMIZERS",
    "PRECISIONS",
    "REPORT_TO",
    "TrainingSettings",
    "check_settings",
]

#: The values of ``mixed_precision`` (accelerate's names).
PRECISIONS = ("no", "fp16", "bf16")
_DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainingSettings:
    """The checked keyword arguments of :func:`~riffusion.training.train_lora`.

    Each attribute is the argument of the same name (documented there), normalised: numbers are
    ``int`` or ``float``, ``lora_alpha`` is never ``None`` (it defaults to ``rank``) and the
    module names and prompts are tuples. ``model`` is kept as given (a hub id or a folder).
    """

    model: str | os.PathLike[str]
    rank: int
    target_modules: tuple[str, ...]
    lora_alpha: float
    learning_rate: float
    lr_scheduler: str
    lr_warmup_steps: int
    optimizer: str
    steps: int
    batch_size: int
    gradient_accumulation: int
    max_grad_norm: float
    snr_gamma: float | None
    noise_offset: float
    mixed_precision: str
    gradient_checkpointing: bool
    seed: int
    train_text_encoder: bool
    validation_prompts: tuple[str, ...]
    validate_every: int | None
    validation_steps: int
    validation_split: float
    report_to: str
    checkpoint_every: int | None
    checkpoints_total_limit: int | None
    resume: bool | str | os.PathLike[str]
    device: str
    local_files_only: bool
    progress: bool

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> TrainingSettings:
        """Check the values in ``arguments`` named like the fields (other names are ignored).

        Raises:
            ParameterError: a bad value (see :func:`check_settings`).
        """
        return check_settings({field.name: arguments[field.name] for field in fields(cls)})

    @property
    def use_cpu(self) -> bool:
        """Whether the run trains on the CPU (``device="auto"`` picks CUDA when available)."""
        return self.device == "cpu" or (self.device == "auto" and not torch.cuda.is_available())

    def state_config(self, num_examples: int) -> dict[str, Any]:
        """The settings a resumed run must share with the saved state, as JSON values.

        Args:
            num_examples: examples in the dataset (a resume on other data is refused).
        """
        values = {
            "model": os.fspath(self.model),
            "rank": self.rank,
            "target_modules": list(self.target_modules),
            "lora_alpha": self.lora_alpha,
            "learning_rate": self.learning_rate,
            "lr_scheduler": self.lr_scheduler,
            "lr_warmup_steps": self.lr_warmup_steps,
            "optimizer": self.optimizer,
            "batch_size": self.batch_size,
            "gradient_accumulation": self.gradient_accumulation,
            "max_grad_norm": self.max_grad_norm,
            "snr_gamma": self.snr_gamma,
            "noise_offset": self.noise_offset,
            "validation_split": self.validation_split,
            "mixed_precision": self.mixed_precision,
            "seed": self.seed,
            "train_text_encoder": self.train_text_encoder,
            "num_examples": num_examples,
        }
        # A JSON round trip: the same types as the config read back from state.json.
        return json.loads(json.dumps(values))


def check_settings(arguments: Mapping[str, Any]) -> TrainingSettings:
    """Check and normalise :func:`~riffusion.training.train_lora`'s keyword arguments.

    Args:
        arguments: one value per :class:`TrainingSettings` field, as the caller passed them.

    Raises:
        ParameterError: the first bad value, checked in the order of the signature (numbers
            first), or a device that cannot run the precision asked for.
    """
    numbers = _check_numbers(arguments)
    choices = _check_choices(arguments)
    settings = TrainingSettings(**{**arguments, **numbers, **choices})
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"device={settings.device!r}: CUDA is not available")
    if settings.mixed_precision == "fp16" and settings.use_cpu:
        raise ParameterError(
            "mixed_precision='fp16' needs a CUDA GPU; use 'bf16' or 'no' on the CPU"
        )
    if settings.lr_scheduler == "constant" and settings.lr_warmup_steps:
        raise ParameterError(
            f"lr_warmup_steps={settings.lr_warmup_steps} has no effect with "
            "lr_scheduler='constant'; use lr_scheduler='constant_with_warmup' (the default)"
        )
    return settings


def _check_numbers(arguments: Mapping[str, Any]) -> dict[str, Any]:
    rank = check_integer("rank", arguments["rank"])
    lora_alpha = arguments["lora_alpha"]
    checked: dict[str, Any] = {
        "rank": rank,
        "lora_alpha": (
            float(rank) if lora_alpha is None else _positive_number("lora_alpha", lora_alpha)
        ),
        "learning_rate": _positive_number("learning_rate", arguments["learning_rate"]),
        "lr_warmup_steps": check_integer(
            "lr_warmup_steps", arguments["lr_warmup_steps"], minimum=0
        ),
        "steps": check_integer("steps", arguments["steps"]),
        "batch_size": check_integer("batch_size", arguments["batch_size"]),
        "gradient_accumulation": check_integer(
            "gradient_accumulation", arguments["gradient_accumulation"]
        ),
        "max_grad_norm": _positive_number("max_grad_norm", arguments["max_grad_norm"]),
        "snr_gamma": (
            None
            if arguments["snr_gamma"] is None
            else _positive_number("snr_gamma", arguments["snr_gamma"])
        ),
        "noise_offset": _number_in("noise_offset", arguments["noise_offset"], 0.0, None),
        "validation_split": _number_in("validation_split", arguments["validation_split"], 0.0, 1.0),
        "seed": check_integer("seed", arguments["seed"], minimum=0),
        "validation_steps": check_integer("validation_steps", arguments["validation_steps"]),
    }
    # None: only at the end (validations, checkpoints); no limit (checkpoints kept).
    for name in ("validate_every", "checkpoint_every", "checkpoints_total_limit"):
        value = arguments[name]
        checked[name] = None if value is None else check_integer(name, value)
    return checked


def _number_in(name: str, value: Any, low: float, high: float | None) -> float:
    """``value`` as a float in ``[low, high)`` (no upper bound when ``high`` is ``None``)."""
    number = finite_float(value)
    if number is None or number < low or (high is not None and number >= high):
        bound = "" if high is None else f" and below {high:g}"
        raise ParameterError(f"{name}={value!r} must be a finite number >= {low:g}{bound}")
    return number


def _check_choices(arguments: Mapping[str, Any]) -> dict[str, Any]:
    prompts = _check_prompts(arguments["validation_prompts"])
    mixed_precision = arguments["mixed_precision"]
    if mixed_precision not in PRECISIONS:
        raise ParameterError(
            f"mixed_precision={mixed_precision!r} must be one of {', '.join(PRECISIONS)}"
        )
    for name, allowed in (
        ("lr_scheduler", LR_SCHEDULERS),
        ("optimizer", OPTIMIZERS),
        ("report_to", REPORT_TO),
    ):
        if arguments[name] not in allowed:
            raise ParameterError(f"{name}={arguments[name]!r} must be one of {', '.join(allowed)}")
    for name in ("gradient_checkpointing", "train_text_encoder"):
        if not isinstance(arguments[name], bool):
            raise ParameterError(f"{name}={arguments[name]!r} must be True or False")
    resume = arguments["resume"]
    if not isinstance(resume, bool | str | os.PathLike) or resume == "":
        raise ParameterError(
            f"resume={resume!r} must be True (the latest checkpoint), False, or the path of a "
            "checkpoint folder"
        )
    device = arguments["device"]
    if device not in _DEVICES:
        raise ParameterError(
            f"device={device!r} must be 'auto', 'cpu' or 'cuda' (pick the GPU with "
            "CUDA_VISIBLE_DEVICES or `accelerate launch`)"
        )
    return {
        "validation_prompts": prompts,
        "target_modules": _check_target_modules(arguments["target_modules"]),
    }


def _positive_number(name: str, value: Any) -> float:
    number = finite_float(value)
    if number is None or number <= 0:
        raise ParameterError(f"{name}={value!r} must be a positive finite number")
    return number


def _check_prompts(prompts: Any) -> tuple[str, ...]:
    if isinstance(prompts, str):
        prompts = (prompts,)
    if not isinstance(prompts, Sequence) or not all(
        isinstance(p, str) and p.strip() for p in prompts
    ):
        raise ParameterError(f"validation_prompts={prompts!r} must be a list of non-empty strings")
    return tuple(prompts)


def _check_target_modules(names: Any) -> tuple[str, ...]:
    # A single string is a Sequence of characters: refused rather than split into letters.
    if (
        isinstance(names, str)
        or not isinstance(names, Sequence)
        or not names
        or not all(isinstance(name, str) and name for name in names)
    ):
        raise ParameterError(f"target_modules={names!r} must be a non-empty list of module names")
    return tuple(names)
