"""The front door: :class:`Riffuser` composes generation, decoding and joining into clips.

Everything here is also reachable from the layers beneath it (``riffusion.diffusion`` for
images, ``riffusion.convert`` for audio, ``riffusion.joins`` for joining); this module only
composes them and records how each clip was made in a :class:`Recipe`.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import math
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from riffusion._checks import MAX_SEED, check_integer
from riffusion._files import check_allowed_file, file_fingerprint
from riffusion.audio import Audio
from riffusion.convert import audio_to_image, image_to_audio
from riffusion.defaults import DEFAULT_MODEL, WINDOW_WIDTH
from riffusion.diffusion import RiffusionPipeline
from riffusion.diffusion.masks import time_range_mask
from riffusion.errors import ModelLoadError, ParameterError
from riffusion.image import load_image
from riffusion.inputs import PromptInput
from riffusion.limits import MAX_ADAPTER_BYTES
from riffusion.params import SpectrogramParams
from riffusion.recipe import (
    Adapter,
    Clip,
    Progress,
    ProgressCallback,
    Recipe,
    _check_duration,
    _check_steps,
)
from riffusion.schedule import stream_schedule
from riffusion.seeds import (
    DEFAULT_SEED_IMAGE,
    image_fingerprint,
    load_mask_image,
    load_seed_image,
    resolve_mask_id,
    resolve_seed_id,
)
from riffusion.spectrogram import InverseMethod, check_decode_size, check_decoder_name

# Recipe, Clip and Progress live in riffusion.recipe; re-exported here for compatibility.
__all__ = ["DEFAULT_SEED", "Clip", "Progress", "ProgressCallback", "Recipe", "Riffuser"]

DEFAULT_SEED = "default"
"""Sentinel for ``seed_image=``: the built-in default seed image (``straight_beat``)."""

_CONTEXT_PX = 256  # continuation keeps one bar (2.56 s at 93.75 BPM) of the previous window
_BLEND_PX = 16  # columns over which a continuation window is blended into its context
_OVERLAP_PX = 64  # audio_to_audio window overlap


@dataclass
class _ProgressState:
    callback: ProgressCallback
    window: int = 0
    num_windows: int = 1


# Per thread / task: a callback set by ``Riffuser.on_progress`` in one thread does not leak into
# generations another thread runs on the same Riffuser.
_PROGRESS: contextvars.ContextVar[_ProgressState | None] = contextvars.ContextVar(
    "riffusion_progress", default=None
)


def _serialized(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``method`` while holding the instance's generation lock (see ``Riffuser.lock``)."""

    @functools.wraps(method)
    def locked(self: Riffuser, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return locked


# diffusers' keyword names accepted by the generating methods, and ours they stand for.
_DIFFUSERS_ALIASES = {"guidance_scale": "guidance", "strength": "denoising"}
_MAX_LOOP_BARS = 16


def _diffusers_friendly(method: Callable[..., Any]) -> Callable[..., Any]:
    """Accept diffusers' keyword names (``Riffuser.DIFFUSERS_ALIASES``) and fill
    ``num_inference_steps`` from ``Riffuser.default_num_inference_steps`` when not given."""
    import inspect

    accepted = inspect.signature(method).parameters

    @functools.wraps(method)
    def call(self: Riffuser, *args: Any, **kwargs: Any) -> Any:
        for alias, ours in _DIFFUSERS_ALIASES.items():
            if alias not in kwargs:
                continue
            if ours not in accepted:
                raise ParameterError(
                    f"{alias}= (diffusers' name for {ours}=) is not a parameter of "
                    f"{method.__name__}(); set {ours} on the PromptInput values instead"
                )
            if ours in kwargs:
                raise ParameterError(
                    f"{alias}={kwargs[alias]!r} and {ours}={kwargs[ours]!r} name the same "
                    f"thing ({alias} is diffusers' name for {ours}); pass only {ours}="
                )
            kwargs[ours] = kwargs.pop(alias)
        steps = getattr(self, "default_num_inference_steps", None)
        if steps is not None and "num_inference_steps" in accepted:
            kwargs.setdefault("num_inference_steps", steps)
        return method(self, *args, **kwargs)

    return call


def _check_prompt(prompt: Any, example: str) -> None:
    if not isinstance(prompt, str):
        raise ParameterError(f"prompt={prompt!r} must be a string, e.g. {example}")


def _as_audio(audio: Any, example: str) -> Audio:
    """``audio`` as :class:`Audio`: itself, or loaded from a path (``str`` or ``PathLike``)."""
    if isinstance(audio, Audio):
        return audio
    if isinstance(audio, str | os.PathLike):
        if not Path(audio).is_file():
            raise ParameterError(
                f"audio={os.fspath(audio)!r} is not an existing file, e.g. {example}"
            )
        return Audio.load(audio)
    raise ParameterError(
        f"audio must be a riffusion.Audio or a path, got {type(audio).__name__}, e.g. {example}"
    )


def _as_prompt_input(value: Any, seed: int, name: str) -> PromptInput:
    """A plain string becomes ``PromptInput(value, seed=seed)``, as ``stream`` does."""
    if isinstance(value, str):
        return PromptInput(prompt=value, seed=seed)
    if isinstance(value, PromptInput):
        return value
    raise ParameterError(
        f"{name}={value!r} must be a string or a riffusion.PromptInput, e.g. "
        "riffuser.interpolate('jazz piano', PromptInput('techno beat', seed=7), 5)"
    )


# ------------------------------------------------------------------------------- helpers
def _check_adapter_file(adapter: Adapter, adapter_dirs: Sequence[Any]) -> None:
    """The recipe's adapter file, if it is an allowed regular file with the recorded bytes.

    A recipe may come from a stranger: its paths are read only inside ``adapter_dirs``
    (:func:`riffusion._files.check_allowed_file`), never outside, not even to say whether the
    file exists.
    """
    check_allowed_file(
        adapter.path,
        allowed_dirs=adapter_dirs,
        max_bytes=MAX_ADAPTER_BYTES,
        what=f"{adapter.kind} weights",
        error=ModelLoadError,
    )
    found = _adapter_fingerprint(adapter.kind, adapter.path)
    if found != adapter.fingerprint:
        raise ModelLoadError(
            f"{adapter.kind} weights {adapter.path!r} have fingerprint {found}, the recipe's are "
            f"{adapter.fingerprint}: the file changed since the clip was made"
        )


def _adapter_fingerprint(kind: str, path: str) -> str:
    """The fingerprint of an adapter's weights file, or a :class:`ModelLoadError` naming it."""
    try:
        return file_fingerprint(path)
    except OSError as error:
        raise ModelLoadError(f"cannot read the {kind} weights {path!r}: {error}") from error


def _model_id(model: Any) -> str:
    """A hub id as given; an existing folder as its absolute path (recipes render anywhere)."""
    text = os.fspath(model) if isinstance(model, os.PathLike) else str(model)
    try:
        return str(Path(text).resolve()) if Path(text).exists() else text
    except (OSError, ValueError):  # not a usable path (NUL, too long): an id
        return text


def _check_seed_walk(seed: int, windows: int) -> None:
    """Window ``k`` of a long clip uses ``seed + k``: refuse, before generating, a walk past
    2**63 − 1 (which would fail after the first window, its work thrown away)."""
    if seed + windows - 1 > MAX_SEED:
        raise ParameterError(
            f"seed={seed} walks to seed + {windows - 1} over the {windows} windows of this "
            f"clip, past 2**63 - 1; use a seed of at most {MAX_SEED - windows + 1}"
        )


def _random_seed() -> int:
    return secrets.randbelow(2**31)


def _fit_width(image: Image.Image, width: int) -> Image.Image:
    """Crop to ``width`` columns, or tile the image until it is that wide."""
    if image.width == width:
        return image
    if image.width > width:
        return image.crop((0, 0, width, image.height))
    tiled = Image.new(image.mode, (width, image.height))
    for left in range(0, width, image.width):
        tiled.paste(image, (left, 0))
    return tiled


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def _to_image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="RGB")


