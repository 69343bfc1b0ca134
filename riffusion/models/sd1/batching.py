"""Several generations in one UNet batch: items that share everything but prompt and seed.

:func:`generate_batch` runs ``N`` generations (img2img or text-to-image) that share the model,
scheduler, steps, denoising, guidance, negative prompt, seed image, mask, size and adapters,
and differ only in their prompt and seed, in one denoising loop:

1. each item's prompt is encoded alone (the text encoder's batch of one, exactly as in a
   single generation); the negative prompt once, when guidance > 1;
2. each item's starting noise is drawn from its own CPU ``torch.Generator`` seeded with its
   seed, and a stochastic scheduler's per-step noise from the list of those generators
   (diffusers' ``randn_tensor`` draws item ``i``'s from generator ``i``), so item ``i`` starts
   from the same noise, and meets the same per-step noise, as when generated alone;
3. the seed image is VAE-encoded once; the UNet runs on ``2N`` samples per step
   (``[uncond] * N + [cond] * N``) with classifier-free guidance, ``N`` without (guidance <= 1);
4. each item's latents are VAE-decoded alone (the same decode as a single generation).

Every operation outside the UNet is element-wise over the batch, so item ``i`` differs from
its single generation only by the UNet's floating-point summation order: the convolutions and
matrix products of a batch of ``2N`` are computed with other blockings than those of a batch
of 2 (on CPU, oneDNN and the BLAS pick kernels by shape). The single path
(:func:`riffusion.models.sd1.generation.generate`) is not touched by this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from riffusion.errors import ParameterError
from riffusion.inputs import PromptInput
from riffusion.models.sd1.denoising import Timer, uses_guidance
from riffusion.models.sd1.devices import cpu_generator, randn
from riffusion.models.sd1.generation import GenerationResult, sample_latents
from riffusion.models.sd1.periodic import periodic_width
from riffusion.models.sd1.prompt_encoding import (
    encode_conditional,
    encode_prompt,
    tokenize_prompt,
)

if TYPE_CHECKING:
    from riffusion.models.sd1.pipeline import RiffusionPipeline

__all__ = [
    "MAX_BATCH_SIZE",
    "BatchConditioning",
    "BatchingMixin",
    "batch_conditioning",
    "check_batch",
    "generate_batch",
]

#: The most items one :func:`generate_batch` call takes (a UNet batch of 128 with guidance).
MAX_BATCH_SIZE = 64

# What every item of a batch shares: the PromptInput fields other than prompt and seed.
_SHARED_FIELDS = ("negative_prompt", "denoising", "guidance")


def check_batch(starts: Any) -> list[PromptInput]:
    """Check the items of a batch before anything is allocated or tokenized.

    Args:
        starts: The items' prompt inputs, unchecked: a list or tuple of 1 to
            :data:`MAX_BATCH_SIZE` :class:`~riffusion.inputs.PromptInput` values that differ
            only in ``prompt`` and ``seed``.

    Returns:
        ``starts`` as a list.

    Raises:
        ParameterError: Naming the argument, its value and what was expected.
    """
    if not isinstance(starts, list | tuple):
        raise ParameterError(
            f"starts={starts!r} must be a list of PromptInput values (one per item of the batch)"
        )
    if not 1 <= len(starts) <= MAX_BATCH_SIZE:
        raise ParameterError(
            f"len(starts)={len(starts)} must be in [1, {MAX_BATCH_SIZE}] (items of one batch)"
        )
    for index, start in enumerate(starts):
        if not isinstance(start, PromptInput):
            raise ParameterError(f"starts[{index}]={start!r} must be a PromptInput")
        for name in _SHARED_FIELDS:
            value, first = getattr(start, name), getattr(starts[0], name)
            if value != first:
                raise ParameterError(
                    f"starts[{index}].{name}={value!r} differs from starts[0].{name}={first!r}: "
                    "the items of a batch share everything but prompt and seed"
                )
    return list(starts)


@dataclass(frozen=True)
class BatchConditioning:
    """The text embeddings and noise of a batch of ``N`` items.

    Attributes:
        cond: ``(N, seq, hidden)`` prompt embeddings, the text encoder's dtype; row ``i`` is
            item ``i``'s prompt encoded alone.
        uncond: ``(1, seq, hidden)`` negative-prompt embeddings, or ``None`` when
            ``guidance <= 1``.
        noise: ``(N, 4, h, w)`` float32 starting noise on the CPU; row ``i`` drawn from
            ``generators[i]``.
        generators: One CPU generator per item, seeded with its seed (for stochastic steps).
    """

    cond: torch.Tensor
    uncond: torch.Tensor | None
    noise: torch.Tensor
    generators: list[torch.Generator]

    def unet_embeddings(self, dtype: torch.dtype) -> torch.Tensor:
        """The UNet's text batch in ``dtype``: ``(2N, seq, hidden)`` ``[uncond] * N + cond``
        with guidance, ``(N, seq, hidden)`` ``cond`` without.

        Args:
            dtype: The UNet's dtype.
        """
        if self.uncond is None:
            return self.cond.to(dtype=dtype)
        uncond = self.uncond.expand(self.cond.shape[0], -1, -1)
        return torch.cat([uncond, self.cond]).to(dtype=dtype)


def batch_conditioning(
    pipeline: RiffusionPipeline,
    starts: Sequence[PromptInput],
    latent_shape: tuple[int, ...],
    expansions: Mapping[str, str],
    timer: Timer,
) -> BatchConditioning:
    """Each item's prompt embeddings and noise, as a single generation computes them.

    Args:
        pipeline: Its tokenizer, text encoder and textual-inversion tokens are used.
        starts: Checked items (:func:`check_batch`).
        latent_shape: One item's latent shape ``(1, 4, h, w)``.
        expansions: The pipeline's textual-inversion tokens.
        timer: Accumulates the ``text_encoder`` time.

    Raises:
        ParameterError: If the prompts do not all have the same number of 75-token chunks (their
            embeddings could not share one UNet batch without padding, which changes them).
    """
    tokenizer, text_encoder, device = pipeline.tokenizer, pipeline.text_encoder, pipeline.device
    chunks = [tokenize_prompt(tokenizer, s.prompt, expansions).num_chunks for s in starts]
    if len(set(chunks)) > 1:
        raise ParameterError(
            f"the prompts of a batch have {chunks} chunks of 75 tokens: every prompt of one batch "
            "must have the same number (generate the longer ones on their own)"
        )
    first = starts[0]
    uncond = None
    conds = []
    with timer("text_encoder"):
        for index, start in enumerate(starts):
            if index == 0 and uses_guidance(first.guidance):
                # encode_prompt's cond is bitwise encode_conditional's; the negative prompt is
                # padded to the (shared) chunk count, so the first item's serves them all.
                cond, uncond = encode_prompt(
                    tokenizer, text_encoder, start.prompt, first.negative_prompt,
                    device=device, expansions=expansions,
                )  # fmt: skip
            else:
                cond = encode_conditional(
                    tokenizer, text_encoder, start.prompt, device=device, expansions=expansions
                )
            conds.append(cond)
    generators = [cpu_generator(start.seed) for start in starts]
    noise = torch.cat([randn(latent_shape, generator=g) for g in generators])
    return BatchConditioning(torch.cat(conds), uncond, noise, generators)


def _run_batch(
    pipeline: RiffusionPipeline,
    starts: Sequence[PromptInput],
    init_image: Image.Image | None,
    mask_image: Image.Image | None,
    steps: int,
    size: tuple[int, int],
    timer: Timer,
    expansions: Mapping[str, str],
    progress_bar_config: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Steps 1 to 4 of the module docstring; returns each item's GenerationResult fields."""
    dtype = pipeline.dtype
    width, height = size
    latent_shape = (1, int(pipeline.unet.config.in_channels), height // 8, width // 8)
    mix = batch_conditioning(pipeline, starts, latent_shape, expansions, timer)
    first = starts[0]
    denoising = first.denoising if init_image is not None else 1.0
    latents, timesteps = sample_latents(
        pipeline,
        mix.noise,
        mix.unet_embeddings(dtype),
        init_image=init_image,
        mask_image=mask_image,
        denoising=denoising,
        guidance=first.guidance,
        steps=steps,
        generators=mix.generators,
        timer=timer,
        progress_bar_config=progress_bar_config,
    )
    with timer("vae_decode"):
        images = [pipeline.decode_latents(latents[i : i + 1]) for i in range(len(starts))]
    shared = {
        "alpha": 0.0,
        "denoising": float(denoising),
        "guidance": float(first.guidance),
        "timesteps": tuple(round(float(t)) for t in timesteps),
    }
    return [
        {"image": image, "seeds": (start.seed,), **shared}
        for image, start in zip(images, starts, strict=True)
    ]


def generate_batch(
    pipeline: RiffusionPipeline,
    starts: Sequence[PromptInput],
    *,
    init_image: Image.Image | None,
    mask_image: Image.Image | None,
    num_inference_steps: int,
    width: int,
    height: int,
    periodic: bool = False,
    expansions: Mapping[str, str] | None = None,
    progress_bar_config: Mapping[str, Any] | None = None,
    release: Callable[[], None] = lambda: None,
) -> list[GenerationResult]:
    """Run ``len(starts)`` checked generations in one UNet batch (see the module docstring).

    Arguments are those of :meth:`BatchingMixin.riffuse_batch`, already checked.

    Args:
        pipeline: The pipeline whose components run.
        starts: 1 to :data:`MAX_BATCH_SIZE` prompt inputs differing only in prompt and seed.
        init_image: The shared seed image for img2img, or ``None`` for text-to-image.
        mask_image: The shared mask (white = regenerate), or ``None``.
        num_inference_steps: Scheduler steps of a full run.
        width: Output width in pixels, a multiple of 8 (the init image's, if given).
        height: Output height in pixels, same rules.
        periodic: Circular padding along the width in the UNet and VAE during the run.
        expansions: The pipeline's textual-inversion tokens.
        progress_bar_config: tqdm keyword arguments of the step progress bar.
        release: Called when the run ends, also on error (the pipeline's CPU offload).

    Returns:
        One :class:`~riffusion.models.sd1.generation.GenerationResult` per item, in order;
        each carries the whole batch's ``timings_s``.

    Raises:
        ParameterError: If the prompts have different numbers of 75-token chunks.
        RiffusionError: If the batch produced NaN/inf (float16 overflow).
        GenerationCancelled: If ``pipeline.interrupt`` was set during the run.
    """
    timer = Timer(pipeline.device)
    started = time.perf_counter()
    try:
        with periodic_width(pipeline.unet, pipeline.vae, enabled=periodic):
            items = _run_batch(
                pipeline,
                starts,
                init_image,
                mask_image,
                num_inference_steps,
                (width, height),
                timer,
                expansions or {},
                progress_bar_config or {},
            )
    finally:
        release()
    timer.totals["total"] = time.perf_counter() - started
    return [GenerationResult(timings_s=dict(timer.totals), **item) for item in items]


class BatchingMixin:
    """:meth:`riffuse_batch`, the batched generation of
    :class:`~riffusion.models.sd1.pipeline.RiffusionPipeline` (which provides
    ``check_inputs``, the components, ``_token_expansions``, ``_progress_bar_config``,
    ``_interrupt`` and ``_offload_all()``)."""

    _token_expansions: dict[str, str]
    _progress_bar_config: dict[str, Any]
    _interrupt: bool
    _offload_all: Callable[[], None]

    @torch.inference_mode()
    def riffuse_batch(
        self,
        starts: Sequence[PromptInput],
        *,
        init_image: Image.Image | None = None,
        mask_image: Image.Image | None = None,
        num_inference_steps: int = 50,
        width: int | None = None,
        height: int | None = None,
        periodic: bool = False,
    ) -> list[GenerationResult]:
        """Generate one image per item of ``starts`` in one UNet batch.

        The items share everything but prompt and seed: ``negative_prompt``, ``denoising`` and
        ``guidance`` must be equal, and the seed image, mask, steps, size, scheduler and
        adapters are the call's. Item ``i`` starts from the same noise (and meets the same
        per-step noise) as ``riffuse(starts[i], ...)``; its image differs from that one only
        by the UNet's summation order over a larger batch (on the tiny CPU test model: at
        most 1 grey level, in a few pixels). ``N`` items cost ``2N`` UNet samples per step
        with guidance > 1, ``N`` without. There is no step callback; setting
        ``pipeline.interrupt = True`` (from another thread) cancels the whole batch.

        Args:
            starts: 1 to :data:`MAX_BATCH_SIZE` :class:`~riffusion.inputs.PromptInput` values,
                differing only in ``prompt`` and ``seed``; prompts of the same number of
                75-token chunks.
            init_image: The shared seed image for img2img (sides multiples of 8), or ``None``
                for text-to-image.
            mask_image: Requires ``init_image`` and its size; white = regenerate.
            num_inference_steps: Scheduler steps of a full run.
            width: Output width in pixels, as in ``riffuse``.
            height: Output height in pixels, as in ``riffuse``.
            periodic: Seamless along the width (circular padding in the UNet and VAE).

        Returns:
            One :class:`~riffusion.models.sd1.generation.GenerationResult` per item, in order.

        Raises:
            ParameterError: For any invalid argument, before any model runs (a batch outside
                [1, 64] items, items differing in more than prompt and seed, and every check of
                ``riffuse``), or prompts of different chunk counts.
            RiffusionError: If the generation produced NaN/inf (float16 overflow).
            GenerationCancelled: If ``interrupt`` was set during the run.
        """
        items = check_batch(starts)
        size = (0, 0)
        for start in items:
            size = self.check_inputs(  # type: ignore[attr-defined]  # the pipeline's
                start=start,
                end=None,
                alpha=0.0,
                init_image=init_image,
                mask_image=mask_image,
                num_inference_steps=num_inference_steps,
                width=width,
                height=height,
                periodic=periodic,
            )
        self._interrupt = False
        return generate_batch(
            self,  # type: ignore[arg-type]  # the mixin only ever runs as a RiffusionPipeline
            items,
            init_image=init_image,
            mask_image=mask_image,
            num_inference_steps=num_inference_steps,
            width=size[0],
            height=size[1],
            periodic=periodic,
            expansions=self._token_expansions,
            progress_bar_config=self._progress_bar_config,
            release=self._offload_all,
        )
