"""LoRA fine-tuning of a Stable Diffusion 1.x checkpoint on spectrogram images.

The objective is Stable Diffusion's own: encode each image with the (frozen) VAE, draw a random
timestep and Gaussian noise, noise the latents with the checkpoint's noise schedule (a
``DDPMScheduler`` built from the checkpoint's scheduler config), let the UNet predict the noise
(or the velocity, when the config's ``prediction_type`` is ``"v_prediction"``) from the noisy
latents and the caption's CLIP embedding, and minimise the mean squared error. Only LoRA adapters
(``peft``) on the UNet's attention projections — and optionally the text encoder's — are
trained; ``accelerate`` places the models and runs mixed precision.

Every random draw is a pure function of ``(seed, step)``: the order of examples comes from a
per-epoch permutation, the noise and timesteps from a generator seeded with the step number. So
a run resumed from its saved state (LoRA weights, optimizer moments, step) continues exactly as
if it had never stopped.

This module is the front door; the pieces live beside it: :mod:`~riffusion.training.settings`
(the checked arguments), :mod:`~riffusion.training.data` (examples, their order, the batches),
:mod:`~riffusion.training.model` (models, adapters, optimizer), :mod:`~riffusion.training.loop`
(the optimizer steps), :mod:`~riffusion.training.checkpoint` (weights, saved state, resume),
:mod:`~riffusion.training.validation` (validation clips) and :mod:`~riffusion.training.log`
(log, loss plot).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from riffusion.errors import RiffusionError, install_hint
from riffusion.training.adapters import UNET_TARGETS
from riffusion.training.checkpoint import (
    LORA_WEIGHT_NAME,
    checkpoint_dir,
    resume_point,
    save_checkpoint,
)
from riffusion.training.data import CaptionBatches, load_examples, split_examples
from riffusion.training.interrupt import stop_on_signals
from riffusion.training.log import (
    LOG_NAME,
    PLOT_NAME,
    TrainingLog,
    make_tracker,
    plot_loss,
    write_args,
)
from riffusion.training.loop import held_out_loss, run_steps
from riffusion.training.model import setup_models
from riffusion.training.settings import LR_SCHEDULERS, TrainingSettings
from riffusion.training.validation import Validator

__all__ = ["LR_SCHEDULERS", "TrainingResult", "train_lora"]


@dataclass(frozen=True)
class TrainingResult:
    """What :func:`train_lora` produced.

    Attributes:
        output_dir: the output folder.
        weights: the LoRA weights in diffusers format (``pytorch_lora_weights.safetensors``).
        log: the CSV log (``step, loss, learning_rate, validation_loss, elapsed_s``).
        loss_plot: the loss-curve PNG, or ``None`` when matplotlib is missing.
        step: optimizer steps done in total (including those before a resume).
        start_step: the step this call started from (0, or the resumed state's step).
        losses: the loss of every optimizer step this call ran, in order.
        validation: the validation files written (spectrogram PNGs and WAVs).
        held_out: the examples held out by ``validation_split`` (indices into the dataset).
        checkpoint: the last checkpoint folder written (``checkpoint-<step>``).
    """

    output_dir: Path
    weights: Path
    log: Path
    loss_plot: Path | None
    step: int
    start_step: int
    losses: tuple[float, ...]
    validation: tuple[Path, ...]
    held_out: tuple[int, ...]
    checkpoint: Path


def train_lora(
    dataset: Any,
    model: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    rank: int = 4,
    target_modules: Sequence[str] = UNET_TARGETS,
    lora_alpha: float | None = None,
    learning_rate: float = 1e-4,
    lr_scheduler: str = "constant_with_warmup",
    lr_warmup_steps: int = 0,
    optimizer: str = "adamw",
    steps: int = 1000,
    batch_size: int = 1,
    gradient_accumulation: int = 1,
    max_grad_norm: float = 1.0,
    snr_gamma: float | None = None,
    noise_offset: float = 0.0,
    mixed_precision: str = "no",
    gradient_checkpointing: bool = False,
    seed: int = 0,
    train_text_encoder: bool = False,
    validation_prompts: Sequence[str] = (),
    validate_every: int | None = None,
    validation_steps: int = 20,
    validation_split: float = 0.0,
    report_to: str = "csv",
    checkpoint_every: int | None = 500,
    checkpoints_total_limit: int | None = None,
    resume: bool | str | os.PathLike[str] = False,
    device: str = "auto",
    local_files_only: bool = False,
    progress: bool = True,
) -> TrainingResult:
    """Fine-tune LoRA adapters on spectrogram images with the Stable Diffusion objective.

    Args:
        dataset: a folder from :func:`riffusion.dataset.prepare` (``metadata.jsonl`` + PNGs),
            or a sequence of ``{"image": PIL image or path, "text": caption}`` rows (a Hugging
            Face ``datasets.Dataset`` works). All images the same size, sides multiples of 8.
        model: the base checkpoint: hub id or diffusers folder (Stable Diffusion 1.x).
        output_dir: where weights, log, plot, validation clips and the training state go.
        rank: LoRA rank ``r`` of every adapter.
        target_modules: names of the UNet modules that get adapters: :data:`UNET_TARGETS`
            (attention projections, the default) or :data:`UNET_ALL_TARGETS` (also projections,
            feed-forward and ResNet convolutions), or your own list.
        lora_alpha: LoRA ``alpha`` (adapter output scaled by ``alpha / rank``); default ``rank``.
        learning_rate: the optimizer's (peak) learning rate.
        lr_scheduler: a name of diffusers' ``get_scheduler`` (:data:`LR_SCHEDULERS`).
        lr_warmup_steps: linear warm-up from 0 over this many steps (diffusers').
        optimizer: ``"adamw"`` or ``"adamw8bit"`` (bitsandbytes, CUDA only).
        steps: total optimizer steps (a resumed run stops at the same total).
        batch_size: examples per micro-batch.
        gradient_accumulation: micro-batches per optimizer step (effective batch
            ``batch_size * gradient_accumulation``).
        max_grad_norm: gradient clipping norm.
        snr_gamma: min-SNR loss weighting ``γ`` (5.0 recommended; ``None``: off).
        noise_offset: diffusers' noise offset, ``>= 0`` (0: off).
        mixed_precision: ``"no"``, ``"fp16"`` (CUDA only) or ``"bf16"``: the frozen weights are
            cast to it and the forward pass runs under autocast; the adapters stay float32.
        gradient_checkpointing: recompute activations in the backward pass (less memory).
        seed: seeds the adapters' initialisation, the example order, noise and timesteps.
        train_text_encoder: also put adapters on the CLIP text encoder's attention.
        validation_prompts: prompts rendered (spectrogram PNG + WAV) every ``validate_every``
            steps and at the end, into ``output_dir/validation/step_NNNNNN/``.
        validate_every: steps between validations (``None``: only at the end).
        validation_steps: sampler steps of each validation image.
        validation_split: share of the examples held out, in ``[0, 1)``; their loss is
            logged (``validation_loss``) at each validation.
        report_to: ``"csv"`` (always written), ``"tensorboard"`` or ``"wandb"`` as well.
        checkpoint_every: steps between ``checkpoint-<step>/`` folders (``None``: at the end).
        checkpoints_total_limit: checkpoints kept, oldest deleted (``None``: all).
        resume: ``True``: the latest checkpoint in ``output_dir`` (none: a new run); a path:
            that checkpoint; ``False``: a new run (checkpoints in ``output_dir`` refused).
            The run's settings must match the checkpoint's; ``steps`` may grow.
        device: ``"auto"`` (accelerate's choice: CUDA when available), ``"cpu"`` or
            ``"cuda"``.
        local_files_only: never download the model.
        progress: show a progress bar with the running loss.

    SIGINT or SIGTERM (in the main thread) stops the run after the step under way, saves a
    checkpoint and raises :class:`TrainingInterrupted`; ``resume=True`` continues bit for bit.
    Details, and ``accelerate launch`` (one writer): ``docs/training.md``.

    Returns:
        A :class:`TrainingResult`.

    Raises:
        TrainingInterrupted: a stop signal arrived (a ``RiffusionError``; its ``checkpoint``
            and ``exit_status``).
        ParameterError: a bad argument, dataset or mismatched resume state.
        ModelLoadError: the model cannot be loaded.
        RiffusionError: a missing optional dependency (the ``train`` extra, or bitsandbytes,
            tensorboard, wandb when asked for), or a loss that became NaN/inf.
    """
    # The keyword parameters are exactly TrainingSettings' fields, so they pass on by name
    # (first statement: locals() holds nothing but the parameters yet).
    settings = TrainingSettings.from_arguments(locals())
    return _train(dataset, output_dir, settings)


def _train(
    dataset: Any, output_dir: str | os.PathLike[str], settings: TrainingSettings
) -> TrainingResult:
    """Run :func:`train_lora` with checked settings."""
    _require("peft")
    accelerate = _require("accelerate")
    examples = load_examples(dataset)
    training, held_out = split_examples(len(examples), settings.validation_split, settings.seed)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    config = settings.state_config(len(examples))
    state_dir, start_step = resume_point(output, config, settings.steps, resume=settings.resume)
    models = setup_models(settings, accelerate, state_dir)
    batches = CaptionBatches(
        examples,
        settings.seed,
        models.pipeline,
        models.tokenizer,
        models.text_encoder,
        train_text_encoder=settings.train_text_encoder,
        device=models.device,
        training=training,
    )
    # Under several processes every one trains, but only the main one writes files; the others
    # wait for it at each save and validation.
    accelerator = models.accelerator
    writer = accelerator.is_main_process
    clips = Validator(output, settings, models, examples)
    tracker = make_tracker(settings.report_to, output, config) if writer else None
    log = TrainingLog(output / LOG_NAME, start_step, tracker)
    if writer:
        write_args(output, config, settings)
    saved: list[Path] = []

    def save(step: int) -> Path:
        if writer:
            saved.append(
                save_checkpoint(
                    output, step, config, models, total_limit=settings.checkpoints_total_limit
                )
            )
            log.write()
        else:
            saved.append(checkpoint_dir(output, step))
        accelerator.wait_for_everyone()
        return saved[-1]

    def validate(step: int) -> None:
        if held_out:
            # Every process computes it (the same value): the forward passes stay in step.
            log.add_validation_loss(step, held_out_loss(models, batches, held_out, settings))
        if settings.validation_prompts and writer:
            clips(step)
        accelerator.wait_for_everyone()

    try:
        with stop_on_signals() as stop:
            losses = run_steps(
                models,
                batches,
                settings,
                start_step=start_step,
                log=log,
                save=save,
                validate=validate,
                stop=stop,
            )
            final = max(start_step, settings.steps)
            validate(final)
            save(final)
    finally:
        if log.tracker is not None:
            log.tracker.finish()
    # Without matplotlib, the warning points at train_lora's caller (plot_loss, _train,
    # train_lora, caller).
    plot = plot_loss(output / PLOT_NAME, log.rows, stacklevel=4) if log.rows and writer else None
    return TrainingResult(
        output_dir=output,
        weights=output / LORA_WEIGHT_NAME,
        log=log.path,
        loss_plot=plot,
        step=final,
        start_step=start_step,
        losses=tuple(losses),
        validation=tuple(clips.files),
        held_out=tuple(held_out),
        checkpoint=saved[-1],
    )


def _require(module: str) -> Any:
    """Import ``module``, an optional dependency of training (the ``train`` extra)."""
    try:
        return __import__(module)
    except ImportError as error:
        raise RiffusionError(f"LoRA training needs {module}: {install_hint('train')}") from error
