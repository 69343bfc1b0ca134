"""The models of a training run: the checkpoint's parts with LoRA adapters, on the device and in
the precision asked for, the optimizer over the adapters, and accelerate around them."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from riffusion.errors import ParameterError, RiffusionError
from riffusion.training.adapters import add_adapters
from riffusion.training.checkpoint import (
    load_adapter_state,
    load_optimizer_state,
    load_scaler_state,
    load_scheduler_state,
)
from riffusion.training.settings import TrainingSettings

__all__ = [
    "WEIGHT_DTYPES",
    "TrainingModels",
    "make_accelerator",
    "make_lr_scheduler",
    "make_optimizer",
    "setup_models",
]

#: dtype of the frozen weights for each ``mixed_precision``; the adapters stay float32.
WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class TrainingModels:
    """Everything a training step touches besides the data.

    Attributes:
        unet: the UNet with adapters, in train mode while training; under several processes
            wrapped in ``DistributedDataParallel`` (``accelerator.unwrap_model`` gives the
            module): call it for every training forward pass, so gradients are averaged.
        vae: the frozen VAE.
        text_encoder: the CLIP text encoder (with adapters when ``train_text_encoder``, then
            wrapped like ``unet`` under several processes).
        tokenizer: the CLIP tokenizer.
        noise_scheduler: a ``DDPMScheduler`` with the checkpoint's schedule: noises the latents.
        accelerator: accelerate's ``Accelerator`` (device, autocast, backward, clipping).
        weight_dtype: dtype of the frozen weights and of the latents and noise fed to the UNet.
        train_text_encoder: whether the text encoder's adapters train.
        trained: the models whose adapters train (the UNet, then the text encoder).
        parameters: the adapters' float32 parameters, in the optimizer's order.
        optimizer: AdamW (or 8-bit AdamW) over ``parameters``, as prepared by accelerate.
        lr_scheduler: the ``LambdaLR`` of ``diffusers.optimization.get_scheduler``, stepped once
            per optimizer step.
        scaler: accelerate's fp16 gradient scaler, or ``None``.
        pipeline: a ``RiffusionPipeline`` over the same (unwrapped) modules: the image
            encoder and the validation sampler.
    """

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any
    accelerator: Any
    weight_dtype: torch.dtype
    train_text_encoder: bool
    trained: tuple[Any, ...]
    parameters: tuple[torch.nn.Parameter, ...]
    optimizer: Any
    lr_scheduler: Any
    scaler: Any | None
    pipeline: Any

    @property
    def device(self) -> torch.device:
        """Where the models run."""
        return self.accelerator.device


def setup_models(
    settings: TrainingSettings, accelerate: Any, state_dir: Path | None
) -> TrainingModels:
    """Load the checkpoint, add the adapters and get everything ready to train.

    With a saved state, its adapters are loaded before the models are cast to
    ``settings.mixed_precision`` (as the uninterrupted run's were), the optimizer's moments
    before accelerate wraps it, and the loss scale after.

    Args:
        settings: the run's settings.
        accelerate: the ``accelerate`` module.
        state_dir: the saved state to resume from, or ``None``.

    Raises:
        ParameterError: a checkpoint whose scheduler predicts neither noise nor velocity.
        ModelLoadError: the checkpoint cannot be loaded.
        RiffusionError: a damaged saved state.
    """
    from riffusion.models.sd1 import RiffusionPipeline

    parts, noise_scheduler = _load_parts(settings)
    unet, vae, text_encoder = parts.unet, parts.vae, parts.text_encoder
    accelerator = make_accelerator(accelerate, settings.mixed_precision, settings.use_cpu)
    weight_dtype = WEIGHT_DTYPES[settings.mixed_precision]
    trained_text_encoder = text_encoder if settings.train_text_encoder else None
    add_adapters(
        unet,
        trained_text_encoder,
        rank=settings.rank,
        lora_alpha=settings.lora_alpha,
        target_modules=settings.target_modules,
        seed=settings.seed,
    )
    if state_dir is not None:
        load_adapter_state(state_dir, unet, trained_text_encoder)
    trained = (unet, *([text_encoder] if settings.train_text_encoder else []))
    _place((unet, vae, text_encoder), trained, accelerator.device, weight_dtype)
    if settings.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if settings.train_text_encoder:
            text_encoder.gradient_checkpointing_enable()
    parameters = [p for module in trained for p in module.parameters() if p.requires_grad]
    if not parameters:
        raise RiffusionError("internal: the LoRA adapters have no trainable parameters")
    optimizer = make_optimizer(settings.optimizer, parameters, settings.learning_rate)
    lr_scheduler = make_lr_scheduler(settings, optimizer)
    if state_dir is not None:
        # The optimizer's state holds the learning rate of the next step; the schedule's, its
        # position. Loaded after the schedule is made (which sets the first step's rate).
        load_optimizer_state(state_dir, optimizer)
        load_scheduler_state(state_dir, lr_scheduler)
    # Under several processes (`accelerate launch`) the trained models come back wrapped in
    # DistributedDataParallel, which averages their gradients in backward; in one process they
    # come back as they went in. The pipeline keeps the bare modules.
    *wrapped, optimizer = accelerator.prepare(*trained, optimizer)
    forward_unet = wrapped[0]
    forward_text_encoder = wrapped[1] if settings.train_text_encoder else text_encoder
    scaler = getattr(accelerator, "scaler", None)
    if state_dir is not None:
        load_scaler_state(state_dir, scaler)
    pipeline = RiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=parts.tokenizer,
        scheduler=parts.scheduler,
    )
    pipeline.set_progress_bar_config(disable=True)
    return TrainingModels(
        unet=forward_unet,
        vae=vae,
        text_encoder=forward_text_encoder,
        tokenizer=parts.tokenizer,
        noise_scheduler=noise_scheduler,
        accelerator=accelerator,
        weight_dtype=weight_dtype,
        train_text_encoder=settings.train_text_encoder,
        trained=trained,
        parameters=tuple(parameters),
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        scaler=scaler,
        pipeline=pipeline,
    )


def make_optimizer(name: str, parameters: list[torch.nn.Parameter], learning_rate: float) -> Any:
    """The optimizer ``name`` (``"adamw"`` or ``"adamw8bit"``) over ``parameters``.

    Raises:
        RiffusionError: ``"adamw8bit"`` without bitsandbytes installed.
    """
    if name == "adamw8bit":
        try:
            bitsandbytes = importlib.import_module("bitsandbytes")
        except ImportError as error:
            raise RiffusionError(
                "optimizer='adamw8bit' needs bitsandbytes (and a CUDA GPU): pip install "
                "bitsandbytes, or use optimizer='adamw'"
            ) from error
        return bitsandbytes.optim.AdamW8bit(parameters, lr=learning_rate)
    return torch.optim.AdamW(parameters, lr=learning_rate)


def make_lr_scheduler(settings: TrainingSettings, optimizer: Any) -> Any:
    """diffusers' learning-rate schedule ``settings.lr_scheduler`` over ``settings.steps``
    optimizer steps, with ``settings.lr_warmup_steps`` of linear warm-up."""
    from diffusers.optimization import get_scheduler

    return get_scheduler(
        settings.lr_scheduler,
        optimizer,
        num_warmup_steps=settings.lr_warmup_steps,
        num_training_steps=settings.steps,
    )


def _load_parts(settings: TrainingSettings) -> tuple[Any, Any]:
    """The checkpoint's parts in float32 on the CPU, and its training noise scheduler."""
    from diffusers import DDPMScheduler

    from riffusion.models.sd1 import resolve_model_folder
    from riffusion.models.sd1.loading import load_components

    model = os.fspath(settings.model)
    folder = resolve_model_folder(settings.model, local_files_only=settings.local_files_only)
    parts = load_components(folder, model=model, dtype=torch.float32)
    noise_scheduler = DDPMScheduler.from_config(parts.scheduler.config)
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type not in ("epsilon", "v_prediction"):
        raise ParameterError(
            f"model={model!r}: prediction_type={prediction_type!r} is not supported "
            "(epsilon, v_prediction)"
        )
    return parts, noise_scheduler


def _place(
    modules: tuple[Any, ...], trained: tuple[Any, ...], device: torch.device, dtype: torch.dtype
) -> None:
    """Move ``modules`` to ``device`` in ``dtype``, then the adapters of ``trained`` back to
    float32: the frozen weights run in the low precision, the adapters train in float32."""
    for module in modules:
        module.to(device, dtype=dtype)
    for module in trained:
        for name, parameter in module.named_parameters():
            if "lora_" in name:
                parameter.data = parameter.data.float()


def make_accelerator(accelerate: Any, mixed_precision: str, cpu: bool) -> Any:
    """An ``Accelerator`` on the device asked for; a later training in the same process may
    change the precision or the device.

    accelerate keeps its state in process-wide singletons: the mixed-precision setting (a
    different one later is refused: "restart your runtime") and the device of the first
    ``Accelerator`` (a later ``Accelerator(cpu=False)`` after ``cpu=True`` silently stays on the
    CPU: a CUDA training after a CPU one ran on the CPU). A library function called twice must
    do neither, so when the state disagrees with the request it is cleared and the accelerator
    built again.

    Args:
        accelerate: the ``accelerate`` module.
        mixed_precision: ``"no"``, ``"fp16"`` or ``"bf16"``.
        cpu: whether to run on the CPU.
    """
    from accelerate.state import AcceleratorState

    try:
        accelerator = accelerate.Accelerator(mixed_precision=mixed_precision, cpu=cpu)
    except ValueError as error:
        if "already been initialized" not in str(error):
            raise
        AcceleratorState._reset_state(reset_partial_state=True)
        accelerator = accelerate.Accelerator(mixed_precision=mixed_precision, cpu=cpu)
    if (accelerator.device.type == "cpu") != cpu:
        AcceleratorState._reset_state(reset_partial_state=True)
        accelerator = accelerate.Accelerator(mixed_precision=mixed_precision, cpu=cpu)
    return accelerator