def _buffered(items: Iterator[Clip], size: int) -> Iterator[Clip]:
    """Pull ``items`` in one background thread, up to ``size`` ahead of the consumer.

    One worker keeps generation sequential (the pipeline is not thread-safe); torch releases
    the GIL inside its kernels, so the consumer stays responsive. An exception in the worker is
    re-raised to the consumer at the position where it happened; closing the iterator waits for
    the clip in progress, then stops the worker. The worker runs in a copy of the context of
    the thread that starts the iteration, so a ``Riffuser.on_progress`` callback set there
    reports the clips it makes ahead.
    """
    done = object()
    ready: queue.Queue[Any] = queue.Queue(maxsize=size)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ready.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put(done)
        except BaseException as error:  # handed to the consumer, not lost in the thread
            ready.put(error)

    context = contextvars.copy_context()
    worker = threading.Thread(
        target=context.run, args=(work,), name="riffusion-stream", daemon=True
    )
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # Wait for the clip in progress rather than leave a thread inside torch at exit.
        stop.set()
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                ready.get_nowait()
            worker.join(timeout=0.05)


class Riffuser:
    """Text to music, audio to audio, interpolation, endless streams and seamless loops.

    Args:
        pipeline: a loaded :class:`~riffusion.diffusion.RiffusionPipeline`.
        model: the id or folder it came from (recorded in recipes).
        params: spectrogram parameters of the model's images (Riffusion's by default).
        decode_method: phase recovery used for every clip (``"fast"`` or ``"reference"``).
        decode_seed: seed of the phase recovery.
        scheduler: a scheduler name (``SCHEDULER_NAMES``) to switch the pipeline to, or ``None``
            to keep the pipeline's current one. Recipes record the scheduler that actually ran,
            read from ``pipeline.scheduler`` at each call.

    Thread safety: the pipeline and the scheduler hold per-run state, so every generating
    method (``text_to_audio``, ``audio_to_audio``, ``riffuse``, ``loop``, ``render``) and
    ``set_scheduler`` hold :attr:`lock`, a re-entrant lock: calls from several threads run one
    at a time, in the order they get the lock. Hold ``riffuser.lock`` yourself to keep a group
    of calls together (e.g. ``set_scheduler`` followed by a generation).

    Progress and cancellation: inside ``with riffuser.on_progress(callback):`` every denoising
    step reports a :class:`Progress` (window k of n, step i of m) to ``callback`` in the calling
    thread; returning ``True`` stops the clip with :class:`~riffusion.errors.GenerationCancelled`.

    Example:
        >>> riffuser = Riffuser.from_pretrained()  # doctest: +SKIP
        >>> clip = riffuser.text_to_audio("funky bass groove", seed=42)  # doctest: +SKIP
        >>> clip.save("funk.wav")  # doctest: +SKIP
    """

    def __init__(
        self,
        pipeline: RiffusionPipeline,
        *,
        model: str = "custom",
        params: SpectrogramParams | None = None,
        decode_method: InverseMethod = "fast",
        decode_seed: int = 0,
        scheduler: str | None = None,
    ) -> None:
        if not isinstance(pipeline, RiffusionPipeline):
            raise ParameterError(
                f"pipeline must be a RiffusionPipeline, got {type(pipeline).__name__}"
            )
        self.pipeline = pipeline
        # A folder is recorded absolute, so recipes render from any working directory.
        self.model = _model_id(model)
        self.params = params or SpectrogramParams()
        if self.params.stereo:
            raise ParameterError("Riffuser works with mono spectrogram params (stereo=False)")
        check_decoder_name("decode_method", decode_method)
        if isinstance(decode_seed, bool) or not isinstance(decode_seed, int):
            raise ParameterError(f"decode_seed={decode_seed!r} must be an integer")
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
        """The name recipes record for the pipeline's current scheduler (see :class:`Recipe`)."""
        return self.pipeline.describe_scheduler()[0]

    #: On the CPU, unless a scheduler is asked for, :meth:`from_pretrained` picks DPM-Solver++
    #: multistep at 25 steps (about 2x fewer UNet calls than the checkpoint's 50-step PNDM).
    CPU_DEFAULT_SCHEDULER = "dpm++"
    CPU_DEFAULT_STEPS = 25
    #: diffusers' keyword names the generating methods accept, and ours they stand for.
    DIFFUSERS_ALIASES = _DIFFUSERS_ALIASES

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        device: str | torch.device = "auto",
        dtype: torch.dtype | str | None = None,
        scheduler: str | None = None,
        num_inference_steps: int | None = None,
        **kwargs: Any,
    ) -> Riffuser:
        """Load a checkpoint (hub id or folder) and wrap it.

        Args:
            model: hub id (default ``riffusion/riffusion-model-v1``) or local folder; a folder
                is recorded in recipes as its absolute path, so they render from any directory.
            device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
            dtype: weights dtype (float16 on CUDA by default, float32 elsewhere).
            scheduler: scheduler name (``SCHEDULER_NAMES``). Default: the checkpoint's own
                (50-step PNDM for Riffusion) on CUDA and MPS; on the CPU, where that costs
                about 1,700 CPU seconds a clip, :attr:`CPU_DEFAULT_SCHEDULER` (DPM-Solver++
                multistep) at :attr:`CPU_DEFAULT_STEPS` steps, said in the progress bar's label
                (``dpm++ (CPU default)``) and an INFO log line.
                Recipes record what ran. Pass ``scheduler="default"`` for the checkpoint's own.
            num_inference_steps: default steps of every generating method
                (:attr:`default_num_inference_steps`); ``None``: 50, or 25 with the CPU default.
            **kwargs: passed to :meth:`RiffusionPipeline.from_pretrained`: diffusers' names
                ``torch_dtype`` (same as ``dtype``), ``variant``, ``use_safetensors``, and
                ``local_files_only``, ``cache_dir``, ``revision``.
        """
        if "torch_dtype" in kwargs:
            torch_dtype = kwargs.pop("torch_dtype")
            if dtype is not None and torch_dtype is not None:
                raise ParameterError(
                    f"dtype={dtype!r} and torch_dtype={torch_dtype!r} name the same thing; pass one"
                )
            dtype = torch_dtype if dtype is None else dtype
        import logging

        from riffusion.diffusion.devices import resolve_device

        cpu_default = False
        if scheduler is None:
            target, _ = resolve_device(device, dtype)
            cpu_default = target.type == "cpu"
        pipeline = RiffusionPipeline.from_pretrained(
            model,
            device=device,
            torch_dtype=dtype,
            scheduler=cls.CPU_DEFAULT_SCHEDULER if cpu_default else scheduler,
            **kwargs,
        )
        riffuser = cls(pipeline, model=_model_id(model))
        if num_inference_steps is not None:
            riffuser.default_num_inference_steps = _check_steps(num_inference_steps)
        elif cpu_default:
            riffuser.default_num_inference_steps = cls.CPU_DEFAULT_STEPS
        if cpu_default:
            # Said where people look: the progress bar's label, and one INFO log line (a
            # warning would break quiet command lines).
            pipeline.set_progress_bar_config(desc=f"{cls.CPU_DEFAULT_SCHEDULER} (CPU default)")
            logging.getLogger(__name__).info(
                "riffusion: on the CPU, using the %s scheduler with %d steps by default (about "
                "2x faster than the checkpoint's 50-step PNDM); pass scheduler='default', "
                "num_inference_steps=50 for the original",
                cls.CPU_DEFAULT_SCHEDULER,
                riffuser.default_num_inference_steps,
            )
        return riffuser

    @classmethod
    def from_single_file(
        cls,
        path: str | os.PathLike[str],
        *,
        config: str | os.PathLike[str] | None = None,
        device: str | torch.device = "auto",
        dtype: torch.dtype | str | None = None,
        scheduler: str | None = None,
        local_files_only: bool = False,
    ) -> Riffuser:
        """Load a single-file ``.ckpt`` / ``.safetensors`` checkpoint (see
        :meth:`RiffusionPipeline.from_single_file`); recipes record the file's absolute path.

        Args:
            path: the ``.ckpt`` or ``.safetensors`` file.
            config: a diffusers-format folder or hub id whose configs fit the checkpoint (``None``:
                diffusers' guess).
            device: ``"auto"``, ``"cpu"``, ``"cuda[:N]"``, ``"mps"`` or a ``torch.device``.
            dtype: ``torch.float32``, ``float16``, ``bfloat16`` (or their names); ``None`` for the
                device's default.
            scheduler: a scheduler name of ``SCHEDULER_NAMES``; ``None`` keeps the checkpoint's.
            local_files_only: never download (configs from the cache only).
        """
        pipeline = RiffusionPipeline.from_single_file(
            path,
            config=config,
            device=device,
            torch_dtype=dtype,
            scheduler=scheduler,
            local_files_only=local_files_only,
        )
        return cls(pipeline, model=_model_id(path))

    def to(self, device: str | torch.device, dtype: torch.dtype | str | None = None) -> Riffuser:
        """Move the model to ``device`` (and ``dtype``), as diffusers' ``.to``; returns ``self``.

        Args:
            device: ``"auto"``, ``"cpu"``, ``"cuda[:N]"``, ``"mps"`` or a ``torch.device``.
            dtype: ``torch.float32``, ``float16`` or ``bfloat16`` (or their names); ``None``
                keeps the current one.
        """
        with self.lock:
            self.pipeline.to(device, dtype)
        return self

    def enable_model_cpu_offload(self, device: str | torch.device = "cuda") -> Riffuser:
        """See :meth:`RiffusionPipeline.enable_model_cpu_offload`; returns ``self``.

        Args:
            device: the accelerator each model moves to while it runs (``"cuda"``).
        """
        self.pipeline.enable_model_cpu_offload(device)
        return self

    def enable_sequential_cpu_offload(self, device: str | torch.device = "cuda") -> Riffuser:
        """See :meth:`RiffusionPipeline.enable_sequential_cpu_offload`; returns ``self``.

        Args:
            device: the accelerator each layer moves to while it runs (``"cuda"``).
        """
        self.pipeline.enable_sequential_cpu_offload(device)
        return self

    def enable_attention_slicing(self, slice_size: str | int | None = "auto") -> Riffuser:
        """See :meth:`RiffusionPipeline.enable_attention_slicing`; returns ``self``.

        Args:
            slice_size: ``"auto"`` (halve the heads), ``"max"`` (one slice at a time), an int
                number of slices, or ``None`` to turn slicing off.
        """
        self.pipeline.enable_attention_slicing(slice_size)
        return self

    def enable_vae_slicing(self) -> Riffuser:
        """See :meth:`RiffusionPipeline.enable_vae_slicing`; returns ``self``."""
        self.pipeline.enable_vae_slicing()
        return self

    def enable_vae_tiling(self) -> Riffuser:
        """See :meth:`RiffusionPipeline.enable_vae_tiling`; returns ``self``."""
        self.pipeline.enable_vae_tiling()
        return self

    def load_textual_inversion(
        self, path: str | os.PathLike[str], token: str | None = None
    ) -> Riffuser:
        """See :meth:`RiffusionPipeline.load_textual_inversion`; returns ``self``.

        Args:
            path: a textual-inversion embedding file (``.bin`` / ``.safetensors``) or folder.
            token: the token the embedding is bound to (``None``: the file's own).
        """
        with self.lock:
            self.pipeline.load_textual_inversion(path, token=token)
        return self

    @classmethod
    def from_recipe(
        cls, recipe: Recipe | str, *, adapter_dirs: Sequence[Any] = (), **kwargs: Any
    ) -> Riffuser:
        """A fresh :class:`Riffuser` for the model and parameters a recipe was made with.

        ``Riffuser.from_recipe(recipe).render(recipe)`` remakes the clip in another process
        or working directory (the recipe records hub ids or absolute folders). The recipe's
        textual inversions and LoRA are loaded from their recorded files, after checking that
        the files still have the recorded fingerprints (:class:`ModelLoadError` if not).

        Args:
            recipe: a :class:`Recipe`, its JSON or its URL string.
            adapter_dirs: folders the recipe's adapter files may be read from (see
                :meth:`use_adapters`); none by default.
            **kwargs: passed to :meth:`from_pretrained` (``device``, ``dtype``,
                ``local_files_only`` …).
        """
        recipe = Recipe.parse(recipe)
        if recipe.params.stereo:
            raise ParameterError("Riffuser works with mono spectrogram params (stereo=False)")
        riffuser = cls.from_pretrained(recipe.model, **kwargs)
        riffuser.params = recipe.params
        riffuser.decode_method = recipe.decode_method
        riffuser.decode_seed = recipe.decode_seed
        return riffuser.use_adapters(recipe.adapters, adapter_dirs=adapter_dirs)

    def use_adapters(
        self, adapters: Iterable[Adapter], *, adapter_dirs: Sequence[Any] = ()
    ) -> Riffuser:
        """Make the loaded LoRA and textual inversions the given ones (a recipe's ``adapters``).

        What is missing is loaded from the recorded files, after checking that each file still
        has the recorded fingerprint; the LoRA is swapped, rescaled or unloaded as needed.
        Textual inversions can only be added (a token cannot be taken back out of the
        tokenizer), so the ones loaded must come first in ``adapters``, in the same order.

        A recipe may come from someone else, so its file names are trusted only inside
        ``adapter_dirs``: a file outside them is refused without being looked at, and one inside
        must be a regular file of at most :data:`riffusion.limits.MAX_ADAPTER_BYTES`.
        Adapters already loaded (same fingerprint) need no file.

        Args:
            adapters: :class:`~riffusion.recipe.Adapter` objects, e.g. ``recipe.adapters``.
            adapter_dirs: folders whose files may be loaded (``[]`` by default: nothing is read).

        Returns:
            ``self``.

        Raises:
            ModelLoadError: a file outside ``adapter_dirs``, missing, unreadable, not a regular
                file, too large, or not the recorded one.
            ParameterError: a loaded textual inversion is not among ``adapters``.
        """
        if isinstance(adapter_dirs, str | os.PathLike) or not isinstance(adapter_dirs, Iterable):
            raise ParameterError(
                f"adapter_dirs={adapter_dirs!r} must be a list of folders, e.g. ['loras/']"
            )
        adapter_dirs = list(adapter_dirs)
        if isinstance(adapters, Adapter | str) or not isinstance(adapters, Iterable):
            raise ParameterError(
                f"adapters={adapters!r} must be a sequence of riffusion.recipe.Adapter objects"
            )
        adapters = tuple(adapters)
        if not all(isinstance(adapter, Adapter) for adapter in adapters):
            raise ParameterError(f"adapters={adapters!r} must be riffusion.recipe.Adapter objects")
        with self.lock:
            # Loading textual inversions leaves the LoRA as it is: one look at what is loaded.
            present = self._adapters()
            wanted = [a for a in adapters if a.kind == "textual_inversion"]
            loaded = [a for a in present if a.kind == "textual_inversion"]
            if [(a.fingerprint, a.token) for a in loaded] != [
                (a.fingerprint, a.token) for a in wanted[: len(loaded)]
            ]:
                raise ParameterError(
                    "textual inversions cannot be unloaded: this Riffuser has "
                    f"{[a.token for a in loaded]}, the adapters start with "
                    f"{[a.token for a in wanted[: len(loaded)]]}; use a fresh Riffuser"
                )
            for adapter in wanted[len(loaded) :]:
                _check_adapter_file(adapter, adapter_dirs)
                self.pipeline.load_textual_inversion(adapter.path, token=adapter.token)
            lora = next((a for a in adapters if a.kind == "lora"), None)
            current = next((a for a in present if a.kind == "lora"), None)
            if lora is None:
                self.pipeline.unload_lora()
                return self
            assert lora.scale is not None  # Adapter checks it
            if current is None or current.fingerprint != lora.fingerprint:
                _check_adapter_file(lora, adapter_dirs)
                self.pipeline.load_lora(lora.path, lora.scale)
            elif current.scale != lora.scale:
                self.pipeline.set_lora_scale(lora.scale)
        return self

    @contextlib.contextmanager
    def on_progress(self, callback: ProgressCallback) -> Iterator[None]:
        """Report every denoising step of the clips made in this block (in this thread).

        The callback is bound to the calling thread (a context variable), not to the instance:
        generations that other threads run on the same Riffuser are not reported. The
        background worker of ``stream(buffer_ahead=...)`` is the exception: it takes the
        context of the thread that starts iterating the stream, so the clips it makes ahead
        are reported when that thread iterates inside the block.

        Args:
            callback: called with a :class:`Progress` after each step; return ``True`` to
                cancel the clip in progress (it raises
                :class:`~riffusion.errors.GenerationCancelled` before the next step).

        Example:
            >>> with riffuser.on_progress(lambda p: print(p)):  # doctest: +SKIP
            ...     riffuser.text_to_audio("jazz", duration_s=10)
            window 1/3, step 1/37
        """
        if not callable(callback):
            raise ParameterError(f"callback={callback!r} must be callable")
        token = _PROGRESS.set(_ProgressState(callback))
        try:
            yield
        finally:
            _PROGRESS.reset(token)

    def _expect_windows(self, num_windows: int) -> None:
        state = _PROGRESS.get()
        if state is not None:
            state.window, state.num_windows = 0, num_windows

    def _step_callback(self) -> Callable[..., None] | None:
        """The pipeline step callback reporting to the current progress callback, if any."""
        state = _PROGRESS.get()
        if state is None:
            return None
        state.window += 1
        state.num_windows = max(state.num_windows, state.window)

        def report(pipeline: RiffusionPipeline, step: int, timestep: Any, kwargs: Any) -> None:
            done = Progress(state.window, state.num_windows, step + 1, kwargs["num_steps"])
            if state.callback(done):
                pipeline.interrupt = True

        return report

    @_serialized
    def set_scheduler(self, name: str) -> Riffuser:
        """Switch the sampling scheduler by name (recorded in recipes).

        Args:
            name: a scheduler name of ``SCHEDULER_NAMES`` (``"default"``, ``"ddim"``, ...).
        """
        self.pipeline.set_scheduler(name)
        return self

    def load_lora(self, path: str | os.PathLike[str], scale: float = 1.0) -> Riffuser:
        """Load fine-tuned LoRA weights (e.g. from :func:`riffusion.training.train_lora`).

        Args:
            path: ``pytorch_lora_weights.safetensors`` or the folder holding it.
            scale: strength (0 = off: the base model bit for bit; 1 = as trained).

        Returns:
            ``self``. Recipes of the clips made with it record the weights file, its
            fingerprint and the scale (:class:`~riffusion.recipe.Adapter`).
        """
        with self.lock:
            self.pipeline.load_lora(path, scale)
        return self

    def unload_lora(self) -> Riffuser:
        """Remove the loaded LoRA; generation uses the base model again. Returns ``self``."""
        with self.lock:
            self.pipeline.unload_lora()
        return self

    def __repr__(self) -> str:
        return f"Riffuser(model={self.model!r}, pipeline={self.pipeline!r})"

    # ------------------------------------------------------------------------ inputs
    def _decode_device(self) -> torch.device:
        # Phase recovery runs on CUDA when the model does; MPS lacks some FFT ops, so CPU there.
        device = self.pipeline.device
        return device if device.type == "cuda" else torch.device("cpu")

    def _seed_image(
        self, seed_image: Any, *, width: int = WINDOW_WIDTH
    ) -> tuple[Image.Image | None, str | None]:
        """Resolve ``seed_image=`` to (RGB image ``width`` wide or None, recipe identity).

        A string is always an id (built-in, registered or a Riffusion alias), never a path;
        files come as :class:`pathlib.Path` (or ``os.PathLike``).
        """
        if seed_image is None:
            return None, None
        if isinstance(seed_image, str):
            name = DEFAULT_SEED_IMAGE if seed_image == DEFAULT_SEED else seed_image
            resolved = resolve_seed_id(name)
            image = _fit_width(load_seed_image(resolved).convert("RGB"), width)
        elif isinstance(seed_image, Audio):
            length = self.params.samples_for_width(width)
            audio = seed_image.resample(self.params.sample_rate).to_mono()
            repeats = math.ceil(length / audio.num_samples)
            looped = Audio(np.tile(audio.waveform, (1, repeats)), audio.sample_rate)
            image = audio_to_image(looped.fit_length(length), self.params)
        elif isinstance(seed_image, Image.Image | os.PathLike):
            image = _fit_width(load_image(seed_image).convert("RGB"), width)
        else:
            raise ParameterError(
                f"seed_image must be an id (str), a pathlib.Path, a PIL image, Audio or None, "
                f"got {type(seed_image).__name__}"
            )
        if image.height != self.params.num_frequencies:
            raise ParameterError(
                f"seed_image height {image.height} must be {self.params.num_frequencies}"
            )
        if isinstance(seed_image, str):
            return image, resolved
        return image, f"custom:{image_fingerprint(image)}"

    def _mask_image(self, mask_image: Any) -> tuple[Image.Image | None, str | None]:
        """Resolve ``mask_image=``: ``None``/``""`` = no mask, a string id, a Path or PIL image."""
        if isinstance(mask_image, str) or mask_image is None:
            resolved = resolve_mask_id(mask_image)
            if resolved is None:
                return None, None
            return load_mask_image(resolved), resolved
        if not isinstance(mask_image, Image.Image | os.PathLike):
            raise ParameterError(
                f"mask_image must be an id (str), a pathlib.Path, a PIL image or None, got "
                f"{type(mask_image).__name__}"
            )
        image = load_image(mask_image).convert("L")
        return image, f"custom:{image_fingerprint(image)}"

    # --------------------------------------------------------------------- building blocks
    def _generate(
        self,
        start: PromptInput,
        end: PromptInput | None,
        alpha: float,
        *,
        init_image: Image.Image | None,
        mask_image: Image.Image | None,
        steps: int,
        periodic: bool = False,
        width: int = WINDOW_WIDTH,
    ) -> tuple[Image.Image, dict[str, Any]]:
        result = self.pipeline.riffuse(
            start,
            end,
            alpha,
            init_image=init_image,
            mask_image=mask_image,
            num_inference_steps=steps,
            width=None if init_image is not None else width,
            height=None if init_image is not None else self.params.num_frequencies,
            periodic=periodic,
            callback_on_step_end=self._step_callback(),
        )
        info = {
            "alpha": result.alpha,
            "seeds": list(result.seeds),
            "denoising": result.denoising,
            "guidance": result.guidance,
            "timesteps": list(result.timesteps),
            "timings_s": dict(result.timings_s),
        }
        return result.image, info

    def _with_exif(self, image: Image.Image) -> Image.Image:
        exif = image.getexif()
        for tag, value in self.params.to_exif().items():
            exif[int(tag)] = value
        return image

    def _finish(
        self,
        image: Image.Image,
        recipe: Recipe,
        windows: list[dict[str, Any]],
        started: float,
        *,
        num_samples: int | None = None,
        periodic: bool = False,
    ) -> Clip:
        self._expect_windows(1)  # the next clip starts again at window 1
        decode_started = time.perf_counter()
        audio = image_to_audio(
            image,
            self.params,
            method="fast" if periodic else recipe.decode_method,
            seed=recipe.decode_seed,
            periodic=periodic,
            device=self._decode_device(),
        )
        if num_samples is not None:
            audio = audio.fit_length(num_samples)
        decode_s = time.perf_counter() - decode_started
        generation = {
            key: sum(window["timings_s"].get(key, 0.0) for window in windows)
            for key in ("text_encoder", "vae_encode", "unet", "vae_decode", "total")
        }
        debug = {
            "alphas": [window["alpha"] for window in windows],
            "seeds": [window["seeds"] for window in windows],
            "strengths": [window["denoising"] for window in windows],
            "guidance": [window["guidance"] for window in windows],
            "timesteps": [window["timesteps"] for window in windows],
            "timings_s": {
                "generation": generation["total"],
                "text_encoder": generation["text_encoder"],
                "vae_encode": generation["vae_encode"],
                "unet": generation["unet"],
                "vae_decode": generation["vae_decode"],
                "audio_decode": decode_s,
                "total": time.perf_counter() - started,
            },
        }
        return Clip(audio=audio, image=self._with_exif(image), recipe=recipe, debug=debug)

    def _recipe(self, kind: str, start: PromptInput, **values: Any) -> Recipe:
        # What will run: the pipeline's scheduler as it is now, however it was set.
        scheduler, overrides = self.pipeline.describe_scheduler()
        return Recipe(
            kind=kind,
            model=self.model,
            scheduler=scheduler,
            scheduler_config=overrides or None,
            start=start,
            decode_method=self.decode_method,
            decode_seed=self.decode_seed,
            params=self.params,
            adapters=self._adapters(),
            **values,
        )

    def _adapters(self) -> tuple[Adapter, ...]:
        """The textual inversions and the LoRA loaded now, as recipes record them."""
        adapters = [
            Adapter(
                kind="textual_inversion",
                path=path,
                fingerprint=_adapter_fingerprint("textual_inversion", path),
                token=token,
            )
            for path, token in self.pipeline.textual_inversions
        ]
        if self.pipeline.lora is not None:
            path, scale = self.pipeline.lora
            adapters.append(
                Adapter(
                    kind="lora",
                    path=path,
                    fingerprint=_adapter_fingerprint("lora", path),
                    scale=scale,
                )
            )
        return tuple(adapters)

    @contextlib.contextmanager
    def _adapters_of(self, recipe: Recipe) -> Iterator[None]:
        """Check that the recipe's adapters are the loaded ones; run the block at its LoRA scale.

        The weights must be the same (by fingerprint; paths may differ between machines) and
        loaded in the same order; only the LoRA scale may differ, and it is set for the block
        and put back after.
        """

        def identity(adapters: tuple[Adapter, ...]) -> list[tuple[str, str, str | None]]:
            return [(a.kind, a.fingerprint, a.token) for a in adapters]

        loaded = self._adapters()
        if identity(loaded) != identity(recipe.adapters):

            def describe(adapters: tuple[Adapter, ...]) -> str:
                return ", ".join(f"{a.kind} {a.path} ({a.fingerprint})" for a in adapters) or (
                    "none"
                )

            raise ParameterError(
                f"the recipe was made with adapters [{describe(recipe.adapters)}] but this "
                f"Riffuser has [{describe(loaded)}]: load the same weights "
                "(load_lora / load_textual_inversion) or use Riffuser.from_recipe(recipe)"
            )
        wanted = next((a.scale for a in recipe.adapters if a.kind == "lora"), None)
        own = self.pipeline.lora[1] if self.pipeline.lora is not None else None
        if wanted is None or own is None or wanted == own:  # own is set when wanted is
            yield
            return
        self.pipeline.set_lora_scale(wanted)
        try:
            yield
        finally:
            self.pipeline.set_lora_scale(own)

    # ------------------------------------------------------------------------ public API
    @_serialized
    @_diffusers_friendly
    def text_to_audio(
        self,
        prompt: str,
        *,
        seed: int | None = None,
        negative_prompt: str | None = None,
        denoising: float = 0.75,
        guidance: float = 7.0,
        num_inference_steps: int = 50,
        seed_image: Any = DEFAULT_SEED,
        mask_image: Any = None,
        duration_s: float | None = None,
    ) -> Clip:
        """Generate music from a text prompt.

        Args:
            prompt: what to play (supports ``(word:1.3)`` emphasis).
            seed: noise seed; ``None`` draws one (recorded in the recipe).
            negative_prompt: what to steer away from.
            denoising: img2img strength in [0, 1] against the seed image (ignored without one).
            guidance: classifier-free guidance scale.
            num_inference_steps: scheduler steps of a full run.
            seed_image: an id (built-in name, see :func:`riffusion.seed_images`; an id
                registered with :func:`riffusion.seeds.register_seed_images`; or one of the
                Riffusion web app's ids in :data:`riffusion.seeds.RIFFUSION_ALIASES`), a
                :class:`pathlib.Path` to an image, a PIL image, :class:`Audio`, or ``None`` for
                pure text-to-image. Default ``"straight_beat"``. Strings are never paths.
            mask_image: a mask id, :class:`pathlib.Path` or PIL image (white = regenerate);
                ``None`` or ``""`` for no mask; applies to the first window.
            duration_s: length in seconds, (0, 600]; ``None`` is one model window, 512 columns
                = ``params.samples_for_width(512)`` = 225,351 samples = 5.11 s. Longer music is
                continued: each next window is in-painted with the last 2.56 s of the previous
                one kept as context, and the joined spectrogram is decoded in one piece, so
                there are no seams in the phase.

        diffusers' ``guidance_scale=`` and ``strength=`` are accepted for ``guidance`` and
        ``denoising``; without ``num_inference_steps``, :attr:`default_num_inference_steps`
        applies.

        Returns:
            A :class:`Clip` of exactly ``round(duration_s * sample_rate)`` samples.
        """
        _check_prompt(prompt, "riffuser.text_to_audio('funky bass', seed=42)")
        if duration_s is None:
            duration_s = self.params.samples_for_width(WINDOW_WIDTH) / self.params.sample_rate
        duration_s = _check_duration(duration_s)
        steps = _check_steps(num_inference_steps)
        seed = _random_seed() if seed is None else seed
        start = PromptInput(
            prompt=prompt,
            seed=seed,
            negative_prompt=negative_prompt,
            denoising=denoising,
            guidance=guidance,
        )
        seed_picture, seed_identity = self._seed_image(seed_image)
        mask_picture, mask_identity = self._mask_image(mask_image)
        if mask_picture is not None and seed_picture is None:
            raise ParameterError("mask_image needs a seed image; seed_image=None has none")
        recipe = self._recipe(
            "text_to_audio",
            start,
            num_inference_steps=steps,
            seed_image=seed_identity,
            mask_image=mask_identity,
            duration_s=duration_s,
        )
        return self._text_to_audio(recipe, seed_picture, mask_picture)

    def _text_to_audio(
        self, recipe: Recipe, seed_picture: Image.Image | None, mask_picture: Image.Image | None
    ) -> Clip:
        started = time.perf_counter()
        start = recipe.start
        num_samples = round(recipe.duration_s * self.params.sample_rate)
        # The narrowest image that decodes to at least num_samples: (columns − 1)·hop ≥ n.
        columns = max(2, math.ceil(num_samples / self.params.hop_length) + 1)
        # Before any window is generated: the whole image is decoded at once at the end.
        check_decode_size(
            columns,
            self.params.num_channels,
            self.params,
            recipe.decode_method,
            what=f"a clip of duration_s={recipe.duration_s:g}",
        )
        windows_needed = 1 + max(
            0, math.ceil((columns - WINDOW_WIDTH) / (WINDOW_WIDTH - _CONTEXT_PX))
        )
        _check_seed_walk(start.seed, windows_needed)
        self._expect_windows(windows_needed)
        image, info = self._generate(
            start,
            None,
            0.0,
            init_image=seed_picture,
            mask_image=mask_picture,
            steps=recipe.num_inference_steps,
        )
        windows = [info]
        joined = _pixels(image)
        window = 1
        while joined.shape[1] < columns:
            # Continue: keep the last bar as context, regenerate the rest from the seed image.
            context = _to_image(joined[:, -_CONTEXT_PX:])
            init = Image.new("RGB", (WINDOW_WIDTH, image.height))
            init.paste(context, (0, 0))
            if seed_picture is not None:
                init.paste(
                    seed_picture.crop((_CONTEXT_PX, 0, WINDOW_WIDTH, image.height)),
                    (_CONTEXT_PX, 0),
                )
                window_start = dataclasses.replace(start, seed=start.seed + window)
            else:
                # Without a seed image the new part starts from noise (full strength).
                init.paste(
                    Image.new("RGB", (WINDOW_WIDTH - _CONTEXT_PX, image.height), "white"),
                    (_CONTEXT_PX, 0),
                )
                window_start = dataclasses.replace(start, seed=start.seed + window, denoising=1.0)
            mask = time_range_mask(
                width=WINDOW_WIDTH, height=image.height, keep_start_px=0, keep_end_px=_CONTEXT_PX
            )
            generated, info = self._generate(
                window_start,
                None,
                0.0,
                init_image=init,
                mask_image=mask,
                steps=recipe.num_inference_steps,
            )
            windows.append(info)
            new = _pixels(generated)
            # Blend the last columns of the context into the regenerated window's version of
            # them, so the join follows the model's own transition.
            ramp = np.linspace(0.0, 1.0, _BLEND_PX, dtype=np.float32)[None, :, None]
            tail = (
                joined[:, -_BLEND_PX:] * (1 - ramp)
                + new[:, _CONTEXT_PX - _BLEND_PX : _CONTEXT_PX] * ramp
            )
            joined = np.concatenate([joined[:, :-_BLEND_PX], tail, new[:, _CONTEXT_PX:]], axis=1)
            window += 1
        full = _to_image(joined[:, :columns])
        return self._finish(full, recipe, windows, started, num_samples=num_samples)

    @_serialized
    @_diffusers_friendly
    def audio_to_audio(
        self,
        audio: Audio | str | os.PathLike[str],
        prompt: str,
        *,
        denoising: float = 0.5,
        seed: int | None = None,
        negative_prompt: str | None = None,
        guidance: float = 7.0,
        num_inference_steps: int = 50,
    ) -> Clip:
        """Transform audio of any length with a prompt (style transfer on the spectrogram).

        The audio is resampled and mixed to mono, encoded as a spectrogram
        (``params.width_for_samples(n)`` columns), cut into 512-column windows overlapping by
        64 columns (one window, padded, for shorter audio), each window
        regenerated with img2img (window ``k`` uses seed ``seed + k``), the windows crossfaded
        back together in the image and the result decoded in one piece.

        Args:
            audio: input :class:`Audio` or a path to an audio file (any rate, channels,
                length of at least 10 ms).
            prompt: what it should sound like.
            denoising: strength in [0, 1]; low keeps more of the input.
            seed: noise seed of the first window; ``None`` draws one.
            negative_prompt: what to steer away from.
            guidance: classifier-free guidance scale.
            num_inference_steps: scheduler steps of a full run.

        Returns:
            A :class:`Clip` as long as the input (at ``params.sample_rate``).
        """
        example = "riffuser.audio_to_audio('song.wav', 'jazz piano', denoising=0.5)"
        if isinstance(prompt, Audio | os.PathLike) and isinstance(audio, str):
            raise ParameterError(
                f"audio and prompt look swapped: the audio comes first, e.g. {example}"
            )
        audio = _as_audio(audio, example)
        _check_prompt(prompt, example)
        steps = _check_steps(num_inference_steps)
        seed = _random_seed() if seed is None else seed
        start = PromptInput(
            prompt=prompt,
            seed=seed,
            negative_prompt=negative_prompt,
            denoising=denoising,
            guidance=guidance,
        )
        started = time.perf_counter()
        prepared = audio.resample(self.params.sample_rate).to_mono()
        source = audio_to_image(prepared, self.params)
        recipe = self._recipe(
            "audio_to_audio",
            start,
            num_inference_steps=steps,
            seed_image=None,
            duration_s=prepared.duration_s,
            input_audio=image_fingerprint(source),
        )
        return self._audio_to_audio(recipe, source, prepared.num_samples, started)

    def _audio_to_audio(
        self, recipe: Recipe, source: Image.Image, num_samples: int, started: float
    ) -> Clip:
        """Transform the spectrogram ``source`` of the (resampled, mono) input audio."""
        columns = source.width
        check_decode_size(
            columns,
            self.params.num_channels,
            self.params,
            recipe.decode_method,
            what=f"input audio of {recipe.duration_s:g} s",
        )
        # The UNet halves the latent grid three times: keep widths a multiple of 64 pixels.
        padded_width = max(64, math.ceil(columns / 64) * 64)
        window_width = min(WINDOW_WIDTH, padded_width)
        canvas = Image.new("RGB", (padded_width, source.height), "white")
        canvas.paste(source, (0, 0))
        if padded_width <= window_width:  # one window holds it all (short input)
            lefts = [0]
        else:
            lefts = list(range(0, padded_width - window_width, window_width - _OVERLAP_PX))
            if lefts[-1] + window_width < padded_width:
                lefts.append(padded_width - window_width)
        _check_seed_walk(recipe.start.seed, len(lefts))
        self._expect_windows(len(lefts))
        total = np.zeros((source.height, padded_width, 3), np.float32)
        weights = np.zeros((1, padded_width, 1), np.float32)
        windows = []
        ramp = np.linspace(0.0, 1.0, _OVERLAP_PX + 2, dtype=np.float32)[1:-1]
        for index, left in enumerate(lefts):
            window_start = dataclasses.replace(recipe.start, seed=recipe.start.seed + index)
            crop = canvas.crop((left, 0, left + window_width, source.height))
            generated, info = self._generate(
                window_start,
                None,
                0.0,
                init_image=crop,
                mask_image=None,
                steps=recipe.num_inference_steps,
            )
            windows.append(info)
            weight = np.ones(window_width, np.float32)
            if index > 0:
                weight[:_OVERLAP_PX] = ramp
            if index < len(lefts) - 1:
                weight[-_OVERLAP_PX:] = ramp[::-1]
            total[:, left : left + window_width] += _pixels(generated) * weight[None, :, None]
            weights[:, left : left + window_width] += weight[None, :, None]
        joined = _to_image(total / np.maximum(weights, 1e-6))
        full = joined.crop((0, 0, columns, source.height))
        return self._finish(full, recipe, windows, started, num_samples=num_samples)

    @_serialized
    @_diffusers_friendly
    def riffuse(
        self,
        start: PromptInput | str,
        end: PromptInput | str | None = None,
        alpha: float = 0.0,
        *,
        num_inference_steps: int = 50,
        seed_image: Any = DEFAULT_SEED,
        mask_image: Any = None,
    ) -> Clip:
        """One interpolation step between two prompt inputs (one 512-column window: 5.11 s).

        Text embeddings are mixed linearly, the seeds' noise spherically, denoising and
        guidance linearly; ``alpha=0`` is the start alone, ``alpha=1`` the end alone.

        Args:
            start: the prompt input at ``alpha = 0``.
            end: the prompt input at ``alpha = 1``; ``None`` uses ``start`` alone.
            alpha: interpolation weight in [0, 1].
            num_inference_steps: scheduler steps of a full run (img2img runs about
                ``denoising × steps``).
            seed_image: an id, a PIL image, :class:`~riffusion.Audio`, ``DEFAULT_SEED`` or
                ``None`` (text-to-image).
            mask_image: mask id or ``L`` image (white = regenerate), or ``None``.
        """
        # Plain strings stand for PromptInput(text, seed=0) (start) and seed=1 (end), as
        # stream() treats them.
        start = _as_prompt_input(start, 0, "start")
        end = None if end is None else _as_prompt_input(end, start.seed + 1, "end")
        steps = _check_steps(num_inference_steps)
        if not isinstance(start, PromptInput) or not isinstance(end, PromptInput | None):
            raise ParameterError("start and end must be riffusion.PromptInput values")
        seed_picture, seed_identity = self._seed_image(seed_image)
        mask_picture, mask_identity = self._mask_image(mask_image)
        recipe = self._recipe(
            "riffuse",
            start,
            end=end,
            alpha=alpha,
            num_inference_steps=steps,
            seed_image=seed_identity,
            mask_image=mask_identity,
            duration_s=self.params.samples_for_width(WINDOW_WIDTH) / self.params.sample_rate,
        )
        return self._riffuse(recipe, seed_picture, mask_picture)

    def _riffuse(
        self, recipe: Recipe, seed_picture: Image.Image | None, mask_picture: Image.Image | None
    ) -> Clip:
        started = time.perf_counter()
        image, info = self._generate(
            recipe.start,
            recipe.end,
            recipe.alpha,
            init_image=seed_picture,
            mask_image=mask_picture,
            steps=recipe.num_inference_steps,
        )
        return self._finish(image, recipe, [info], started)

    def interpolate(
        self, start: PromptInput | str, end: PromptInput | str, num_clips: int, **options: Any
    ) -> list[Clip]:
        """``num_clips`` clips along alpha from 0 to 1 inclusive (options as :meth:`riffuse`).

        Args:
            start: the prompt input at alpha 0.
            end: the prompt input at alpha 1.
            num_clips: clips at ``alpha = k / (num_clips - 1)``, an int >= 2.
            **options: ``num_inference_steps``, ``seed_image``, ``mask_image`` for every clip.
        """
        check_integer("num_clips", num_clips, minimum=2)
        # Plain strings as riffuse() takes them: start seed 0, end seed 1.
        start = _as_prompt_input(start, 0, "start")
        end = _as_prompt_input(end, start.seed + 1, "end")
        alphas = [index / (num_clips - 1) for index in range(num_clips)]
        return [self.riffuse(start, end, alpha, **options) for alpha in alphas]

    def stream(
        self,
        prompts: Iterable[PromptInput | str] | PromptInput | str,
        *,
        steps_per_transition: int = 4,
        max_clips: int | None = None,
        endless: bool = True,
        buffer_ahead: int = 0,
        **options: Any,
    ) -> Iterator[Clip]:
        """The web app's endless playback, as an iterator of one-window (5.11 s) clips.

        Moves between successive prompts in ``steps_per_transition`` alpha steps; when the
        prompt stays the same (or the prompts run out, with ``endless``) the seed walks
        ``n → n + 1``. All clips share the seed image, so they line up on its beat and can be
        played back to back (see :func:`riffusion.stitch`). Each clip is
        ``params.samples_for_width(512)`` = 225,351 samples, exactly what Riffusion's server
        sent; the 512 columns span 5.12 s of beat grid, so clips played end to end drift
        10 ms per clip against the seed's beat, as in the original app. Each clip's ``debug``
        holds its ``alphas`` and ``seeds``.

        Args:
            prompts: :class:`PromptInput` values or strings (see
                :func:`riffusion.schedule.stream_schedule`).
            steps_per_transition: clips per transition (4: alpha 0, 0.25, 0.5, 0.75).
            max_clips: stop after this many clips (``None``: as the schedule goes).
            endless: keep walking the seed after the last prompt.
            buffer_ahead: generate up to this many clips ahead in a background thread while the
                caller plays the current one (the web app keeps 3); 0 generates on demand.
                Clips and their order are the same either way.
            **options: ``num_inference_steps``, ``seed_image``, ``mask_image`` for every clip.

        Raises:
            ParameterError: bad arguments, raised at the call, before any clip is made.
        """
        if max_clips is not None:
            check_integer("max_clips", max_clips, minimum=0)
        check_integer("buffer_ahead", buffer_ahead, minimum=0)
        unknown = sorted(set(options) - {"num_inference_steps", "seed_image", "mask_image"})
        if unknown:
            raise ParameterError(
                f"stream() got unknown option(s) {unknown}; it takes num_inference_steps, "
                "seed_image and mask_image for every clip"
            )
        if "num_inference_steps" in options:
            _check_steps(options["num_inference_steps"])
        self._seed_image(options.get("seed_image", DEFAULT_SEED))  # checked now, once
        self._mask_image(options.get("mask_image"))
        schedule = stream_schedule(
            prompts, steps_per_transition=steps_per_transition, endless=endless
        )

        def clips() -> Iterator[Clip]:
            for step in schedule:
                if max_clips is not None and step.index >= max_clips:
                    return
                end = None if step.end == step.start else step.end
                yield self.riffuse(step.start, end, step.alpha if end else 0.0, **options)

        return clips() if buffer_ahead == 0 else _buffered(clips(), buffer_ahead)

    @_serialized
    @_diffusers_friendly
    def loop(
        self,
        prompt: str,
        *,
        seed: int | None = None,
        negative_prompt: str | None = None,
        denoising: float = 0.75,
        guidance: float = 7.0,
        num_inference_steps: int = 50,
        seed_image: Any = DEFAULT_SEED,
        bars: int | None = None,
    ) -> Clip:
        """A clip that loops seamlessly: one period of 512 columns, 225,792 samples = 5.12 s.

        A periodic image's last column continues into its first, so it decodes to
        ``params.samples_for_width(512, periodic=True)`` = 512 · hop samples (the one-shot
        convention's 511 · hop plus the hop that leads back to the start). The generation
        itself is periodic in time (circular padding along the latent time
        axis in the UNet and VAE), and the phase is recovered with circular framing
        (:func:`riffusion.joins.periodic_image_to_audio`), so played end to start there is no
        click or jump. The built-in seed images are two bars at 93.75 BPM, so the loop is two
        bars long; :func:`riffusion.trim_to_bars` trims other audio to whole bars.

        Args:
            prompt: what to play.
            seed: noise seed in [0, 2**63); ``None`` draws one (recorded in the recipe).
            negative_prompt: what to steer away from.
            denoising: img2img strength in [0, 1].
            guidance: classifier-free guidance scale, >= 0.
            num_inference_steps: scheduler steps of a full run.
            seed_image: seed image (as :meth:`riffuse`); its loop is made periodic.
            bars: length in 4/4 bars at the seed images' tempo (``riffusion.seeds.SEED_BPM``),
                an int in [1, 16]; ``None`` is one period of 512 columns (two bars).
        """
        # bars=n: the loop is n bars of 4/4 at the seed images' tempo (riffusion.seeds.SEED_BPM,
        # 93.75 BPM: a bar is 2.56 s = 256 columns), 1 to 16; the seed image is tiled (or
        # cropped) to that width. None: one period of 512 columns (2 bars). See docs/guide.md.
        _check_prompt(prompt, "riffuser.loop('techno beat', seed=42, bars=4)")
        width = self._loop_width(bars)
        steps = _check_steps(num_inference_steps)
        seed = _random_seed() if seed is None else seed
        start = PromptInput(
            prompt=prompt,
            seed=seed,
            negative_prompt=negative_prompt,
            denoising=denoising,
            guidance=guidance,
        )
        seed_picture, seed_identity = self._seed_image(seed_image, width=width)
        recipe = self._recipe(
            "loop",
            start,
            num_inference_steps=steps,
            seed_image=seed_identity,
            duration_s=self.params.samples_for_width(width, periodic=True)
            / self.params.sample_rate,
        )
        return self._loop(recipe, seed_picture)

    def _loop_width(self, bars: Any) -> int:
        """Columns of a loop ``bars`` bars long at SEED_BPM (``None``: one 512-column window)."""
        if bars is None:
            return WINDOW_WIDTH
        from riffusion.seeds import SEED_BPM

        check_integer("bars", bars, minimum=1)
        if bars > _MAX_LOOP_BARS:
            raise ParameterError(f"bars={bars} must be at most {_MAX_LOOP_BARS}")
        bar_s = 4 * 60.0 / SEED_BPM
        columns = bars * bar_s * self.params.sample_rate / self.params.hop_length
        # The UNet halves the latent grid three times: widths are multiples of 64 pixels.
        return max(64, round(columns / 64) * 64)

    def _loop_recipe_width(self, recipe: Recipe) -> int:
        """The loop width a recipe's duration stands for (periodic: width · hop samples)."""
        return round(recipe.duration_s * self.params.sample_rate / self.params.hop_length)

    def _loop(self, recipe: Recipe, seed_picture: Image.Image | None) -> Clip:
        started = time.perf_counter()
        if seed_picture is not None:
            seed_picture = _fit_width(seed_picture, self._loop_recipe_width(recipe))
        image, info = self._generate(
            recipe.start,
            None,
            0.0,
            init_image=seed_picture,
            mask_image=None,
            steps=recipe.num_inference_steps,
            periodic=True,
            width=self._loop_recipe_width(recipe),
        )
        return self._finish(image, recipe, [info], started, periodic=True)

    @_serialized
    def render(
        self,
        recipe: Recipe | str,
        *,
        seed_image: Any = None,
        mask_image: Any = None,
        audio: Audio | str | os.PathLike[str] | None = None,
    ) -> Clip:
        """Make the clip a recipe describes again — bit for bit on the same device and versions.

        Everything comes from the recipe: the scheduler (built fresh for this call from the
        recorded name and config, on this model's noise schedule), the decode method and seed,
        the seed and mask images. The Riffuser is left as it was: its decode settings are not
        touched, and the pipeline's scheduler object is the same before and after (while the
        call runs, the recipe's scheduler is installed on the pipeline, which is not
        thread-safe anyway). The recipe's LoRA and textual inversions must be the ones loaded
        (the same files, by fingerprint, else :class:`ParameterError`); a LoRA scale that
        differs is used for this call and put back. To render in a fresh process, use
        ``Riffuser.from_recipe(recipe).render(recipe)``, which loads them.

        "Same" includes torch's CPU thread count (``torch.get_num_threads()``): reductions are
        split per thread, so a different count changes the last bits and, through the
        iterations, the audio.

        Args:
            recipe: a :class:`Recipe`, its JSON, or its URL string.
            seed_image: the custom seed image a ``custom:`` recipe used (checked by fingerprint).
            mask_image: likewise for a custom mask.
            audio: the input audio of an ``audio_to_audio`` recipe (checked by fingerprint).
        """
        recipe = Recipe.parse(recipe)
        if recipe.params != self.params:
            raise ParameterError(
                f"recipe params {recipe.params} differ from this Riffuser's {self.params}"
            )
        with self._scheduler_of(recipe), self._adapters_of(recipe):
            if recipe.kind == "audio_to_audio":
                if audio is None:
                    raise ParameterError("this recipe transforms audio: pass audio=")
                audio = _as_audio(audio, "riffuser.render(recipe, audio='song.wav')")
                started = time.perf_counter()
                prepared = audio.resample(self.params.sample_rate).to_mono()
                source = audio_to_image(prepared, self.params)
                found = image_fingerprint(source)
                if found != recipe.input_audio:
                    raise ParameterError(
                        f"audio fingerprint {found} differs from the recipe's {recipe.input_audio}"
                    )
                return self._audio_to_audio(recipe, source, prepared.num_samples, started)
            resolve_seed = self._seed_image
            if recipe.kind == "loop":  # a loop's seed image is as wide as the loop
                resolve_seed = functools.partial(
                    self._seed_image, width=self._loop_recipe_width(recipe)
                )
            seed_picture = self._recipe_image(recipe.seed_image, seed_image, resolve_seed)
            mask_picture = self._recipe_image(recipe.mask_image, mask_image, self._mask_image)
            if recipe.kind == "text_to_audio":
                return self._text_to_audio(recipe, seed_picture, mask_picture)
            if recipe.kind == "loop":
                return self._loop(recipe, seed_picture)
            return self._riffuse(recipe, seed_picture, mask_picture)

    @contextlib.contextmanager
    def _scheduler_of(self, recipe: Recipe) -> Iterator[None]:
        """Run the block with the recipe's scheduler; the pipeline's own is put back after."""
        overrides = recipe.scheduler_config or {}
        if self.pipeline.describe_scheduler() == (recipe.scheduler, overrides):
            yield
            return
        own = self.pipeline.scheduler
        self.pipeline.scheduler = self.pipeline.build_scheduler(recipe.scheduler, overrides)
        try:
            yield
        finally:
            self.pipeline.scheduler = own

    @staticmethod
    def _recipe_image(identity: str | None, given: Any, resolve: Any) -> Image.Image | None:
        if identity is None:
            return None
        if identity.startswith("custom:"):
            if given is None:
                raise ParameterError(
                    f"the recipe used a custom image ({identity}); pass it to render()"
                )
            picture, found = resolve(given)
            if found != identity:
                raise ParameterError(f"image identity {found} differs from the recipe's {identity}")
            return picture
        return resolve(identity)[0]
