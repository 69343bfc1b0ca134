"""The training loop: Stable Diffusion's objective on the adapters, one optimizer step at a time.

A step: for each micro-batch, noise the examples' latents at random timesteps, let the UNet
predict the noise (or velocity) from them and the captions' embeddings, and backpropagate the
mean squared error; then clip the gradients and step the optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from riffusion.errors import ParameterError, RiffusionError
from riffusion.training.data import CaptionBatches, micro_batch_indices
from riffusion.training.log import TrainingLog
from riffusion.training.model import TrainingModels
from riffusion.training.randomness import NOISE, seed_for
from riffusion.training.settings import TrainingSettings

__all__ = ["draw_noise", "learning_rate_at", "run_steps", "train_step", "training_target"]


def training_target(
    scheduler: Any, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """What the UNet must predict: the noise, or the velocity for v-prediction checkpoints.

    Args:
        scheduler: a diffusers scheduler with the checkpoint's config (``prediction_type``
            ``"epsilon"`` or ``"v_prediction"``).
        latents: clean latents ``(batch, 4, h, w)``.
        noise: the Gaussian noise added, same shape.
        timesteps: ``(batch,)`` integer timesteps.

    Returns:
        ``noise`` for epsilon prediction; ``sqrt(ᾱ_t) · noise − sqrt(1 − ᾱ_t) · latents`` for
        v-prediction.
    """
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ParameterError(
        f"the scheduler's prediction_type={prediction_type!r} is not supported; expected "
        "'epsilon' or 'v_prediction'"
    )


def learning_rate_at(step: int, learning_rate: float, warmup_steps: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based): a linear warm-up to
    ``learning_rate`` over ``warmup_steps`` steps (none when 0), then constant."""
    if warmup_steps:
        return learning_rate * min(1.0, (step + 1) / warmup_steps)
    return learning_rate


def draw_noise(
    seed: int, step: int, micro: int, shape: torch.Size, num_timesteps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The noise and timesteps of one micro-batch, on the CPU, from their own seed.

    Args:
        seed: the run's seed.
        step: optimizer step (0-based).
        micro: micro-batch within the step.
        shape: the latents' shape ``(batch, 4, h, w)``.
        num_timesteps: the schedule's training timesteps (timesteps are drawn in
            ``[0, num_timesteps)``).

    Returns:
        ``(noise, timesteps)``: float32 ``shape`` standard normal, and int64 ``(batch,)``.
    """
    generator = torch.Generator().manual_seed(seed_for(seed, NOISE, step, micro))
    noise = torch.randn(shape, generator=generator)
    timesteps = torch.randint(0, num_timesteps, (shape[0],), generator=generator)
    return noise, timesteps


def train_step(
    step: int, models: TrainingModels, batches: CaptionBatches, settings: TrainingSettings
) -> tuple[float, float]:
    """Run optimizer step ``step`` (0-based) over ``settings.gradient_accumulation``
    micro-batches.

    Returns:
        ``(loss, learning_rate)``: the mean of the micro-batches' MSE losses, and the rate used.

    Raises:
        RiffusionError: a loss that became NaN or infinite.
    """
    learning = learning_rate_at(step, settings.learning_rate, settings.lr_warmup_steps)
    for group in models.optimizer.param_groups:
        group["lr"] = learning
    accumulation = settings.gradient_accumulation
    step_loss = 0.0
    for micro in range(accumulation):
        loss = _micro_batch_loss(step, micro, models, batches, settings)
        if not torch.isfinite(loss):
            raise RiffusionError(
                f"the loss became {float(loss)} at step {step + 1}; lower learning_rate="
                f"{settings.learning_rate} or use mixed_precision='no'"
            )
        models.accelerator.backward(loss / accumulation)
        step_loss += float(loss.detach()) / accumulation
    models.accelerator.clip_grad_norm_(models.parameters, settings.max_grad_norm)
    models.optimizer.step()
    models.optimizer.zero_grad(set_to_none=True)
    return step_loss, learning


def _micro_batch_loss(
    step: int,
    micro: int,
    models: TrainingModels,
    batches: CaptionBatches,
    settings: TrainingSettings,
) -> torch.Tensor:
    """The float32 scalar MSE between the UNet's prediction and its target on one micro-batch."""
    device, dtype = models.device, models.weight_dtype
    indices = micro_batch_indices(
        batches.order, step, micro, settings.batch_size, settings.gradient_accumulation
    )
    latents = batches.latents(indices, dtype)
    num_timesteps = int(models.noise_scheduler.config.num_train_timesteps)
    noise, timesteps = draw_noise(settings.seed, step, micro, latents.shape, num_timesteps)
    noise, timesteps = noise.to(device, dtype), timesteps.to(device)
    noisy = models.noise_scheduler.add_noise(latents, noise, timesteps)
    goal = training_target(models.noise_scheduler, latents, noise, timesteps)
    with models.accelerator.autocast():
        embeddings = batches.embeddings(indices)
        prediction = models.unet(noisy, timesteps, encoder_hidden_states=embeddings).sample
    return torch.nn.functional.mse_loss(prediction.float(), goal.float())


def run_steps(
    models: TrainingModels,
    batches: CaptionBatches,
    settings: TrainingSettings,
    *,
    start_step: int,
    log: TrainingLog,
    save: Callable[[int], None],
    validate: Callable[[int], None],
) -> list[float]:
    """Train from ``start_step`` to ``settings.steps``, logging every step.

    ``save`` and ``validate`` are called with the number of steps done every
    ``settings.checkpoint_every`` and ``settings.validate_every`` steps, but not after the last
    step (the caller saves and validates then).

    Returns:
        The loss of every step run, in order.
    """
    from tqdm.auto import tqdm

    bar = tqdm(
        total=settings.steps,
        initial=start_step,
        desc="train-lora",
        unit="step",
        disable=not settings.progress,
    )
    for module in models.trained:
        module.train()
    losses: list[float] = []
    try:
        for step in range(start_step, settings.steps):
            loss, learning = train_step(step, models, batches, settings)
            done = step + 1
            losses.append(loss)
            log.add(done, loss, learning)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if _due(done, settings.checkpoint_every, settings.steps):
                save(done)
            if settings.validation_prompts and _due(done, settings.validate_every, settings.steps):
                validate(done)
    finally:
        bar.close()
    return losses


def _due(done: int, every: int | None, steps: int) -> bool:
    """Whether a periodic save or validation falls after step ``done`` (not the last)."""
    return every is not None and done % every == 0 and done < steps
