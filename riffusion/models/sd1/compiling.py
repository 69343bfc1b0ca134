"""``torch.compile`` for the GPU path: the UNet and the VAE decoder, compiled once per pipeline.

A clip spends its time in the UNet (one call per denoising step) and the VAE decoder (one call);
both see the same shapes clip after clip (``(2, 4, 64, 64)`` latents for a 512x512 image with
guidance, ``(1, 4, 64, 64)`` without), so they are compiled in place (``nn.Module.compile``:
the modules stay the same objects, their weights, adapters and configs where they were) with
static shapes, and every later clip of those shapes reuses the compiled code. What the compiled
graphs depend on is guarded by ``torch._dynamo``: another shape or dtype, switching guidance on or
off (batch 2 or 1), ``periodic=True`` (circular padding), a new LoRA scale or another adapter
compiles again, once per variant (up to ``torch._dynamo.config.cache_size_limit``, 8, per
module), and never silently reuses a graph that no longer fits.

Attention keeps the processors the model has: diffusers' default ``AttnProcessor2_0``
(``scaled_dot_product_attention``, flash / memory-efficient kernels on CUDA), which inductor
compiles as one kernel. ``channels_last`` stores the convolution weights NHWC, the layout
cuDNN's float16 and bfloat16 convolutions run fastest in. Works in any dtype the pipeline has
(float32, float16, bfloat16); compile after ``to(device, dtype)`` and after loading adapters, so
the first clip compiles what every later one runs.

The first clip after :func:`compile_models` pays the compilation (with inductor, 158 s for even
the tiny test model on a 2-core CPU); ``mode="reduce-overhead"`` then replays CUDA graphs, which
removes the per-kernel launch cost that dominates a 4-step sampler at batch 1.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from riffusion.errors import DeviceError, ParameterError

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, UNet2DConditionModel

__all__ = [
    "COMPILE_MODES",
    "CompileMixin",
    "CompileSettings",
    "check_compile_settings",
    "compile_models",
]

#: inductor's modes, as ``torch.compile(mode=...)`` takes them: ``"reduce-overhead"`` adds CUDA
#: graphs, ``"max-autotune"`` benchmarks kernel choices too (slow to compile, fastest to run).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class CompileSettings:
    """How a pipeline's UNet and VAE decoder were compiled (``torch.compile`` arguments).

    Attributes:
        mode: one of :data:`COMPILE_MODES`; passed to inductor only.
        fullgraph: refuse graph breaks (each module must compile to one graph).
        channels_last: convolution weights stored NHWC.
        backend: the ``torch.compile`` backend: a registered name or a callable
            ``backend(graph_module, example_inputs) -> callable``.
        dynamic: ``False``: static shapes (one graph per shape); ``True``: shape-generic graphs;
            ``None``: torch's default (static first, dynamic after a shape changes).
    """

    mode: str
    fullgraph: bool
    channels_last: bool
    backend: str | Callable[..., Any]
    dynamic: bool | None


def _backend_names() -> list[str]:
    from torch._dynamo import list_backends

    return sorted({"inductor", *list_backends(exclude_tags=())})


def check_compile_settings(
    *,
    mode: Any,
    fullgraph: Any,
    channels_last: Any,
    backend: Any,
    dynamic: Any,
) -> CompileSettings:
    """Check the arguments of :meth:`CompileMixin.compile` before anything is compiled.

    Args:
        mode: one of :data:`COMPILE_MODES`.
        fullgraph: a bool.
        channels_last: a bool.
        backend: a backend name ``torch._dynamo.list_backends(exclude_tags=())`` lists, or a
            callable.
        dynamic: a bool or ``None``.

    Returns:
        The checked settings.

    Raises:
        ParameterError: naming the bad argument, its value and what was expected.
    """
    if not isinstance(mode, str) or mode not in COMPILE_MODES:
        raise ParameterError(
            f"mode={mode!r} is not a torch.compile mode; expected one of {list(COMPILE_MODES)}"
        )
    for name, value in (("fullgraph", fullgraph), ("channels_last", channels_last)):
        if not isinstance(value, bool):
            raise ParameterError(f"{name}={value!r} must be a bool")
    if dynamic is not None and not isinstance(dynamic, bool):
        raise ParameterError(f"dynamic={dynamic!r} must be a bool or None")
    if not callable(backend) and (not isinstance(backend, str) or backend not in _backend_names()):
        raise ParameterError(
            f"backend={backend!r} is not a torch.compile backend; expected a callable or one of "
            f"{_backend_names()}"
        )
    return CompileSettings(mode, fullgraph, channels_last, backend, dynamic)


def _check_cpu_compiler(settings: CompileSettings, device: torch.device) -> None:
    """inductor on the CPU writes C++: refuse early, and say so, when no compiler is found."""
    if settings.backend != "inductor" or device.type != "cpu":
        return
    candidates = (os.environ.get("CXX"), "g++", "c++", "clang++")
    if not any(shutil.which(name) for name in candidates if name):
        raise DeviceError(
            f"backend='inductor' on device={str(device)!r} needs a C++ compiler (g++, c++ or "
            "clang++ on PATH, or CXX); install one, or compile(backend='eager') to check the "
            "graphs without generated code"
        )


def compile_models(
    unet: UNet2DConditionModel, vae: AutoencoderKL, settings: CompileSettings
) -> None:
    """Compile ``unet`` and ``vae.decoder`` in place (``nn.Module.compile``), NHWC if asked.

    Nothing is compiled until the first call; each module then compiles once per shape, dtype
    and configuration (see the module docstring) and reuses its graphs afterwards.

    Args:
        unet: the pipeline's ``UNet2DConditionModel``; ``(B, 4, h, w)`` latents in, same out.
        vae: the pipeline's ``AutoencoderKL``; its ``decoder`` (``(1, 4, h, w)`` latents to
            ``(1, 3, 8h, 8w)`` pixels) is compiled, the encoder (once per clip) is not.
        settings: from :func:`check_compile_settings`.
    """
    if settings.channels_last:
        unet.to(memory_format=torch.channels_last)
        vae.to(memory_format=torch.channels_last)
    options: dict[str, Any] = {
        "backend": settings.backend,
        "fullgraph": settings.fullgraph,
        "dynamic": settings.dynamic,
    }
    if settings.backend == "inductor":  # other backends would receive mode as an argument
        options["mode"] = settings.mode
    unet.compile(**options)
    vae.decoder.compile(**options)


_Pipeline = TypeVar("_Pipeline", bound="CompileMixin")


class CompileMixin:
    """The ``compile`` method of :class:`~riffusion.models.sd1.pipeline.RiffusionPipeline`."""

    unet: Any
    vae: Any
    _offload_hooks: list[Any]
    _sequential_offload: bool
    _compiled: CompileSettings | None

    if TYPE_CHECKING:  # the pipeline's read-only property

        @property
        def device(self) -> torch.device: ...

    def compile(
        self: _Pipeline,
        *,
        mode: str = "reduce-overhead",
        fullgraph: bool = False,
        channels_last: bool = True,
        backend: str | Callable[..., Any] = "inductor",
        dynamic: bool | None = False,
    ) -> _Pipeline:
        """``torch.compile`` the UNet and the VAE decoder for fast repeated clips.

        Compile once the pipeline is on its device, in its dtype and with its adapters; the
        first clip then compiles (with inductor, minutes), and every later clip of the same
        shape (512x512 pixels: ``(2, 4, 64, 64)`` UNet latents with guidance, batch 1
        without) reuses the compiled code. Outputs equal the uncompiled ones up to float
        rounding (fused kernels, NHWC convolutions). See :mod:`riffusion.models.sd1.compiling`.

        Args:
            mode: inductor's mode, one of :data:`COMPILE_MODES`; ``"reduce-overhead"`` replays
                CUDA graphs (on CUDA; on the CPU it is ``"default"``).
            fullgraph: refuse graph breaks.
            channels_last: store convolution weights NHWC (faster float16/bfloat16 convolutions
                on CUDA).
            backend: ``"inductor"`` (generated Triton / C++ code), ``"eager"`` or
                ``"aot_eager"`` (trace only: checks the graphs, no speed-up), another registered
                name, or a callable backend.
            dynamic: ``False`` (static shapes, one graph per shape), ``True`` or ``None``.

        Returns:
            ``self``.

        Raises:
            ParameterError: a bad argument (named with its value and the allowed ones).
            DeviceError: CPU offload is enabled (compile a pipeline that stays on one device),
                or inductor on the CPU finds no C++ compiler.
        """
        settings = check_compile_settings(
            mode=mode,
            fullgraph=fullgraph,
            channels_last=channels_last,
            backend=backend,
            dynamic=dynamic,
        )
        if self._offload_hooks or self._sequential_offload:
            raise DeviceError(
                "compile() needs the models resident on one device; CPU offload is enabled: "
                "compile a pipeline without offload"
            )
        _check_cpu_compiler(settings, self.device)
        compile_models(self.unet, self.vae, settings)
        self._compiled = settings
        return self

    @property
    def compiled(self) -> CompileSettings | None:
        """How :meth:`compile` compiled the models, or ``None`` if it was not called."""
        return self._compiled
