"""The training loop: Stable Diffusion's objective on the adapters, one optimizer step at a time.

A step: for each micro-batch, noise the examples' latents at random timesteps, let the UNet
predict the noise (or velocity) from them and the captions' embeddings, and backpropagate the
mean squared error (min-SNR weighted, with ``snr_gamma``); then clip the gradients, step the
optimizer and the learning-rate schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from riffusion.errors import ParameterError, RiffusionError
from riffusion.training.data import CaptionBatches, micro_batch_indices
from riffusion.training.interrupt import StopRequest, TrainingInterrupted
from riffusion.training.log import TrainingLog
from riffusion.training.model import TrainingModels
from riffusion.training.randomness import HELD_OUT, NOISE, seed_for
from riffusion.training.settings import TrainingSettings

__all__ = [
    "draw_noise",
    "draw_seeded_noise",
    "held_out_loss",
    "min_snr_weights",
    "objective_loss",
    "run_steps",
    "train_step",
    "training_target",
]


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


def min_snr_weights(scheduler: Any, timesteps: torch.Tensor, snr_gamma: float) -> torch.Tensor:
    """Min-SNR loss weights (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR
    Weighting Strategy"), as diffusers' training scripts compute them.

    Args:
        scheduler: the training noise scheduler (its ``alphas_cumprod`` and
            ``prediction_type``).
        timesteps: ``(batch,)`` integer timesteps.
        snr_gamma: the clamp ``γ`` (5.0 is the paper's choice).

    Returns:
        ``(batch,)`` float32 weights ``min(SNR(t), γ) / SNR(t)`` for epsilon prediction,
        ``min(SNR(t), γ) / (SNR(t) + 1)`` for v-prediction, where ``SNR(t) = ᾱ_t / (1 − ᾱ_t)``
        (``diffusers.training_utils.compute_snr``).
    """
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, timesteps)
    clamped = torch.clamp(snr, max=snr_gamma)
    if scheduler.config.prediction_type == "v_prediction":
        return clamped / (snr + 1)
    return clamped / snr


def draw_noise(
    seed: int,
    step: int,
    micro: int,
    shape: torch.Size,
    num_timesteps: int,
    noise_offset: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The noise and timesteps of one micro-batch, on the CPU, from their own seed.

    Args:
        seed: the run's seed.
        step: optimizer step (0-based).
        micro: micro-batch within the step.
        shape: the latents' shape ``(batch, 4, h, w)``.
        num_timesteps: the schedule's training timesteps (timesteps are drawn in
            ``[0, num_timesteps)``).
        noise_offset: see :func:`draw_seeded_noise`.

    Returns:
        ``(noise, timesteps)``: float32 ``shape``, and int64 ``(batch,)``.
    """
    generator_seed = seed_for(seed, NOISE, step, micro)
    return draw_seeded_noise(generator_seed, shape, num_timesteps, noise_offset)


def draw_seeded_noise(
    generator_seed: int, shape: torch.Size, num_timesteps: int, noise_offset: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise and timesteps drawn, in this order, from ``torch.Generator().manual_seed(seed)``.

    Args:
        generator_seed: the generator's seed.
        shape: the latents' shape ``(batch, channels, h, w)``.
        num_timesteps: timesteps are drawn uniformly in ``[0, num_timesteps)``.
        noise_offset: the noise offset (as diffusers' scripts): ``noise_offset`` times one more
            standard normal draw per example and channel, shape ``(batch, channels, 1, 1)``,
            drawn after the timesteps, is added to the noise (the same value over the whole
            latent image: it shifts each channel's mean). 0: nothing drawn or added.

    Returns:
        ``(noise, timesteps)``: float32 ``shape``, and int64 ``(batch,)``.
    """
    generator = torch.Generator().manual_seed(generator_seed)
    noise = torch.randn(shape, generator=generator)
    timesteps = torch.randint(0, num_timesteps, (shape[0],), generator=generator)
    if noise_offset:
        offset = torch.randn((shape[0], shape[1], 1, 1), generator=generator)
        noise = noise + noise_offset * offset
    return noise, timesteps


def train_step(
    step: int, models: TrainingModels, batches: CaptionBatches, settings: TrainingSettings
) -> tuple[float, float]:
    """Run optimizer step ``step`` (0-based) over ``settings.gradient_accumulation``
    micro-batches, then step the learning-rate schedule.

    Returns:
        ``(loss, learning_rate)``: the mean of the micro-batches' losses, and the rate used.

    Raises:
        RiffusionError: a loss that became NaN or infinite.
    """
    learning = float(models.optimizer.param_groups[0]["lr"])
    accumulation = settings.gradient_accumulation
    num_timesteps = int(models.noise_scheduler.config.num_train_timesteps)
    processes, rank = models.accelerator.num_processes, models.accelerator.process_index
    share = slice(rank * settings.batch_size, (rank + 1) * settings.batch_size)
    step_loss = 0.0
    for micro in range(accumulation):
        # Under several processes the micro-batch is the global one (batch_size examples per
        # process, drawn as one run with that batch would draw them); each process takes its
        # slice of the examples and of the noise, and the gradients are averaged in backward.
        group = micro_batch_indices(
            batches.order, step, micro, settings.batch_size * processes, accumulation
        )
        draw = partial(
            draw_noise,
            settings.seed,
            step,
            micro,
            num_timesteps=num_timesteps,
            noise_offset=settings.noise_offset,
        )
        if processes > 1:
            draw = partial(_draw_share, draw, processes=processes, share=share)
        loss = objective_loss(models, batches, group[share], draw, settings.snr_gamma)
        value = loss.detach()
        if processes > 1:
            # Every process checks and logs the same value: the mean over the global batch.
            value = models.accelerator.reduce(value, reduction="mean")
        if not torch.isfinite(value):
            raise RiffusionError(
                f"the loss became {float(value)} at step {step + 1}; lower learning_rate="
                f"{settings.learning_rate} or use mixed_precision='no'"
            )
        models.accelerator.backward(loss / accumulation)
        step_loss += float(value) / accumulation
    models.accelerator.clip_grad_norm_(models.parameters, settings.max_grad_norm)
    models.optimizer.step()
    models.lr_scheduler.step()
    models.optimizer.zero_grad(set_to_none=True)
    return step_loss, learning


def _draw_share(
    draw: Callable[[torch.Size], tuple[torch.Tensor, torch.Tensor]],
    shape: torch.Size,
    *,
    processes: int,
    share: slice,
) -> tuple[torch.Tensor, torch.Tensor]:
    """This process's rows of the noise and timesteps drawn for the global micro-batch
    (``processes`` times ``shape[0]`` examples)."""
    noise, timesteps = draw(torch.Size((shape[0] * processes, *shape[1:])))
    return noise[share], timesteps[share]


def objective_loss(
    models: TrainingModels,
    batches: CaptionBatches,
    indices: list[int],
    draw: Callable[[torch.Size], tuple[torch.Tensor, torch.Tensor]],
    snr_gamma: float | None,
) -> torch.Tensor:
    """The float32 scalar loss of the examples ``indices``: the MSE between the UNet's
    prediction and its target, each example's weighted by :func:`min_snr_weights` when
    ``snr_gamma`` is set.

    Args:
        models: the run's models.
        batches: the run's latents and caption embeddings.
        indices: the examples.
        draw: ``draw(latents.shape)`` gives the CPU noise and timesteps.
        snr_gamma: min-SNR ``γ``, or ``None`` for the plain mean.
    """
    device, dtype = models.device, models.weight_dtype
    latents = batches.latents(indices, dtype)
    noise, timesteps = draw(latents.shape)
    noise, timesteps = noise.to(device, dtype), timesteps.to(device)
    noisy = models.noise_scheduler.add_noise(latents, noise, timesteps)
    goal = training_target(models.noise_scheduler, latents, noise, timesteps)
    with models.accelerator.autocast():
        embeddings = batches.embeddings(indices)
        prediction = models.unet(noisy, timesteps, encoder_hidden_states=embeddings).sample
    if snr_gamma is None:
        return torch.nn.functional.mse_loss(prediction.float(), goal.float())
    per_example = torch.nn.functional.mse_loss(
        prediction.float(), goal.float(), reduction="none"
    ).mean(dim=tuple(range(1, prediction.ndim)))
    weights = min_snr_weights(models.noise_scheduler, timesteps, snr_gamma)
    return (per_example * weights.to(per_example)).mean()


def held_out_loss(
    models: TrainingModels, batches: CaptionBatches, indices: list[int], settings: TrainingSettings
) -> float:
    """The mean loss over the held-out examples ``indices``, without gradients.

    Each example is noised with its own fixed draw (``seed_for(seed, HELD_OUT, index)``, the
    same at every evaluation), so the curve follows the adapters, not the draws. The loss is
    the training objective (min-SNR weights and noise offset included).
    """
    num_timesteps = int(models.noise_scheduler.config.num_train_timesteps)
    for module in models.trained:
        module.eval()
    try:
        total = 0.0
        with torch.no_grad():
            for index in indices:
                draw = partial(
                    draw_seeded_noise,
                    seed_for(settings.seed, HELD_OUT, index),
                    num_timesteps=num_timesteps,
                    noise_offset=settings.noise_offset,
                )
                total += float(objective_loss(models, batches, [index], draw, settings.snr_gamma))
        return total / len(indices)
    finally:
        for module in models.trained:
            module.train()


def run_steps(
    models: TrainingModels,
    batches: CaptionBatches,
    settings: TrainingSettings,
    *,
    start_step: int,
    log: TrainingLog,
    save: Callable[[int], Path],
    validate: Callable[[int], None],
    stop: StopRequest | None = None,
) -> list[float]:
    """Train from ``start_step`` to ``settings.steps``, logging every step.

    ``save`` and ``validate`` are called with the number of steps done every
    ``settings.checkpoint_every`` and ``settings.validate_every`` steps, but not after the last
    step (the caller saves and validates then).

    Returns:
        The loss of every step run, in order.

    Raises:
        TrainingInterrupted: ``stop`` fired before the last step; the step under way was
            finished and saved.
    """
    from tqdm.auto import tqdm

    bar = tqdm(
        total=settings.steps,
        initial=start_step,
        desc="train-lora",
        unit="step",
        disable=not settings.progress or not models.accelerator.is_main_process,
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
            signal_number = (
                _stop_signal(stop, models.accelerator) if done < settings.steps else None
            )
            if signal_number is not None:
                raise TrainingInterrupted(signal_number, done, save(done))
            if _due(done, settings.checkpoint_every, settings.steps):
                save(done)
            if _due(done, settings.validate_every, settings.steps):
                validate(done)
    finally:
        bar.close()
    return losses


def _due(done: int, every: int | None, steps: int) -> bool:
    """Whether a periodic save or validation falls after step ``done`` (not the last)."""
    return every is not None and done % every == 0 and done < steps


def _stop_signal(stop: StopRequest | None, accelerator: Any) -> int | None:
    """The stop signal received, or ``None``; under several processes, the highest signal
    any process received, so that all of them stop after the same step."""
    signal_number = None if stop is None else stop.signal_number
    if accelerator.num_processes == 1:
        return signal_number
    flag = torch.tensor([signal_number or 0], device=accelerator.device)
    agreed = int(accelerator.reduce(flag, reduction="max")[0])
    return agreed or None
