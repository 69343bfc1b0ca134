"""The riffusion diffusion pipeline: prompts (and an optional seed image) in, an RGB image out.

The denoising loop is written out explicitly, in the order diffusers' Stable Diffusion img2img
pipeline uses:

1. encode the prompt and the negative prompt (with weights and long-prompt chunking);
2. draw the starting noise on CPU generators seeded with the seeds (slerp-mixed between the two
   seeds when interpolating);
3. text-to-image: start from ``noise * scheduler.init_noise_sigma`` over all timesteps;
   img2img: encode the seed image with the VAE, skip the first ``1 - denoising`` fraction of
   the timesteps and ``scheduler.add_noise`` the seed latents to the first remaining one;
4. for each timestep: ``scale_model_input``, UNet on ``[unconditional, conditional]``,
   classifier-free guidance, ``scheduler.step``, and with a mask, overwrite the kept region with
   the seed latents re-noised to the next timestep;
5. VAE decode and convert to an 8-bit RGB PIL image.

This layer knows pixels, latents and embeddings; it knows nothing about audio.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, SchedulerMixin, UNet2DConditionModel
from PIL import Image
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTokenizer

from riffusion.diffusion.devices import cpu_generator, randn, resolve_device
from riffusion.diffusion.interpolation import PromptInput, check_alpha, lerp, slerp
from riffusion.diffusion.loading import (
    DEFAULT_MODEL,
    load_components,
    load_single_file,
    resolve_model_folder,
)
from riffusion.diffusion.masks import mask_to_latent
from riffusion.diffusion.periodic import periodic_width
from riffusion.diffusion.prompt_weighting import (
    WeightedTokens,
    encode_chunks,
    pad_chunks,
    tokenize_weighted,
)
from riffusion.diffusion.schedulers import (
    SCHEDULER_NAMES,
    build_scheduler,
    describe_scheduler,
    make_scheduler,
)
from riffusion.errors import DeviceError, GenerationCancelled, ParameterError, RiffusionError

__all__ = ["GenerationResult", "RiffusionPipeline", "StepCallback"]

StepCallback = Callable[["RiffusionPipeline", int, Any, dict[str, Any]], "dict[str, Any] | None"]
"""``callback_on_step_end(pipeline, step, timestep, callback_kwargs)``, as in diffusers.

