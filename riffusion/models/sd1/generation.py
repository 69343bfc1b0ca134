"""One generation: prompts (and an optional seed image) in, an RGB image out.

:class:`GenerationMixin` gives :class:`~riffusion.models.sd1.pipeline.RiffusionPipeline` its
generation methods (``riffuse``, ``img2img``, ``text_to_image`` and the building blocks
``check_inputs``, ``encode_prompt``, ``encode_image``, ``decode_latents``). ``riffuse`` checks
every argument before any model runs (:mod:`riffusion.models.sd1.validation`), then
:func:`generate` runs, in order:

1. the text embeddings and the starting noise (mixed between two prompt inputs when
   interpolating); the negative prompt's only with classifier-free guidance (guidance > 1);
2. img2img: the seed image's VAE latents, and the mask on the latent grid;
3. the scheduler's timesteps, the starting latents and the explicit denoising loop of
   :mod:`riffusion.models.sd1.denoising`, with the step callback after every step;
4. the VAE decode to an 8-bit RGB image.

This layer knows pixels, latents and embeddings; it knows nothing about audio.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from riffusion.errors import GenerationCancelled, ParameterError, RiffusionError
from riffusion.inputs import PromptInput, check_alpha
from riffusion.models.sd1 import prompt_encoding, vae
from riffusion.models.sd1.denoising import (
    SeedMask,
    Timer,
    conditioning,
    denoise,
    denoising_timesteps,
    initial_latents,
    step_kwargs,
)
from riffusion.models.sd1.masks import mask_to_latent
from riffusion.models.sd1.periodic import periodic_width
from riffusion.models.sd1.prompt_weighting import WeightedTokens
from riffusion.models.sd1.validation import check_callback, check_inputs

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, SchedulerMixin, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from riffusion.models.sd1.pipeline import RiffusionPipeline

__all__ = [
    "GenerationMixin",
    "GenerationResult",
    "StepCallback",
    "generate",
    "raise_if_interrupted",
    "sample_latents",
]

StepCallback = Callable[["RiffusionPipeline", int, Any, dict[str, Any]], "dict[str, Any] | None"]
"""``callback_on_step_end(pipeline, step, timestep, callback_kwargs)``, as in diffusers.

Called after each denoising step with the 0-based ``step`` index, the scheduler ``timestep`` and
``callback_kwargs = {"latents": latents, "num_steps": n}``. It may return a dict whose
``"latents"`` replaces the current latents, and it may set ``pipeline.interrupt = True`` (or
raise :class:`~riffusion.errors.GenerationCancelled`) to stop the run before the next step.
"""


@dataclass(frozen=True)
class GenerationResult:
    """The output of one generation.

    Attributes:
        image: The generated image, PIL mode ``"RGB"``, ``width x height`` pixels.
        alpha: The interpolation weight used, in [0, 1].
        seeds: ``(start.seed,)`` or ``(start.seed, end.seed)`` when an end prompt was given.
        denoising: The (mixed) img2img strength in [0, 1]; 1.0 for text-to-image.
        guidance: The (mixed) classifier-free guidance scale.
        timesteps: The scheduler timesteps actually run, in order (empty for denoising 0).
        timings_s: Wall-clock seconds spent in ``text_encoder``, ``vae_encode``, ``unet`` (all
            steps), ``vae_decode`` and in the whole call (``total``).
    """

    image: Image.Image
    alpha: float
    seeds: tuple[int, ...]
    denoising: float
    guidance: float
    timesteps: tuple[int, ...]
    timings_s: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.image, Image.Image) or self.image.mode != "RGB":
            raise ParameterError(f"image={self.image!r} must be a PIL image in mode 'RGB'")
        check_alpha(self.alpha)
        check_alpha(self.denoising, name="denoising")


def raise_if_interrupted(pipeline: RiffusionPipeline, done: int, total: int) -> None:
    """Raise (and clear the flag) if ``pipeline.interrupt`` was set.

    Args:
        pipeline: The running pipeline.
        done: Steps taken so far.
        total: Steps of the run.

    Raises:
        GenerationCancelled: If the flag was set.
    """
    if pipeline.interrupt:
        pipeline.interrupt = False
        raise GenerationCancelled(f"generation cancelled after {done} of {total} steps")


def _check_finite(latents: torch.Tensor, dtype: torch.dtype) -> None:
    if not torch.isfinite(latents).all():
        raise RiffusionError(
            f"denoising produced NaN/inf latents in dtype={dtype}; retry with "
            "torch_dtype=torch.float32 or a lower guidance"
        )


def _seed(
    pipeline: RiffusionPipeline,
    init_image: Image.Image | None,
    mask_image: Image.Image | None,
    latent_shape: tuple[int, ...],
    timer: Timer,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The seed image's ``(1, 4, h, w)`` latents and the ``(1, 1, h, w)`` mask, or ``None``s."""
    init_latents = None
    if init_image is not None:
        with timer("vae_encode"):
            init_latents = pipeline.encode_image(init_image)
    mask = None
    if mask_image is not None:
        h, w = latent_shape[2:]
        mask = mask_to_latent(
            mask_image,
            latent_height=h,
            latent_width=w,
            device=pipeline.device,
            dtype=pipeline.dtype,
        )
    return init_latents, mask


