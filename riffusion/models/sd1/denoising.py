"""The denoising loop of Stable Diffusion img2img / text-to-image, as functions of components.

In the order diffusers' Stable Diffusion img2img pipeline uses:

1. encode the prompt and, when classifier-free guidance runs (guidance > 1, as diffusers'
   ``do_classifier_free_guidance``), the negative prompt (with weights and long-prompt
   chunking), and draw the starting noise on CPU generators seeded with the seeds, all mixed
   between two prompt inputs when interpolating (:func:`conditioning`);
2. text-to-image: start from ``noise * scheduler.init_noise_sigma`` over all timesteps;
   img2img: skip the first ``1 - denoising`` fraction of the timesteps and
   ``scheduler.add_noise`` the seed latents to the first remaining one
   (:func:`denoising_timesteps`, :func:`initial_latents`);
3. for each timestep: ``scale_model_input``, UNet on ``[unconditional, conditional]`` and
   classifier-free guidance (or, for guidance <= 1, on the conditional batch alone: half the
   work), ``scheduler.step``, and with a mask, overwrite the kept region with the seed latents
   re-noised to the next timestep (:func:`denoise`).

Every function takes the pipeline's components (UNet, scheduler, tokenizer, text encoder) and
tensors, never the pipeline; :mod:`riffusion.models.sd1.generation` runs them in order. The noise
and every scheduler draw come from CPU ``torch.Generator`` objects, so a seed gives the same
image on every device.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from riffusion.errors import ParameterError
from riffusion.inputs import PromptInput
from riffusion.models.sd1.devices import cpu_generator, randn
from riffusion.models.sd1.interpolation import lerp, slerp
from riffusion.models.sd1.prompt_encoding import (
    encode_conditional,
    encode_padded,
    encode_prompt,
    tokenize_prompt,
)

if TYPE_CHECKING:
    from diffusers import SchedulerMixin, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

__all__ = [
    "TIMING_KEYS",
    "Conditioning",
    "SeedMask",
    "Timer",
    "conditioning",
    "denoise",
    "denoising_timesteps",
    "initial_latents",
    "step_kwargs",
    "uses_guidance",
]

#: The phases a :class:`Timer` of a generation accumulates, in order.
TIMING_KEYS = ("text_encoder", "vae_encode", "unet", "vae_decode", "total")


def uses_guidance(guidance: float) -> bool:
    """Whether a run with this guidance scale does classifier-free guidance.

    As diffusers' ``do_classifier_free_guidance = guidance_scale > 1``: at 1 the guided
    prediction ``uncond + 1 * (cond - uncond)`` is the conditional one, and below 1 diffusers
    (and so riffusion) takes the conditional prediction alone too; the UNet then runs on the
    conditional batch only and the negative prompt is not encoded.

    Args:
        guidance: The (mixed) classifier-free guidance scale, finite and >= 0.
    """
    return guidance > 1.0


@dataclass(frozen=True)
class Conditioning:
    """Everything that differs between a single and an interpolated generation.

    Attributes:
        cond: ``(1, seq, hidden)`` prompt embeddings, the text encoder's dtype.
        uncond: ``(1, seq, hidden)`` negative-prompt embeddings, same shape and dtype; ``None``
            when ``guidance <= 1`` (see :func:`uses_guidance`): the negative prompt is unused.
        noise: ``(1, 4, h, w)`` float32 starting noise on the CPU.
        generator: The CPU generator for stochastic scheduler steps (the start seed's).
        denoising: The img2img strength in [0, 1].
        guidance: The classifier-free guidance scale.
    """

    cond: torch.Tensor
    uncond: torch.Tensor | None
    noise: torch.Tensor
    generator: torch.Generator
    denoising: float
    guidance: float

    def unet_embeddings(self, dtype: torch.dtype) -> torch.Tensor:
        """The UNet's text batch: ``(2, seq, hidden)`` ``[uncond, cond]`` with guidance,
        ``(1, seq, hidden)`` ``cond`` alone without (``uncond is None``), in ``dtype``.

        Args:
            dtype: The UNet's dtype.
        """
        if self.uncond is None:
            return self.cond.to(dtype=dtype)
        return torch.cat([self.uncond, self.cond]).to(dtype=dtype)


@dataclass(frozen=True)
class SeedMask:
    """What a mask keeps of the seed image during img2img.

    Attributes:
        mask: ``(1, 1, h, w)`` in [0, 1], 1 = regenerate, 0 = keep; the pipeline's dtype.
        init_latents: ``(N, 4, h, w)`` clean latents of the seed image (N = 1 for one
            generation; a batch repeats them).
        noise: ``(N, 4, h, w)`` the run's starting noise, which re-noises the seed.
    """

    mask: torch.Tensor
    init_latents: torch.Tensor
    noise: torch.Tensor

    def apply(
        self, scheduler: SchedulerMixin, latents: torch.Tensor, timesteps: torch.Tensor, step: int
    ) -> torch.Tensor:
        """Overwrite the kept region of ``latents`` after denoising step ``step`` (0-based).

        Args:
            scheduler: The run's scheduler (its ``add_noise``).
            latents: ``(N, 4, h, w)`` latents just returned by ``scheduler.step``.
            timesteps: All timesteps of the run.
            step: Index of the step just taken.
        """
        # The seed's latents at the noise level the sampler is now at (the next timestep), or
        # clean after the last step, so the kept region never lags the regenerated one.
        if step + 1 < len(timesteps):
            keep = scheduler.add_noise(
                self.init_latents, self.noise, timesteps[step + 1 : step + 2]
            )
        else:
            keep = self.init_latents
        return keep * (1 - self.mask) + latents * self.mask


class Timer:
    """Accumulates wall time per named phase; synchronises CUDA so GPU work is attributed.

    Args:
        device: The device the timed work runs on.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.totals = dict.fromkeys(TIMING_KEYS, 0.0)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.totals[key] += time.perf_counter() - start


def conditioning(
    start: PromptInput,
    end: PromptInput | None,
    alpha: float,
    shape: tuple[int, ...],
    *,
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel,
    expansions: Mapping[str, str],
    device: torch.device,
    timer: Timer,
) -> Conditioning:
    """Text embeddings, noise and scalars, mixed at ``alpha`` between ``start`` and ``end``.

    At ``alpha`` 0 or 1 only one end is computed, exactly as a single-prompt generation, so the
    interpolation endpoints are bitwise equal to the single generations. The (mixed) guidance
    decides whether the negative prompts are encoded at all (:func:`uses_guidance`).

    Args:
        start: The start prompt input.
        end: The end prompt input, or ``None``.
        alpha: Interpolation weight in [0, 1] (0 when ``end`` is ``None``).
        shape: The latents' shape ``(1, 4, height / 8, width / 8)``.
        tokenizer: The pipeline's CLIP tokenizer.
        text_encoder: The pipeline's ``CLIPTextModel``.
        expansions: The pipeline's textual-inversion tokens.
        device: The text encoder's execution device.
        timer: Accumulates the ``text_encoder`` time.
    """
    if end is None or alpha == 0.0 or alpha == 1.0:
        single = start if end is None or alpha == 0.0 else end
        with timer("text_encoder"):
            if uses_guidance(single.guidance):
                cond, uncond = encode_prompt(
                    tokenizer,
                    text_encoder,
                    single.prompt,
                    single.negative_prompt,
                    device=device,
                    expansions=expansions,
                )
            else:
                cond = encode_conditional(
                    tokenizer, text_encoder, single.prompt, device=device, expansions=expansions
                )
                uncond = None
        generator = cpu_generator(single.seed)
        noise = randn(shape, generator=generator)
        return Conditioning(cond, uncond, noise, generator, single.denoising, single.guidance)

    guidance = lerp(alpha, start.guidance, end.guidance)
    prompts = [start.prompt, end.prompt]
    if uses_guidance(guidance):
        prompts += [start.negative_prompt or "", end.negative_prompt or ""]
    tokens = [tokenize_prompt(tokenizer, p, expansions) for p in prompts]
    # Every sequence must have the same length to be mixed and batched: the prompts' chunk
    # count wins, negative prompts are padded or truncated to it.
    chunks = max(tokens[0].num_chunks, tokens[1].num_chunks)
    with timer("text_encoder"):
        encoded = encode_padded(tokenizer, text_encoder, tokens, chunks, device=device)
    gen_start, gen_end = cpu_generator(start.seed), cpu_generator(end.seed)
    noise = slerp(alpha, randn(shape, generator=gen_start), randn(shape, generator=gen_end))
    return Conditioning(
        cond=lerp(alpha, encoded[0], encoded[1]),
        uncond=lerp(alpha, encoded[2], encoded[3]) if len(encoded) == 4 else None,
        noise=noise,
        generator=gen_start,
        denoising=lerp(alpha, start.denoising, end.denoising),
        guidance=guidance,
    )


def step_kwargs(
    scheduler: SchedulerMixin, generator: torch.Generator | list[torch.Generator]
) -> dict[str, Any]:
    """The extra keyword arguments of ``scheduler.step``: the generator, where it takes one.

    Args:
        scheduler: The run's scheduler.
        generator: The CPU generator for stochastic steps, or one per item of a batch
            (diffusers' ``randn_tensor`` then draws each item's noise from its own).
    """
    # Only stochastic schedulers (Euler ancestral, DDIM with eta > 0, ...) take a generator.
    params = inspect.signature(scheduler.step).parameters
    return {"generator": generator} if "generator" in params else {}


def denoising_timesteps(
    scheduler: SchedulerMixin, steps: int, denoising: float, *, img2img: bool, device: torch.device
) -> torch.Tensor:
    """Set the scheduler's timesteps and return those the run takes, in order.

    Args:
        scheduler: The run's scheduler; its timesteps (and begin index) are set.
        steps: Steps of a full run, ``num_inference_steps``.
        denoising: img2img strength in [0, 1] (ignored for text-to-image).
        img2img: Whether the run starts from a seed image.
        device: Where the timesteps live.

    Returns:
        All timesteps for text-to-image; for img2img the last ``int(steps * denoising)`` steps'
        (times the scheduler's order), none for strength 0.
    """
    scheduler.set_timesteps(steps, device=device)
    if not img2img:
        return scheduler.timesteps
    # As diffusers' img2img: run the last int(steps * denoising) steps...
    init_steps = min(int(steps * denoising), steps)
    if init_steps == 0:
        # ...except that no step at all must run for strength 0 (diffusers would still run
        # PNDM's extra warm-up timestep), so denoising=0 is exactly the VAE round trip.
        return scheduler.timesteps[:0]
    begin = max(steps - init_steps, 0) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin)
    return scheduler.timesteps[begin:]