Called after each denoising step with the 0-based ``step`` index, the scheduler ``timestep`` and
``callback_kwargs = {"latents": latents, "num_steps": n}``. It may return a dict whose
``"latents"`` replaces the current latents, and it may set ``pipeline.interrupt = True`` (or
raise :class:`~riffusion.errors.GenerationCancelled`) to stop the run before the next step.
"""

#: Keys of :attr:`GenerationResult.timings_s`.
TIMING_KEYS = ("text_encoder", "vae_encode", "unet", "vae_decode", "total")


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


@dataclass(frozen=True)
class _Conditioning:
    """Everything that differs between a single and an interpolated generation."""

    cond: torch.Tensor  # (1, seq, hidden)
    uncond: torch.Tensor  # (1, seq, hidden)
    noise: torch.Tensor  # (1, 4, h, w) float32 on the CPU
    generator: torch.Generator  # CPU generator for stochastic scheduler steps
    denoising: float
    guidance: float


class _Timer:
    """Accumulates wall time per named phase; synchronises CUDA so GPU work is attributed."""

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


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_size(name: str, value: Any) -> int:
    if not _is_int(value) or value <= 0 or value % 8:
        raise ParameterError(f"{name}={value!r} must be a positive multiple of 8")
    return int(value)


class RiffusionPipeline:
    """Stable Diffusion 1.x for riffusion: text-to-image, img2img, masks, prompt interpolation.

    Build it with :meth:`from_pretrained`. Follows diffusers conventions: :meth:`to` moves it and
    returns it, :attr:`scheduler` can be replaced by any diffusers scheduler (or by name with
    :meth:`set_scheduler`), :meth:`enable_model_cpu_offload` and
    :meth:`set_progress_bar_config` work as in diffusers. Not thread-safe: the scheduler holds
    per-run state.

    Attributes:
        unet: The denoising ``UNet2DConditionModel``.
        vae: The ``AutoencoderKL`` (factor 8: ``H x W`` pixels <-> ``4 x H/8 x W/8`` latents).
        text_encoder: The ``CLIPTextModel``.
        tokenizer: The ``CLIPTokenizer`` (77 positions).
    """

    def __init__(
        self,
        *,
        unet: UNet2DConditionModel,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        scheduler: SchedulerMixin,
    ) -> None:
        self.unet = unet
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        # "default" restores the checkpoint's own scheduler.
        self._default_scheduler = (type(scheduler), dict(scheduler.config))
        self._device = unet.device
        self._dtype = unet.dtype
        self._sequential_offload = False
        self._token_expansions: dict[str, str] = {}  # textual inversion: token -> tokens
        self._textual_inversions: list[tuple[str, str]] = []  # (absolute file, token), in order
        self._offload_hooks: list[Any] = []
        self._progress_bar_config: dict[str, Any] = {}
        self._interrupt = False
        self._lora: tuple[str, float] | None = None

    @property
    def interrupt(self) -> bool:
        """Set to ``True`` (from a step callback or another thread) to stop the current run.

        The denoising loop checks it before each step and after each step callback and raises
        :class:`~riffusion.errors.GenerationCancelled`; every call of :meth:`riffuse` starts with
        it cleared.
        """
        return self._interrupt

    @interrupt.setter
    def interrupt(self, value: bool) -> None:
        self._interrupt = bool(value)

    # ------------------------------------------------------------------ loading and devices

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        device: str | torch.device = "auto",
        torch_dtype: torch.dtype | str | None = None,
        local_files_only: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        revision: str | None = None,
        scheduler: str | SchedulerMixin | None = None,
        variant: str | None = None,
        use_safetensors: bool | None = None,
    ) -> RiffusionPipeline:
        """Load a Stable Diffusion 1.x checkpoint in diffusers format.

        Only ``unet``, ``vae``, ``text_encoder``, ``tokenizer`` and ``scheduler`` are read; a
        ``safety_checker`` / ``feature_extractor`` listed in model_index.json is neither needed
        nor downloaded. Safetensors weights are preferred.

        Args:
            model: Hub id (default ``"riffusion/riffusion-model-v1"``) or local folder.
            device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda[:N]"``, ``"mps"``.
            torch_dtype: Weights dtype; default float16 on CUDA, float32 elsewhere.
            local_files_only: Use the Hugging Face cache only, never the network.
            cache_dir: Hugging Face cache folder.
            revision: Hub branch, tag or commit.
            scheduler: ``None`` for the checkpoint's own, a name from
                :data:`~riffusion.diffusion.schedulers.SCHEDULER_NAMES`, or a diffusers
                scheduler instance.
            variant: Weights variant as in diffusers (``"fp16"`` reads
                ``diffusion_pytorch_model.fp16.safetensors``); ``None`` for the plain files.
            use_safetensors: As in diffusers: ``True`` safetensors only, ``False`` ``.bin``
                only, ``None`` safetensors where present.

        Returns:
            The pipeline, on ``device``.

        Raises:
            ModelLoadError: If the model is missing, not cached while offline, or malformed.
            DeviceError: If the requested device or dtype is not available.
            ParameterError: If ``scheduler`` is an unknown name.
        """
        target, dtype = resolve_device(device, torch_dtype)
        files: dict[str, Any] = {"variant": variant, "use_safetensors": use_safetensors}
        folder = resolve_model_folder(
            model,
            local_files_only=local_files_only,
            cache_dir=cache_dir,
            revision=revision,
            **files,
        )
        parts = load_components(folder, model=os.fspath(model), dtype=dtype, **files)
        return cls._from_parts(parts, scheduler, target, dtype)

    @classmethod
    def from_single_file(
        cls,
        path: str | os.PathLike[str],
        *,
        config: str | os.PathLike[str] | None = None,
        device: str | torch.device = "auto",
        torch_dtype: torch.dtype | str | None = None,
        local_files_only: bool = False,
        scheduler: str | SchedulerMixin | None = None,
    ) -> RiffusionPipeline:
        """Load a single-file ``.ckpt`` / ``.safetensors`` Stable Diffusion 1.x checkpoint.

        See :func:`riffusion.diffusion.loading.load_single_file` (diffusers'
        ``from_single_file``); ``config`` is a diffusers-format folder or hub id whose configs
        fit the checkpoint. Other arguments as :meth:`from_pretrained`.

        Args:
            path: the ``.ckpt`` or ``.safetensors`` file.
            config: a diffusers-format folder or hub id whose configs fit the checkpoint (``None``:
                diffusers' guess).
            device: ``"auto"``, ``"cpu"``, ``"cuda[:N]"``, ``"mps"`` or a ``torch.device``.
            torch_dtype: ``torch.float32``, ``float16``, ``bfloat16`` (or their names); ``None``
                for the device's default.
            scheduler: a scheduler name of ``SCHEDULER_NAMES`` or a scheduler instance; ``None``
                keeps the checkpoint's.
            local_files_only: never download (configs from the cache only).
        """
        target, dtype = resolve_device(device, torch_dtype)
        parts = load_single_file(
            path, config=config, dtype=dtype, local_files_only=local_files_only
        )
        return cls._from_parts(parts, scheduler, target, dtype)

    @classmethod
    def _from_parts(
        cls, parts: Any, scheduler: str | SchedulerMixin | None, target: Any, dtype: Any
    ) -> RiffusionPipeline:
        """The pipeline over loaded components, its scheduler chosen, moved to ``target``."""
        pipe = cls(
            unet=parts.unet,
            vae=parts.vae,
            text_encoder=parts.text_encoder,
            tokenizer=parts.tokenizer,
            scheduler=parts.scheduler,
        )
        if isinstance(scheduler, str):
            pipe.set_scheduler(scheduler)
        elif scheduler is not None:
            pipe.scheduler = scheduler
        return pipe.to(target, dtype)

    @property
    def device(self) -> torch.device:
        """The device the models run on (the execution device under CPU offload)."""
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        """The models' floating-point dtype."""
        return self._dtype

    def to(
        self, device: str | torch.device, dtype: torch.dtype | str | None = None
    ) -> RiffusionPipeline:
        """Move the models to ``device`` (and ``dtype``, default: keep the current one).

        Args:
            device: ``"auto"``, ``"cpu"``, ``"cuda[:N]"``, ``"mps"`` or a ``torch.device``.
            dtype: ``torch.float32``, ``float16`` or ``bfloat16`` (or their names); ``None``
                keeps the current one.

        Returns:
            ``self``.

        Raises:
            DeviceError: If the device is unavailable or CPU offload is enabled.
        """
        if self._offload_hooks or self._sequential_offload:
            raise DeviceError(
                f"device={device!r}: cannot move a pipeline with model CPU offload enabled; "
                "load a new pipeline instead"
            )
        target, resolved = resolve_device(device, self._dtype if dtype is None else dtype)
        for module in (self.unet, self.vae, self.text_encoder):
            # Passing an unchanged dtype makes diffusers warn about casting; only cast if needed.
            if module.dtype == resolved:
                module.to(device=target)
            else:
                module.to(device=target, dtype=resolved)
        self._device, self._dtype = target, resolved
        return self

    def enable_model_cpu_offload(self, device: str | torch.device = "cuda") -> RiffusionPipeline:
        """Keep models on the CPU and move each to the GPU only while it runs.

        Uses accelerate's ``cpu_offload_with_hook`` chained text_encoder -> unet -> vae: running
        one model offloads the previous one; all are offloaded after each generation. Saves GPU
        memory (the UNet alone is resident during denoising) at some speed cost.

        Args:
            device: The CUDA device to run on.

        Returns:
            ``self``.

        Raises:
            DeviceError: If CUDA is not available.
        """
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device={device!r}: enable_model_cpu_offload needs CUDA, which is not available"
            )
        target, _ = resolve_device(device, self._dtype)
        if target.type != "cuda":
            raise DeviceError(f"device={device!r} must be a CUDA device for model CPU offload")
        from accelerate import cpu_offload_with_hook

        self._remove_offload_hooks()
        hook = None
        for module in (self.text_encoder, self.unet, self.vae):
            _, hook = cpu_offload_with_hook(module, target, prev_module_hook=hook)
            self._offload_hooks.append(hook)
        self._device = target
        return self

    def _remove_offload_hooks(self) -> None:
        for hook in self._offload_hooks:
            hook.remove()
        self._offload_hooks = []

    def _offload_all(self) -> None:
        for hook in self._offload_hooks:
            hook.offload()

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """Set keyword arguments of the tqdm progress bar over denoising steps (e.g.
        ``disable=True``).

        Args:
            **kwargs: tqdm keyword arguments (``disable``, ``leave``, ``desc``, ``file``, ...).
        """
        self._progress_bar_config = dict(kwargs)

    # ------------------------------------------------------------------ LoRA

    def load_lora(self, path: str | os.PathLike[str], scale: float = 1.0) -> RiffusionPipeline:
        """Load LoRA weights (diffusers format) into the UNet and text encoder.

        One LoRA at a time: a LoRA loaded before is removed first. Uses diffusers' own LoRA
        loader (``StableDiffusionLoraLoaderMixin``), so files written by
        :func:`riffusion.training.train_lora` or by diffusers' training scripts both work.
        Needs ``peft`` (the ``train`` extra: ``pip install -e ".[train]"``).

        Args:
            path: a ``.safetensors`` file, or a folder holding
                ``pytorch_lora_weights.safetensors``.
            scale: strength (0 = off: the base model bit for bit; 1 = as trained).

        Returns:
            ``self``.

        Raises:
            ModelLoadError: missing, unreadable or non-matching weights.
            ParameterError: a non-finite ``scale``.
        """
        from riffusion.diffusion import lora

        lora.load_lora(self.unet, self.text_encoder, path, scale)
        self._lora = (os.path.abspath(lora.lora_weights_file(path)), float(scale))
        return self

    def set_lora_scale(self, scale: float) -> RiffusionPipeline:
        """Change the strength of the loaded LoRA (0 = off, 1 = as trained); returns ``self``.

        Args:
            scale: LoRA strength, a finite number (0 = off, 1 = as trained).

        Raises:
            RiffusionError: no LoRA is loaded.
        """
        from riffusion.diffusion import lora

        if self._lora is None:
            raise RiffusionError("no LoRA is loaded; call load_lora(path, scale) first")
        lora.set_lora_scale(self.unet, self.text_encoder, scale)
        self._lora = (self._lora[0], float(scale))
        return self

    def unload_lora(self) -> RiffusionPipeline:
        """Remove the loaded LoRA (if any): the base model again. Returns ``self``."""
        if self._lora is not None:
            from riffusion.diffusion import lora

            lora.unload_lora(self.unet, self.text_encoder)
            self._lora = None
        return self

    @property
    def lora(self) -> tuple[str, float] | None:
        """``(weights file, scale)`` of the loaded LoRA (the absolute path of the
        ``.safetensors`` file, also when a folder was given), or ``None``."""
        return self._lora

    @property
    def textual_inversions(self) -> tuple[tuple[str, str], ...]:
        """``(embedding file, token)`` of every textual inversion loaded, in loading order
        (absolute paths, also when a folder was given)."""
        return tuple(self._textual_inversions)

    # ------------------------------------------------------------------ schedulers

    @property
    def scheduler(self) -> SchedulerMixin:
        """The noise scheduler; assign any diffusers scheduler instance to swap it."""
        return self._scheduler

    @scheduler.setter
    def scheduler(self, value: SchedulerMixin) -> None:
        if not isinstance(value, SchedulerMixin):
            raise ParameterError(
                f"scheduler={value!r} must be a diffusers scheduler instance (SchedulerMixin); "
                f"use set_scheduler() with one of {list(SCHEDULER_NAMES)} for a name"
            )
        self._scheduler = value

    def set_scheduler(self, name: str) -> RiffusionPipeline:
        """Swap the scheduler by name, keeping the noise schedule of the current one.

        Args:
            name: ``"default"`` (the checkpoint's own), ``"ddim"``, ``"dpm++"``, ``"euler"``,
                ``"euler_ancestral"``, ``"lms"`` or ``"pndm"``.

        Returns:
            ``self``.

        Raises:
            ParameterError: If the name is unknown (the message lists the choices).
        """
        if isinstance(name, str) and name.strip().lower() == "default":
            cls, config = self._default_scheduler
            self.scheduler = cls.from_config(config)
        else:
            self.scheduler = make_scheduler(name, self.scheduler.config)
        return self

    def describe_scheduler(self) -> tuple[str, dict[str, Any]]:
        """The current scheduler as ``(name, config overrides)``, as recipes record it.

        See :func:`riffusion.diffusion.schedulers.describe_scheduler`: ``"default"`` for the
        checkpoint's own, a :data:`SCHEDULER_NAMES` name, or the diffusers class name of a
        scheduler assigned to :attr:`scheduler` directly.
        """
        cls, config = self._default_scheduler
        return describe_scheduler(self.scheduler, cls, config)

    def build_scheduler(self, name: str, overrides: dict[str, Any] | None = None) -> SchedulerMixin:
        """A fresh scheduler from ``(name, overrides)`` on this checkpoint's noise schedule;
        the pipeline's own :attr:`scheduler` is left as it is.

        Args:
            name: a scheduler name of ``SCHEDULER_NAMES`` or a diffusers scheduler class name.
            overrides: scheduler config entries to change (JSON values), or ``None``.
        """
        cls, config = self._default_scheduler
        return build_scheduler(name, overrides, cls, config)

    # ------------------------------------------------------------------ building blocks

    def _tokenize(self, prompt: str) -> WeightedTokens:
        if self._token_expansions and isinstance(prompt, str):
            for token, expansion in self._token_expansions.items():
                prompt = prompt.replace(token, expansion) if expansion != token else prompt
        return tokenize_weighted(self.tokenizer, prompt)

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
        tokens = self._tokenize(prompt)
        negative = pad_chunks(
            self._tokenize(negative_prompt or ""), tokens.num_chunks, tokenizer=self.tokenizer
        )
        return self._encode_tokens(tokens), self._encode_tokens(negative)

    def _encode_tokens(self, tokens: WeightedTokens) -> torch.Tensor:
        return encode_chunks(self.text_encoder, tokens, device=self.device)

    def _vae_scale(self) -> tuple[float, float]:
        scale = float(self.vae.config.scaling_factor)
        shift = getattr(self.vae.config, "shift_factor", None)
        return scale, float(shift or 0.0)

    @torch.inference_mode()
    def encode_image(self, image: Image.Image) -> torch.Tensor:
        """Encode an image to scaled latents with the VAE.

        Uses the mean of the VAE posterior, not a sample: deterministic, so ``denoising=0``
        gives exactly the VAE round trip of the seed image (the posterior's spread is tiny for
        Stable Diffusion's VAE anyway).

        Args:
            image: PIL image, any mode convertible to RGB, sides multiples of 8.

        Returns:
            ``(1, 4, H/8, W/8)`` latents, ``(mean - shift_factor) * vae.config.scaling_factor``,
            in the pipeline's dtype on its device.
        """
        if not isinstance(image, Image.Image):
            raise ParameterError(f"image={type(image).__name__} must be a PIL.Image.Image")
        for name, value in (("image.width", image.width), ("image.height", image.height)):
            _check_size(name, value)
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
        x = torch.from_numpy(pixels).permute(2, 0, 1)[None]
        x = x.to(device=self.device, dtype=self.dtype)
        scale, shift = self._vae_scale()
        mean = self.vae.encode(x).latent_dist.mean
        return (mean - shift) * scale

    @torch.inference_mode()
    def decode_latents(self, latents: torch.Tensor) -> Image.Image:
        """Decode scaled latents ``(1, 4, h, w)`` to an RGB PIL image of ``8w x 8h`` pixels.

        Args:
            latents: float tensor ``(1, 4, h, w)``, already divided by the VAE scaling factor.

        Raises:
            RiffusionError: If the decoded image contains NaN or inf (e.g. float16 overflow).
        """
        if not isinstance(latents, torch.Tensor) or latents.ndim != 4 or latents.shape[0] != 1:
            raise ParameterError(
                f"latents with shape {getattr(latents, 'shape', None)} must be a (1, C, h, w) "
                "tensor"
            )
        scale, shift = self._vae_scale()
        z = latents.to(device=self.device, dtype=self.dtype) / scale + shift
        decoded = self.vae.decode(z).sample[0].float()
        if not torch.isfinite(decoded).all():
            raise RiffusionError(
                f"the VAE produced NaN/inf in dtype={self.dtype}; retry with "
                "torch_dtype=torch.float32"
            )
        pixels = ((decoded / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        return Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy())

    # ------------------------------------------------------------------ validation

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
        if not isinstance(start, PromptInput):
            raise ParameterError(f"start={start!r} must be a PromptInput")
        if end is not None and not isinstance(end, PromptInput):
            raise ParameterError(f"end={end!r} must be a PromptInput or None")
        alpha = check_alpha(alpha)
        if end is None and alpha != 0.0:
            raise ParameterError(f"alpha={alpha!r} needs an end prompt; with end=None use alpha=0")
        for name, prompt_input in (("start", start), ("end", end)):
            if prompt_input is None:
                continue
            if not prompt_input.prompt.strip():
                raise ParameterError(f"{name}.prompt={prompt_input.prompt!r} must not be empty")
            # Tokenizing is cheap and catches over-long prompts before any model work.
            self._tokenize(prompt_input.prompt)
            self._tokenize(prompt_input.negative_prompt or "")
        max_steps = int(self.scheduler.config.num_train_timesteps)
        if not _is_int(num_inference_steps) or not 1 <= num_inference_steps <= max_steps:
            raise ParameterError(
                f"num_inference_steps={num_inference_steps!r} must be an int in [1, {max_steps}]"
            )
        if not isinstance(periodic, bool):
            raise ParameterError(f"periodic={periodic!r} must be a bool")

        if init_image is None:
            if mask_image is not None:
                raise ParameterError("mask_image was given without init_image; a mask needs one")
            width = 512 if width is None else width
            height = 512 if height is None else height
            return _check_size("width", width), _check_size("height", height)

        if not isinstance(init_image, Image.Image):
            raise ParameterError(
                f"init_image={type(init_image).__name__} must be a PIL.Image.Image or None"
            )
        image_w = _check_size("init_image.width", init_image.width)
        image_h = _check_size("init_image.height", init_image.height)
        for name, value, expected in (("width", width, image_w), ("height", height, image_h)):
            if value is not None and value != expected:
                raise ParameterError(
                    f"{name}={value!r} differs from the init image's {name} {expected}; omit it "
                    "or resize the image"
                )
        if mask_image is not None:
            if not isinstance(mask_image, Image.Image):
                raise ParameterError(
                    f"mask_image={type(mask_image).__name__} must be a PIL.Image.Image or None"
                )
            if mask_image.size != init_image.size:
                raise ParameterError(
                    f"mask_image.size={mask_image.size} must equal init_image.size="
                    f"{init_image.size}"
                )
        return image_w, image_h

    # ------------------------------------------------------------------ generation

    def _conditioning(
        self,
        start: PromptInput,
        end: PromptInput | None,
        alpha: float,
        shape: tuple[int, ...],
        timer: _Timer,
    ) -> _Conditioning:
        """Text embeddings, noise and scalars, mixed at ``alpha`` between ``start`` and ``end``.

        At ``alpha`` 0 or 1 only one end is computed, exactly as a single-prompt generation, so
        the interpolation endpoints are bitwise equal to the single generations.
        """
        if end is None or alpha == 0.0 or alpha == 1.0:
            single = start if end is None or alpha == 0.0 else end
            with timer("text_encoder"):
                cond, uncond = self.encode_prompt(single.prompt, single.negative_prompt)
            generator = cpu_generator(single.seed)
            noise = randn(shape, generator=generator)
            return _Conditioning(cond, uncond, noise, generator, single.denoising, single.guidance)

        tokens = [
            self._tokenize(p)
            for p in (
                start.prompt,
                end.prompt,
                start.negative_prompt or "",
                end.negative_prompt or "",
            )
        ]
        # Every sequence must have the same length to be mixed and batched: the prompts'
        # chunk count wins, negative prompts are padded or truncated to it.
        chunks = max(tokens[0].num_chunks, tokens[1].num_chunks)
        with timer("text_encoder"):
            cond_s, cond_e, uncond_s, uncond_e = (
                self._encode_tokens(pad_chunks(t, chunks, tokenizer=self.tokenizer)) for t in tokens
            )
        gen_start, gen_end = cpu_generator(start.seed), cpu_generator(end.seed)
        noise = slerp(alpha, randn(shape, generator=gen_start), randn(shape, generator=gen_end))
        return _Conditioning(
            cond=lerp(alpha, cond_s, cond_e),
            uncond=lerp(alpha, uncond_s, uncond_e),
            noise=noise,
            generator=gen_start,
            denoising=lerp(alpha, start.denoising, end.denoising),
            guidance=lerp(alpha, start.guidance, end.guidance),
        )

    def _step_kwargs(self, generator: torch.Generator) -> dict[str, Any]:
        # Only stochastic schedulers (Euler ancestral, DDIM with eta > 0, ...) take a generator.
        params = inspect.signature(self.scheduler.step).parameters
        return {"generator": generator} if "generator" in params else {}

    def _timesteps(self, steps: int, denoising: float, img2img: bool) -> torch.Tensor:
        scheduler = self.scheduler
        scheduler.set_timesteps(steps, device=self.device)
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
        the noise of the two seeds spherically, denoising strength and guidance linearly.
        ``alpha=0`` (or ``end=None``) reproduces the start-only generation bitwise, ``alpha=1``
        the end-only one.

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
        if callback_on_step_end is not None and not callable(callback_on_step_end):
            raise ParameterError(
                f"callback_on_step_end={callback_on_step_end!r} must be callable or None"
            )
        alpha = float(alpha)
        self._interrupt = False
        timer = _Timer(self.device)
        started = time.perf_counter()
        try:
            with periodic_width(self.unet, self.vae, enabled=periodic):
                result = self._generate(
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
                )
        finally:
            self._offload_all()
        timer.totals["total"] = time.perf_counter() - started
        return GenerationResult(timings_s=dict(timer.totals), **result)

    def _generate(
        self,
        start: PromptInput,
        end: PromptInput | None,
        alpha: float,
        init_image: Image.Image | None,
        mask_image: Image.Image | None,
        steps: int,
        width: int,
        height: int,
        timer: _Timer,
        callback_on_step_end: StepCallback | None = None,
    ) -> dict[str, Any]:
        latent_shape = (1, int(self.unet.config.in_channels), height // 8, width // 8)
        mix = self._conditioning(start, end, alpha, latent_shape, timer)
        img2img = init_image is not None
        denoising = mix.denoising if img2img else 1.0

        init_latents = None
        if init_image is not None:
            with timer("vae_encode"):
                init_latents = self.encode_image(init_image)
        mask = None
        if mask_image is not None:
            mask = mask_to_latent(
                mask_image,
                latent_height=latent_shape[2],
                latent_width=latent_shape[3],
                device=self.device,
                dtype=self.dtype,
            )

        noise = mix.noise.to(device=self.device, dtype=self.dtype)
        timesteps = self._timesteps(steps, denoising, img2img)
        scheduler = self.scheduler
        if init_latents is None:
            latents = noise * scheduler.init_noise_sigma
        elif len(timesteps) == 0:
            latents = init_latents
        else:
            latents = scheduler.add_noise(init_latents, noise, timesteps[:1])

        embeddings = torch.cat([mix.uncond, mix.cond]).to(dtype=self.dtype)
        step_kwargs = self._step_kwargs(mix.generator)
        guidance = mix.guidance
        for i, t in enumerate(tqdm(timesteps, **self._progress_bar_config)):
            self._check_interrupt(i, len(timesteps))
            model_input = scheduler.scale_model_input(torch.cat([latents, latents]), t)
            with timer("unet"):
                noise_pred = self.unet(model_input, t, encoder_hidden_states=embeddings).sample
            uncond_pred, cond_pred = noise_pred.chunk(2)
            noise_pred = uncond_pred + guidance * (cond_pred - uncond_pred)
            latents = scheduler.step(noise_pred, t, latents, **step_kwargs).prev_sample
            if mask is not None:
                # Keep the seed where the mask is black: its latents at the noise level the
                # sampler is now at (the next timestep), or clean after the last step.
                if i + 1 < len(timesteps):
                    keep = scheduler.add_noise(init_latents, noise, timesteps[i + 1 : i + 2])
                else:
                    keep = init_latents
                latents = keep * (1 - mask) + latents * mask
            if callback_on_step_end is not None:
                outputs = callback_on_step_end(
                    self, i, t, {"latents": latents, "num_steps": len(timesteps)}
                )
                if outputs:
                    latents = outputs.get("latents", latents)
                self._check_interrupt(i + 1, len(timesteps))

        if not torch.isfinite(latents).all():
            raise RiffusionError(
                f"denoising produced NaN/inf latents in dtype={self.dtype}; retry with "
                "torch_dtype=torch.float32 or a lower guidance"
            )
        with timer("vae_decode"):
            image = self.decode_latents(latents)
        seeds = (start.seed,) if end is None else (start.seed, end.seed)
        return {
            "image": image,
            "alpha": alpha,
            "seeds": seeds,
            "denoising": float(denoising),
            "guidance": float(guidance),
            "timesteps": tuple(round(float(t)) for t in timesteps),
        }

    def _check_interrupt(self, done: int, total: int) -> None:
        if self._interrupt:
            self._interrupt = False
            raise GenerationCancelled(f"generation cancelled after {done} of {total} steps")

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
            guidance: classifier-free guidance scale, >= 0.
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
            guidance: classifier-free guidance scale, >= 0.
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

    # ------------------------------------------------------------------ memory and extras

    def enable_attention_slicing(self, slice_size: str | int | None = "auto") -> RiffusionPipeline:
        """Compute attention in slices (less peak memory, a little slower), as in diffusers.

        Delegates to ``unet.set_attention_slice``. Results equal the unsliced ones up to
        float rounding.

        Args:
            slice_size: ``"auto"`` (halve the heads), ``"max"`` (one slice at a time), an int
                number of slices, or ``None`` to turn slicing off.

        Returns:
            ``self``.
        """
        if slice_size is not None and not (
            slice_size in ("auto", "max")
            or (isinstance(slice_size, int) and _is_int(slice_size) and slice_size > 0)
        ):
            raise ParameterError(
                f"slice_size={slice_size!r} must be 'auto', 'max', a positive int or None"
            )
        self.unet.set_attention_slice(slice_size)
        return self

    def disable_attention_slicing(self) -> RiffusionPipeline:
        """Undo :meth:`enable_attention_slicing`; returns ``self``."""
        return self.enable_attention_slicing(None)

    def enable_vae_slicing(self) -> RiffusionPipeline:
        """Decode a batch of latents one image at a time (``vae.enable_slicing()``).

        riffusion decodes one image per call, so this only matters for code that calls the
        VAE with batches itself; offered because diffusers users expect it. Returns ``self``.
        """
        self.vae.enable_slicing()
        return self

    def enable_vae_tiling(self) -> RiffusionPipeline:
        """Encode and decode large images in overlapping tiles (``vae.enable_tiling()``).

        Saves memory for images wider than the VAE's tile (512 pixels for Stable Diffusion),
        such as ``Riffuser.loop(bars=8)`` or ``riffuse(width=2048)``; tiles are blended, so
        large images differ slightly from an untiled decode; images within one tile are
        unchanged. Returns ``self``.
        """
        self.vae.enable_tiling()
        return self

    def disable_vae_tiling(self) -> RiffusionPipeline:
        """Undo :meth:`enable_vae_tiling`; returns ``self``."""
        self.vae.disable_tiling()
        return self

    def enable_sequential_cpu_offload(
        self, device: str | torch.device = "cuda"
    ) -> RiffusionPipeline:
        """Keep every weight on the CPU and move each layer to the GPU only while it runs.

        accelerate's ``cpu_offload`` on the UNet, text encoder and VAE, as diffusers does: the
        least GPU memory (well under 1 GB) and the slowest. The pipeline cannot be moved
        afterwards.

        Args:
            device: the CUDA device to run on.

        Returns:
            ``self``.

        Raises:
            DeviceError: CUDA is not available, or model CPU offload is already enabled.
        """
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device={device!r}: enable_sequential_cpu_offload needs CUDA, which is not "
                "available; on the CPU everything already lives in main memory"
            )
        target, _ = resolve_device(device, self._dtype)
        if target.type != "cuda":
            raise DeviceError(f"device={device!r} must be a CUDA device for sequential offload")
        if self._offload_hooks:
            raise DeviceError("model CPU offload is enabled; use one kind of offload, not both")
        from accelerate import cpu_offload

        for module in (self.unet, self.vae, self.text_encoder):
            module.to("cpu")
            cpu_offload(module, target)
        self._sequential_offload = True
        self._device = target
        return self

    def load_textual_inversion(
        self, path: str | os.PathLike[str], token: str | None = None
    ) -> RiffusionPipeline:
        """Add a textual-inversion embedding as a new prompt token, as diffusers does.

        Reads diffusers' ``{token: tensor}`` files and Automatic1111's ``string_to_param``
        files (``.safetensors``, ``.bin``, ``.pt``); see
        :mod:`riffusion.diffusion.textual_inversion`.

        Args:
            path: the embedding file (or a folder holding ``learned_embeds.*``).
            token: the token to use in prompts (default: the one stored in the file).

        Returns:
            ``self``.

        Raises:
            ModelLoadError: unreadable file. ParameterError: token taken, wrong width.
        """
        from riffusion.diffusion.textual_inversion import (
            add_embeddings,
            embedding_file,
            read_embeddings,
        )

        name, vectors = read_embeddings(path, token)
        self._token_expansions[name] = add_embeddings(
            self.tokenizer, self.text_encoder, name, vectors
        )
        self._textual_inversions.append((os.path.abspath(embedding_file(path)), name))
        return self

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(device={self.device!s}, dtype={self.dtype}, "
            f"scheduler={type(self.scheduler).__name__})"
        )
