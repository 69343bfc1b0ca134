"""The riffusion diffusion pipeline: the Stable Diffusion 1.x components and their settings.

:class:`RiffusionPipeline` holds the models (UNet, VAE, text encoder, tokenizer), the scheduler,
the device and dtype, CPU offload, attention/VAE slicing and tiling, and the LoRA and
textual-inversion adapters (diffusers-style mixins of :mod:`~riffusion.models.sd1.lora` and
:mod:`~riffusion.models.sd1.textual_inversion`). Its generation methods (``riffuse``,
``img2img``, ``text_to_image``, from :class:`~riffusion.models.sd1.generation.GenerationMixin`)
check their arguments, then hand the components to the explicit denoising loop of
:mod:`riffusion.models.sd1.denoising`.

This layer knows pixels, latents and embeddings; it knows nothing about audio.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from diffusers import AutoencoderKL, SchedulerMixin, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from riffusion.defaults import DEFAULT_MODEL, SCHEDULER_NAMES
from riffusion.errors import DeviceError, ParameterError
from riffusion.models.sd1.batching import BatchingMixin
from riffusion.models.sd1.compiling import CompileMixin
from riffusion.models.sd1.devices import resolve_device
from riffusion.models.sd1.generation import GenerationMixin
from riffusion.models.sd1.loading import (
    load_components,
    load_single_file,
    resolve_model_folder,
)
from riffusion.models.sd1.lora import LoraMixin
from riffusion.models.sd1.schedulers import (
    build_scheduler,
    describe_scheduler,
    make_scheduler,
)
from riffusion.models.sd1.textual_inversion import TextualInversionMixin
from riffusion.models.sd1.validation import is_int

__all__ = ["RiffusionPipeline"]


class RiffusionPipeline(
    GenerationMixin, BatchingMixin, LoraMixin, TextualInversionMixin, CompileMixin
):
    """Stable Diffusion 1.x for riffusion: text-to-image, img2img, masks, prompt interpolation.

    Build it with :meth:`from_pretrained`. Follows diffusers conventions: :meth:`to` moves it and
    returns it, :attr:`scheduler` can be replaced by any diffusers scheduler (or by name with
    :meth:`set_scheduler`), :meth:`enable_model_cpu_offload` and
    :meth:`set_progress_bar_config` work as in diffusers. Not thread-safe: the scheduler holds
    per-run state.

    The generation methods are :class:`~riffusion.models.sd1.generation.GenerationMixin`'s
    (``riffuse_batch``, several prompts and seeds in one UNet batch,
    :class:`~riffusion.models.sd1.batching.BatchingMixin`'s), the adapter methods
    :class:`~riffusion.models.sd1.lora.LoraMixin`'s and
    :class:`~riffusion.models.sd1.textual_inversion.TextualInversionMixin`'s, ``compile`` (the
    GPU path's ``torch.compile``) :class:`~riffusion.models.sd1.compiling.CompileMixin`'s.

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
        self._compiled = None  # CompileSettings once compile() ran

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
                :data:`~riffusion.defaults.SCHEDULER_NAMES`, or a diffusers
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

        See :func:`riffusion.models.sd1.loading.load_single_file` (diffusers'
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
                ``"euler_ancestral"``, ``"lms"``, ``"pndm"``, or a few-step sampler:
                ``"unipc"``, ``"dpm++2m-karras"``, ``"lcm"``, ``"tcd"``.

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

        See :func:`riffusion.models.sd1.schedulers.describe_scheduler`: ``"default"`` for the
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

    # ------------------------------------------------------------------ memory

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
            or (isinstance(slice_size, int) and is_int(slice_size) and slice_size > 0)
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

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(device={self.device!s}, dtype={self.dtype}, "
            f"scheduler={type(self.scheduler).__name__})"
        )