def initial_latents(
    scheduler: SchedulerMixin,
    noise: torch.Tensor,
    init_latents: torch.Tensor | None,
    timesteps: torch.Tensor,
) -> torch.Tensor:
    """The latents the loop starts from, ``(N, 4, h, w)`` like ``noise`` (N = 1 for one
    generation).

    Args:
        scheduler: The run's scheduler, its timesteps set.
        noise: ``(N, 4, h, w)`` starting noise on the device, in the pipeline's dtype.
        init_latents: The seed image's ``(N, 4, h, w)`` latents for img2img, ``None`` for
            text-to-image.
        timesteps: The timesteps the run takes.
    """
    if init_latents is None:
        return noise * scheduler.init_noise_sigma
    if len(timesteps) == 0:
        return init_latents
    return scheduler.add_noise(init_latents, noise, timesteps[:1])


def denoise(
    unet: UNet2DConditionModel,
    scheduler: SchedulerMixin,
    latents: torch.Tensor,
    embeddings: torch.Tensor,
    timesteps: torch.Tensor,
    *,
    guidance: float,
    timer: Timer,
    extra_step_kwargs: Mapping[str, Any],
    seed_mask: SeedMask | None = None,
    on_step_end: Callable[[int, Any, dict[str, Any]], dict[str, Any] | None] | None = None,
    check_interrupt: Callable[[int, int], None] = lambda done, total: None,
    progress_bar_config: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """The denoising loop, with classifier-free guidance when ``guidance > 1``.

    With guidance (:func:`uses_guidance`) the UNet runs on a batch of two,
    ``[uncond, cond]``, and the noise prediction is ``uncond + guidance * (cond - uncond)``;
    with ``guidance <= 1`` it runs on the conditional batch of one and its prediction is used as
    it is, as in diffusers: one UNet evaluation of one sample per step instead of two.

    ``N`` latents at once (:mod:`riffusion.models.sd1.batching`) run the same loop on a UNet
    batch of ``2N`` (``[uncond] * N + [cond] * N``) or ``N``; every operation outside the UNet
    is element-wise, so item ``i`` differs from its own run only by the UNet's summation order.

    Args:
        unet: The denoising UNet.
        scheduler: The run's scheduler, its timesteps set.
        latents: ``(N, 4, h, w)`` starting latents (see :func:`initial_latents`); N = 1 for
            one generation.
        embeddings: The UNet's dtype; ``(2N, seq, hidden)`` ``[uncond, cond]`` text embeddings
            when ``guidance > 1``, else ``(N, seq, hidden)`` ``cond`` (see
            :meth:`Conditioning.unet_embeddings`).
        timesteps: The timesteps to take, in order.
        guidance: Classifier-free guidance scale, >= 0.
        timer: Accumulates the ``unet`` time.
        extra_step_kwargs: Extra arguments of ``scheduler.step`` (see :func:`step_kwargs`;
            for N latents a list of N generators, one per item).
        seed_mask: With a mask, the region to keep of the seed image after every step.
        on_step_end: Called as ``on_step_end(step, timestep, {"latents", "num_steps"})`` after
            every step; a returned dict's ``"latents"`` replace the latents.
        check_interrupt: Called as ``check_interrupt(done, total)`` before every step and after
            every ``on_step_end``; raises to stop the run.
        progress_bar_config: tqdm keyword arguments.

    Returns:
        The ``(N, 4, h, w)`` denoised latents.

    Raises:
        ParameterError: If ``embeddings`` is not the batch ``guidance`` and ``latents`` need.
    """
    guided = uses_guidance(guidance)
    batch_size = latents.shape[0]
    expected = (2 if guided else 1) * batch_size
    if embeddings.ndim != 3 or embeddings.shape[0] != expected:
        layout = "[uncond, cond]" if guided else "cond"
        if batch_size > 1:
            layout = f"[uncond] * {batch_size} + [cond] * {batch_size}" if guided else "cond"
            layout += f", for {batch_size} latents"
        raise ParameterError(
            f"embeddings of shape {tuple(embeddings.shape)} must be a batch of {expected} "
            f"({layout}) for guidance={guidance!r}"
        )
    total = len(timesteps)
    for i, t in enumerate(tqdm(timesteps, **(progress_bar_config or {}))):
        check_interrupt(i, total)
        batch = torch.cat([latents, latents]) if guided else latents
        model_input = scheduler.scale_model_input(batch, t)
        with timer("unet"):
            noise_pred = unet(model_input, t, encoder_hidden_states=embeddings).sample
        if guided:
            uncond_pred, cond_pred = noise_pred.chunk(2)
            noise_pred = uncond_pred + guidance * (cond_pred - uncond_pred)
        else:
            # A compiled UNet under CUDA graphs (compile(mode="reduce-overhead")) overwrites its
            # output buffer on the next call, and PNDM keeps past predictions: a copy of its own.
            noise_pred = noise_pred.clone()
        latents = scheduler.step(noise_pred, t, latents, **extra_step_kwargs).prev_sample
        if seed_mask is not None:
            latents = seed_mask.apply(scheduler, latents, timesteps, i)
        if on_step_end is not None:
            outputs = on_step_end(i, t, {"latents": latents, "num_steps": total})
            if outputs:
                latents = outputs.get("latents", latents)
            check_interrupt(i + 1, total)
    return latents