def sample_latents(
    pipeline: RiffusionPipeline,
    noise: torch.Tensor,
    embeddings: torch.Tensor,
    *,
    init_image: Image.Image | None,
    mask_image: Image.Image | None,
    denoising: float,
    guidance: float,
    steps: int,
    generators: torch.Generator | list[torch.Generator],
    timer: Timer,
    on_step_end: Callable[..., Any] | None = None,
    progress_bar_config: Mapping[str, Any],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 2 and 3 of the module docstring for ``N`` items that share everything but their
    noise and prompt embeddings: seed image and mask, timesteps, the denoising loop.

    Args:
        pipeline: Its UNet, VAE, scheduler, device and dtype are used.
        noise: ``(N, 4, h, w)`` starting noise (any device and dtype).
        embeddings: The UNet's prompt embeddings of the ``N`` items (uncond first with guidance).
        init_image: Seed image of every item, or ``None`` for text-to-image.
        mask_image: Its mask (white = regenerate), or ``None``.
        denoising: Share of the schedule run on the seed image (img2img only).
        guidance: Classifier-free guidance scale.
        steps: Scheduler steps of a full run.
        generators: The per-step noise generator, or one per item.
        timer: Accumulates ``vae_encode`` and ``unet`` times.
        on_step_end: Called after each step (see :func:`denoise`), or ``None``.
        progress_bar_config: tqdm keyword arguments of the step progress bar.

    Returns:
        ``(latents, timesteps)``: the ``(N, 4, h, w)`` denoised latents and the timesteps run.

    Raises:
        RiffusionError: If the latents contain NaN or inf.
    """
    device, dtype = pipeline.device, pipeline.dtype
    img2img = init_image is not None
    init_latents, mask = _seed(pipeline, init_image, mask_image, tuple(noise.shape), timer)
    noise = noise.to(device=device, dtype=dtype)
    if init_latents is not None:
        init_latents = init_latents.expand(noise.shape[0], -1, -1, -1)  # a view for N = 1
    seed_mask = None
    if mask is not None and init_latents is not None:
        seed_mask = SeedMask(mask, init_latents, noise)
    scheduler = pipeline.scheduler
    timesteps = denoising_timesteps(scheduler, steps, denoising, img2img=img2img, device=device)
    latents = initial_latents(scheduler, noise, init_latents, timesteps)
    latents = denoise(
        pipeline.unet,
        scheduler,
        latents,
        embeddings,
        timesteps,
        guidance=guidance,
        timer=timer,
        extra_step_kwargs=step_kwargs(scheduler, generators),
        seed_mask=seed_mask,
        on_step_end=on_step_end,
        check_interrupt=functools.partial(raise_if_interrupted, pipeline),
        progress_bar_config=progress_bar_config,
    )
    _check_finite(latents, dtype)
    return latents, timesteps


def _run(
    pipeline: RiffusionPipeline,
    start: PromptInput,
    end: PromptInput | None,
    alpha: float,
    init_image: Image.Image | None,
    mask_image: Image.Image | None,
    steps: int,
    width: int,
    height: int,
    timer: Timer,
    callback_on_step_end: StepCallback | None,
    expansions: Mapping[str, str],
    progress_bar_config: Mapping[str, Any],
) -> dict[str, Any]:
    """Steps 1 to 4 of the module docstring; returns the fields of a GenerationResult."""
    device, dtype = pipeline.device, pipeline.dtype
    latent_shape = (1, int(pipeline.unet.config.in_channels), height // 8, width // 8)
    mix = conditioning(
        start,
        end,
        alpha,
        latent_shape,
        tokenizer=pipeline.tokenizer,
        text_encoder=pipeline.text_encoder,
        expansions=expansions,
        device=device,
        timer=timer,
    )
    denoising = mix.denoising if init_image is not None else 1.0
    on_step_end = None
    if callback_on_step_end is not None:
        on_step_end = functools.partial(callback_on_step_end, pipeline)
    latents, timesteps = sample_latents(
        pipeline,
        mix.noise,
        mix.unet_embeddings(dtype),
        init_image=init_image,
        mask_image=mask_image,
        denoising=denoising,
        guidance=mix.guidance,
        steps=steps,
        generators=mix.generator,
        timer=timer,
        on_step_end=on_step_end,
        progress_bar_config=progress_bar_config,
    )
    with timer("vae_decode"):
        image = pipeline.decode_latents(latents)
    return {
        "image": image,
        "alpha": alpha,
        "seeds": (start.seed,) if end is None else (start.seed, end.seed),
        "denoising": float(denoising),
        "guidance": float(mix.guidance),
        "timesteps": tuple(round(float(t)) for t in timesteps),
    }


def generate(
    pipeline: RiffusionPipeline,
    start: PromptInput,
    end: PromptInput | None,
    alpha: float,
    init_image: Image.Image | None,
    mask_image: Image.Image | None,
    num_inference_steps: int,
    width: int,
    height: int,
    periodic: bool,
    callback_on_step_end: StepCallback | None = None,
    *,
    expansions: Mapping[str, str] | None = None,
    progress_bar_config: Mapping[str, Any] | None = None,
    release: Callable[[], None] = lambda: None,
) -> GenerationResult:
    """Run one checked generation on ``pipeline`` (arguments as its ``riffuse``, validated).

    Args:
        pipeline: The pipeline whose components run; step callbacks receive it.
        start: The start prompt input.
        end: The end prompt input, or ``None``.
        alpha: Interpolation weight in [0, 1], a float.
        init_image: Seed image for img2img, or ``None`` for text-to-image.
        mask_image: Mask of ``init_image``'s size (white = regenerate), or ``None``.
        num_inference_steps: Scheduler steps of a full run.
        width: Output width in pixels, a multiple of 8 (the init image's, if given).
        height: Output height in pixels, same rules.
        periodic: Circular padding along the width in the UNet and VAE during the run.
        callback_on_step_end: See :data:`StepCallback`.
        expansions: The pipeline's textual-inversion tokens.
        progress_bar_config: tqdm keyword arguments of the step progress bar.
        release: Called when the run ends, also on error (the pipeline's CPU offload).

    Returns:
        The image, the mixed parameters and the timings.
    """
    timer = Timer(pipeline.device)
    started = time.perf_counter()
    try:
        with periodic_width(pipeline.unet, pipeline.vae, enabled=periodic):
            fields = _run(
                pipeline,
                start,
                end,
                alpha,
                init_image,
                mask_image,
                num_inference_steps,
                width,
                height,
                timer,
                callback_on_step_end,
                expansions or {},
                progress_bar_config or {},
            )
    finally:
        release()
    timer.totals["total"] = time.perf_counter() - started
    return GenerationResult(timings_s=dict(timer.totals), **fields)


class GenerationMixin:
    """The generation methods of :class:`~riffusion.models.sd1.pipeline.RiffusionPipeline`.

    They delegate to the functions of this module, :mod:`~riffusion.models.sd1.denoising`,
    :mod:`~riffusion.models.sd1.prompt_encoding` and :mod:`~riffusion.models.sd1.vae`, handing
    them the pipeline's components. The pipeline provides the attributes below, ``device``,
    ``dtype``, ``interrupt`` and ``_offload_all()``.
    """

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: SchedulerMixin
    _token_expansions: dict[str, str]
    _progress_bar_config: dict[str, Any]
    _interrupt: bool
    _offload_all: Callable[[], None]

    if TYPE_CHECKING:  # the pipeline's read-only properties

        @property
        def device(self) -> torch.device: ...

        @property
        def dtype(self) -> torch.dtype: ...

    # ------------------------------------------------------------------ building blocks

    def _tokenize(self, prompt: str) -> WeightedTokens:
        return prompt_encoding.tokenize_prompt(self.tokenizer, prompt, self._token_expansions)

    @torch.inference_mode()
    def encode_prompt(
        self, prompt: str, negative_prompt: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a (weighted) prompt and its negative prompt.

        Args:
            prompt: The prompt; up to 3 x 75 tokens.
            negative_prompt: ``None`` means the empty prompt. Padded with empty chunks or
                truncated to the prompt's number of 77-token chunks.

        Returns:
            ``(cond, uncond)``, each ``(1, num_chunks * 77, hidden)`` in the pipeline's dtype on
            its device.

        Raises:
            ParameterError: If a prompt is not a str or is too long.
        """
        return prompt_encoding.encode_prompt(
            self.tokenizer,
            self.text_encoder,
            prompt,
            negative_prompt,
            device=self.device,
            expansions=self._token_expansions,
        )

    @torch.inference_mode()
    def encode_image(self, image: Image.Image) -> torch.Tensor:
        """Encode an image to scaled latents with the VAE (the posterior mean, no sampling).

        Args:
            image: PIL image, any mode convertible to RGB, sides multiples of 8.

        Returns:
            ``(1, 4, H/8, W/8)`` latents, ``(mean - shift_factor) * vae.config.scaling_factor``,
            in the pipeline's dtype on its device; see
            :func:`riffusion.models.sd1.vae.encode_image`.
        """
        return vae.encode_image(self.vae, image, device=self.device, dtype=self.dtype)

    @torch.inference_mode()
    def decode_latents(self, latents: torch.Tensor) -> Image.Image:
        """Decode scaled latents ``(1, 4, h, w)`` to an RGB PIL image of ``8w x 8h`` pixels.

        Args:
            latents: float tensor ``(1, 4, h, w)``, already divided by the VAE scaling factor.

        Raises:
            RiffusionError: If the decoded image contains NaN or inf (e.g. float16 overflow).
        """
        return vae.decode_latents(self.vae, latents, device=self.device, dtype=self.dtype)

    def check_inputs(
        self,
        *,
        start: Any,
        end: Any,
        alpha: Any,
        init_image: Any,
        mask_image: Any,
        num_inference_steps: Any,
        width: Any,
        height: Any,
        periodic: Any,
    ) -> tuple[int, int]:
        """Validate every argument of :meth:`riffuse` before any model runs.

        Args:
            start: ``start`` of :meth:`riffuse`, unchecked.
            end: ``end`` of :meth:`riffuse`, unchecked.
            alpha: ``alpha`` of :meth:`riffuse`, unchecked.
            init_image: ``init_image`` of :meth:`riffuse`, unchecked.
            mask_image: ``mask_image`` of :meth:`riffuse`, unchecked.
            num_inference_steps: ``num_inference_steps`` of :meth:`riffuse`, unchecked.
            width: ``width`` of :meth:`riffuse`, unchecked.
            height: ``height`` of :meth:`riffuse`, unchecked.
            periodic: ``periodic`` of :meth:`riffuse`, unchecked.

        Returns:
            The output ``(width, height)`` in pixels.

        Raises:
            ParameterError: Naming the bad argument and its value.
        """
        return check_inputs(
            start=start,
            end=end,
            alpha=alpha,
            init_image=init_image,
            mask_image=mask_image,
            num_inference_steps=num_inference_steps,
            width=width,
            height=height,
            periodic=periodic,
            tokenize=self._tokenize,
            num_train_timesteps=self.scheduler.config.num_train_timesteps,
        )

    # ------------------------------------------------------------------ generation

    @torch.inference_mode()
    def riffuse(
        self,
        start: PromptInput,
        end: PromptInput | None = None,
        alpha: float = 0.0,
        *,
        init_image: Image.Image | None = None,
        mask_image: Image.Image | None = None,
        num_inference_steps: int = 50,
        width: int | None = None,
        height: int | None = None,
        periodic: bool = False,
        callback_on_step_end: StepCallback | None = None,
    ) -> GenerationResult:
        """Generate one image, optionally interpolating between two prompts.

        At ``alpha`` in [0, 1]: text embeddings (and negative embeddings) are mixed linearly,
        the noise of the two seeds spherically, denoising strength and guidance linearly. The
        mixed guidance decides for the whole run: above 1 classifier-free guidance (UNet batch
        of two, ``[negative, prompt]``); at or below 1 the prompt's prediction alone (batch of
        one, negative prompts not encoded), as diffusers' ``guidance_scale <= 1``.
        ``alpha=0`` (or ``end=None``) reproduces the start-only generation bitwise, ``alpha=1``
        the end-only one. The steps are those of :func:`generate`.

        Args:
            start: The start prompt input.
            end: The end prompt input, or ``None`` for start only (then alpha must be 0).
            alpha: Interpolation weight in [0, 1].
            init_image: Seed image for img2img (any mode convertible to RGB, sides multiples of
                8); ``None`` for text-to-image (denoising is then ignored).
            mask_image: Requires ``init_image`` and its size; white = regenerate, black = keep.
            num_inference_steps: Scheduler steps for a full run (img2img runs
                ``int(steps * denoising)`` of them).
            width: Output width in pixels, a positive multiple of 8; default 512, or the init
                image's width (which it must then equal).
            height: Output height, same rules as ``width``.
            periodic: Make the image seamless along its width (circular padding in the UNet
                and VAE).
            callback_on_step_end: Called after every denoising step as
                ``callback(pipeline, step, timestep, callback_kwargs)`` (see
                :data:`StepCallback`); set ``pipeline.interrupt = True`` in it to cancel.

        Returns:
            A :class:`GenerationResult`.

        Raises:
            ParameterError: For any invalid argument (checked before any model runs).
            RiffusionError: If the generation produced NaN/inf (float16 overflow).
            GenerationCancelled: If ``interrupt`` was set during the run.
        """
        width, height = self.check_inputs(
            start=start,
            end=end,
            alpha=alpha,
            init_image=init_image,
            mask_image=mask_image,
            num_inference_steps=num_inference_steps,
            width=width,
            height=height,
            periodic=periodic,
        )
        check_callback(callback_on_step_end)
        self._interrupt = False
        return self._generate(
            start,
            end,
            float(alpha),
            init_image,
            mask_image,
            num_inference_steps,
            width,
            height,
            periodic,
            callback_on_step_end,
        )

    def _generate(
        self,
        start: PromptInput,
        end: PromptInput | None,
        alpha: float,
        init_image: Image.Image | None,
        mask_image: Image.Image | None,
        num_inference_steps: int,
        width: int,
        height: int,
        periodic: bool,
        callback_on_step_end: StepCallback | None,
    ) -> GenerationResult:
        # riffuse's arguments, checked; the pipeline's settings come from its private state.
        return generate(
            self,  # type: ignore[arg-type]  # the mixin only ever runs as a RiffusionPipeline
            start,
            end,
            alpha,
            init_image,
            mask_image,
            num_inference_steps,
            width,
            height,
            periodic,
            callback_on_step_end,
            expansions=self._token_expansions,
            progress_bar_config=self._progress_bar_config,
            release=self._offload_all,
        )

    def img2img(
        self,
        prompt: str,
        init_image: Image.Image,
        *,
        denoising: float = 0.75,
        guidance: float = 7.0,
        negative_prompt: str | None = None,
        seed: int = 0,
        num_inference_steps: int = 50,
        mask_image: Image.Image | None = None,
        periodic: bool = False,
    ) -> GenerationResult:
        """Regenerate ``init_image`` guided by ``prompt``; see :meth:`riffuse` for details.

        ``denoising`` in [0, 1]: 0 returns the VAE round trip of the image, 1 ignores it.

        Args:
            prompt: text prompt (``(word:1.3)`` weights allowed).
            init_image: the image to regenerate (PIL, sides multiples of 8 pixels).
            denoising: img2img strength in [0, 1].
            guidance: classifier-free guidance scale, >= 0 (<= 1: no guidance, the
                prompt's prediction alone, the negative prompt unused).
            negative_prompt: what to steer away from.
            seed: noise seed in [0, 2**63).
            num_inference_steps: scheduler steps of a full run.
            mask_image: ``L`` mask (white = regenerate), or ``None``.
            periodic: generate with circular padding along the width (a seamless loop).
        """
        start = PromptInput(
            prompt=prompt,
            seed=seed,
            negative_prompt=negative_prompt,
            denoising=denoising,
            guidance=guidance,
        )
        return self.riffuse(
            start,
            init_image=init_image,
            mask_image=mask_image,
            num_inference_steps=num_inference_steps,
            periodic=periodic,
        )

    def text_to_image(
        self,
        prompt: str,
        *,
        seed: int = 0,
        guidance: float = 7.0,
        negative_prompt: str | None = None,
        num_inference_steps: int = 50,
        width: int = 512,
        height: int = 512,
        periodic: bool = False,
    ) -> GenerationResult:
        """Generate a ``width x height`` image from ``prompt``; see :meth:`riffuse`.

        Args:
            prompt: text prompt (``(word:1.3)`` weights allowed).
            seed: noise seed in [0, 2**63).
            guidance: classifier-free guidance scale, >= 0 (<= 1: no guidance, the
                prompt's prediction alone, the negative prompt unused).
            negative_prompt: what to steer away from.
            num_inference_steps: scheduler steps.
            width: image width in pixels (multiple of 8; 512 columns = 5.11 s).
            height: image height in pixels (multiple of 8; 512 mel rows).
            periodic: generate with circular padding along the width (a seamless loop).
        """
        start = PromptInput(
            prompt=prompt, seed=seed, negative_prompt=negative_prompt, guidance=guidance
        )
        return self.riffuse(
            start,
            num_inference_steps=num_inference_steps,
            width=width,
            height=height,
            periodic=periodic,
        )
