"""The model a :class:`~riffusion.Riffuser` holds: loading it, its device, scheduler and
adapters, progress reporting, and one generation at a time.

:class:`ModelHolder` is the base of :class:`~riffusion.Riffuser`, which adds the verbs; apps
that only need a loaded model and its recipes' adapters can use it alone.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from riffusion._checks import check_seed
from riffusion.adapters import use_adapters
from riffusion.calls import DIFFUSERS_ALIASES
from riffusion.decoders import check_decoder_name
from riffusion.defaults import DEFAULT_MODEL
from riffusion.errors import ParameterError
from riffusion.models import check_image_model
from riffusion.models.loading import (
    CPU_DEFAULT_SCHEDULER,
    CPU_DEFAULT_STEPS,
    model_id,
    open_pretrained,
)
from riffusion.params import SpectrogramParams
from riffusion.progress import ProgressCallback, reporting
from riffusion.recipe import Adapter, Recipe, _check_steps

if TYPE_CHECKING:
    from riffusion.models.sd1.lora import LoadedLora

__all__ = ["ModelHolder"]

Holder = TypeVar("Holder", bound="ModelHolder")


class ModelHolder:
    """An image model held for generation (the base of :class:`~riffusion.Riffuser`; its
    arguments are documented there).

    Attributes:
        pipeline: the image model (:class:`~riffusion.models.ImageModel`).
        model: the id or absolute folder recipes record.
        params: the spectrogram parameters of its images.
        decode_method: the registered decoder of every clip.
        decode_seed: the decoder's seed.
        lock: held by every generating method (re-entrant).
        default_num_inference_steps: steps when a verb is called without them (``None``: 50).
    """

    #: The CPU default of :meth:`from_pretrained` (see :mod:`riffusion.models.loading`).
    CPU_DEFAULT_SCHEDULER = CPU_DEFAULT_SCHEDULER
    CPU_DEFAULT_STEPS = CPU_DEFAULT_STEPS
    #: diffusers' keyword names the generating methods accept, and ours they stand for.
    DIFFUSERS_ALIASES = DIFFUSERS_ALIASES

    def __init__(
        self,
        pipeline: Any,
        *,
        model: str = "custom",
        params: SpectrogramParams | None = None,
        decode_method: str = "fast",
        decode_seed: int = 0,
        scheduler: str | None = None,
    ) -> None:
        self.pipeline = check_image_model(pipeline)
        # A folder is recorded absolute, so recipes render from any working directory.
        self.model = model_id(model)
        self.params = params or SpectrogramParams()
        if self.params.stereo:
            raise ParameterError("Riffuser works with mono spectrogram params (stereo=False)")
        check_decoder_name("decode_method", decode_method)
        check_seed("decode_seed", decode_seed)
        self.decode_method = decode_method
        self.decode_seed = decode_seed
        if scheduler is not None:
            self.pipeline.set_scheduler(scheduler)
        self.lock = threading.RLock()
        #: Steps used when a generating method is called without ``num_inference_steps``
        #: (``None``: the methods' own default, 50). ``from_pretrained`` sets it on the CPU.
        self.default_num_inference_steps: int | None = None

    @property
    def scheduler_name(self) -> str:
        """The name recipes record for the model's current scheduler (see :class:`Recipe`)."""
        return self.pipeline.describe_scheduler()[0]

    @classmethod
    def from_pretrained(
        cls: type[Holder],
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        device: str | torch.device = "auto",
        dtype: torch.dtype | str | None = None,
        scheduler: str | None = None,
        num_inference_steps: int | None = None,
        **kwargs: Any,
    ) -> Holder:
        """Load a checkpoint (hub id or folder) and wrap it.

        Args:
            model: hub id (default ``riffusion/riffusion-model-v1``) or local folder; a folder
                is recorded in recipes as its absolute path, so they render from any directory.
            device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
            dtype: weights dtype (float16 on CUDA by default, float32 elsewhere).
            scheduler: scheduler name (``SCHEDULER_NAMES``). Default: the checkpoint's own
                (50-step PNDM for Riffusion) on CUDA and MPS; on the CPU, where that costs
                about 1,700 CPU seconds a clip, :attr:`CPU_DEFAULT_SCHEDULER` at
                :attr:`CPU_DEFAULT_STEPS` steps, said in the progress bar's label and an INFO
                log line. Pass ``scheduler="default"`` for the checkpoint's own.
            num_inference_steps: default steps of every generating method
                (:attr:`default_num_inference_steps`); ``None``: 50, or 25 with the CPU default.
            **kwargs: passed to :meth:`RiffusionPipeline.from_pretrained`: diffusers' names
                ``torch_dtype`` (same as ``dtype``), ``variant``, ``use_safetensors``, and
                ``local_files_only``, ``cache_dir``, ``revision``.
        """
        pipeline, cpu_steps = open_pretrained(
            model, device=device, dtype=dtype, scheduler=scheduler, **kwargs
        )
        riffuser = cls(pipeline, model=model_id(model))
        if num_inference_steps is not None:
            cpu_steps = _check_steps(num_inference_steps)
        riffuser.default_num_inference_steps = cpu_steps
        return riffuser

    @classmethod
    def from_single_file(
        cls: type[Holder],
        path: str | os.PathLike[str],
        *,
        scheduler: str | None = None,
        **kwargs: Any,
    ) -> Holder:
        """Load a single-file ``.ckpt`` / ``.safetensors`` checkpoint; recipes record the
        file's absolute path.

        Args:
            path: the ``.ckpt`` or ``.safetensors`` file.
            scheduler: a scheduler name of ``SCHEDULER_NAMES``; ``None`` keeps the checkpoint's.
            **kwargs: ``config`` (a diffusers folder or hub id whose configs fit), ``device``,
                ``dtype``, ``local_files_only``: see :meth:`RiffusionPipeline.from_single_file`.
        """
        from riffusion.models.sd1 import RiffusionPipeline

        if "dtype" in kwargs:
            kwargs["torch_dtype"] = kwargs.pop("dtype")
        pipeline = RiffusionPipeline.from_single_file(path, scheduler=scheduler, **kwargs)
        return cls(pipeline, model=model_id(path))

    @classmethod
    def from_recipe(
        cls: type[Holder], recipe: Recipe | str, *, adapter_dirs: Sequence[Any] = (), **kwargs: Any
    ) -> Holder:
        """A fresh :class:`Riffuser` for the model, parameters and adapters of a recipe:
        ``Riffuser.from_recipe(recipe).render(recipe)`` remakes the clip in another process.

        Args:
            recipe: a :class:`Recipe` or any form :meth:`Recipe.parse` reads.
            adapter_dirs: folders the recipe's adapter files may be read from (see
                :meth:`use_adapters`); none by default.
            **kwargs: passed to :meth:`from_pretrained` (``device``, ``dtype`` …).
        """
        recipe = Recipe.parse(recipe)
        if recipe.params.stereo:
            raise ParameterError("Riffuser works with mono spectrogram params (stereo=False)")
        riffuser = cls.from_pretrained(recipe.model, **kwargs)
        riffuser.params = recipe.params
        riffuser.decode_method = recipe.decode_method
        riffuser.decode_seed = recipe.decode_seed
        return riffuser.use_adapters(recipe.adapters, adapter_dirs=adapter_dirs)

    # ------------------------------------------------------------------ model and adapters
    def to(
        self: Holder, device: str | torch.device, dtype: torch.dtype | str | None = None
    ) -> Holder:
        """Move the model to ``device`` (and ``dtype``), as diffusers' ``.to``; returns ``self``.

        Offload, attention slicing and VAE tiling are the model's: ``riffuser.pipeline``.

        Args:
            device: ``"auto"``, ``"cpu"``, ``"cuda[:N]"``, ``"mps"`` or a ``torch.device``.
            dtype: ``torch.float32``, ``float16``, ``bfloat16`` (or a name); ``None`` keeps it.
        """
        with self.lock:
            self.pipeline.to(device, dtype)
        return self

    def compile(
        self: Holder,
        *,
        mode: str = "reduce-overhead",
        fullgraph: bool = False,
        channels_last: bool = True,
        backend: str | Callable[..., Any] = "inductor",
        dynamic: bool | None = False,
    ) -> Holder:
        """``torch.compile`` the model for fast repeated clips (the GPU path); returns ``self``.

        For :class:`~riffusion.RiffusionPipeline`: the UNet and the VAE decoder, in place,
        static shapes, NHWC convolutions, SDPA attention kept (see
        :mod:`riffusion.models.sd1.compiling`). Call it after :meth:`to` and :meth:`load_lora`;
        the first clip compiles, later clips of the same size reuse it.

        Args:
            mode: ``"default"``, ``"reduce-overhead"`` (CUDA graphs), ``"max-autotune"`` or
                ``"max-autotune-no-cudagraphs"``: inductor's mode.
            fullgraph: refuse graph breaks.
            channels_last: store convolution weights NHWC.
            backend: ``"inductor"``, ``"eager"``, ``"aot_eager"``, another registered name,
                or a callable backend.
            dynamic: ``False`` (static shapes), ``True`` or ``None`` (torch's default).

        Raises:
            ParameterError: a bad argument, or a model without ``compile``.
            DeviceError: CPU offload is enabled, or inductor on the CPU has no C++ compiler.
        """
        compile_model = getattr(self.pipeline, "compile", None)
        if not callable(compile_model):
            raise ParameterError(
                f"pipeline={type(self.pipeline).__name__} has no compile(); only image models "
                "that offer one (RiffusionPipeline) can be compiled"
            )
        with self.lock:
            compile_model(
                mode=mode,
                fullgraph=fullgraph,
                channels_last=channels_last,
                backend=backend,
                dynamic=dynamic,
            )
        return self

    def set_scheduler(self: Holder, name: str) -> Holder:
        """Switch the sampling scheduler by name (``SCHEDULER_NAMES``; recorded in recipes).

        Args:
            name: a scheduler name of ``SCHEDULER_NAMES``.
        """
        with self.lock:
            self.pipeline.set_scheduler(name)
        return self

    def load_lora(
        self: Holder,
        path: str | os.PathLike[str],
        scale: float = 1.0,
        name: str | None = None,
    ) -> Holder:
        """Load LoRA weights (``pytorch_lora_weights.safetensors`` or its folder, e.g. from
        :func:`riffusion.training.train_lora`) at ``scale``, on top of the LoRAs loaded before:
        they stack (``W x + scale_1 Δ_1 x + scale_2 Δ_2 x``; every scale 0 = the base model bit
        for bit). Recipes record each one's name, file, fingerprint and scale, in loading
        order. Returns ``self``.

        Args:
            path: the weights file or its folder.
            scale: strength, a finite number (0 = off, 1 = as trained).
            name: its name in :attr:`loras`, :meth:`set_lora_scale` and :meth:`unload_lora`;
                ``None``: the folder's name for a ``pytorch_lora_weights.safetensors``, else
                the file's stem (``-2``, ``-3``, ... appended if taken).

        Raises:
            ModelLoadError: missing, unreadable or non-matching weights.
            ParameterError: a non-finite ``scale``, or a ``name`` that is invalid or loaded
                already.
        """
        with self.lock:
            self.pipeline.load_lora(path, scale, name=name)
        return self

    def set_lora_scale(self: Holder, scale: float, name: str | None = None) -> Holder:
        """Change the strength of the LoRA ``name``, or of every loaded LoRA (``None``).
        Returns ``self``.

        Args:
            scale: strength, a finite number (0 = off, 1 = as trained).
            name: a name of :attr:`loras`; ``None``: all of them.

        Raises:
            RiffusionError: no LoRA is loaded.
            ParameterError: a non-finite ``scale`` or an unknown ``name``.
        """
        with self.lock:
            self.pipeline.set_lora_scale(scale, name=name)
        return self

    def unload_lora(self: Holder, name: str | None = None) -> Holder:
        """Remove the LoRA ``name`` (the others keep their scales), or every LoRA (``None``:
        generation uses the base model again). Returns ``self``.

        Args:
            name: a name of :attr:`loras`; ``None``: all of them.

        Raises:
            ParameterError: an unknown ``name``.
        """
        with self.lock:
            self.pipeline.unload_lora(name=name)
        return self

    @property
    def loras(self) -> tuple[LoadedLora, ...]:
        """The loaded LoRAs in loading order, ``(name, path, fingerprint, scale)`` each
        (:class:`~riffusion.models.sd1.lora.LoadedLora`); empty for a model without LoRA
        support."""
        return tuple(getattr(self.pipeline, "loras", ()))

    def load_textual_inversion(
        self: Holder, path: str | os.PathLike[str], token: str | None = None
    ) -> Holder:
        """Load a textual-inversion embedding (file or folder), bound to ``token`` (``None``:
        the file's own). Returns ``self``.

        Args:
            path: an embedding file (``.bin``/``.safetensors``) or folder.
            token: its prompt token, or ``None`` for the file's own.
        """
        with self.lock:
            self.pipeline.load_textual_inversion(path, token=token)
        return self

    def use_adapters(
        self: Holder, adapters: Iterable[Adapter], *, adapter_dirs: Sequence[Any] = ()
    ) -> Holder:
        """Make the loaded LoRA and textual inversions the given ones (``recipe.adapters``),
        reading files only inside ``adapter_dirs`` (see :func:`riffusion.adapters.use_adapters`).
        Returns ``self``.

        Args:
            adapters: :class:`~riffusion.recipe.Adapter` objects (``recipe.adapters``).
            adapter_dirs: folders whose files may be read.
        """
        with self.lock:
            use_adapters(self.pipeline, adapters, adapter_dirs)
        return self

    @contextlib.contextmanager
    def on_progress(self, callback: ProgressCallback) -> Iterator[None]:
        """Report every denoising step of the clips made in this block, in this thread (and in
        the worker of a ``stream(buffer_ahead=...)`` iterated here): ``callback(progress)``
        after each step; return ``True`` to cancel the clip in progress.

        Args:
            callback: called with a :class:`~riffusion.progress.Progress` after each step.

        Example:
            >>> with riffuser.on_progress(lambda p: print(p)):  # doctest: +SKIP
            ...     riffuser.text_to_audio("jazz", duration_s=10)
            window 1/3, step 1/37
        """
        with reporting(callback):
            yield

    def __repr__(self) -> str:
        return f"Riffuser(model={self.model!r}, pipeline={self.pipeline!r})"
