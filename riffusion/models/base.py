"""The image-model protocol: prompts + seed image + mask → a spectrogram image.

The composition code (:mod:`riffusion.compose`) and :class:`riffusion.Riffuser` talk to a model
only through these members, so a model family is a class that has them. Torch-free: a
protocol describes, it does not load anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from riffusion.errors import ParameterError

__all__ = ["GeneratedImage", "ImageModel", "check_image_model"]


@runtime_checkable
class GeneratedImage(Protocol):
    """One generated image and how it was made (e.g. :class:`riffusion.GenerationResult`).

    Attributes:
        image: PIL ``RGB`` image, ``width × height`` pixels (height = mel bins).
        alpha: the interpolation weight used, in [0, 1].
        seeds: ``(start.seed,)`` or ``(start.seed, end.seed)``.
        denoising: the (mixed) img2img strength in [0, 1].
        guidance: the (mixed) classifier-free guidance scale.
        timesteps: the scheduler timesteps run, in order.
        timings_s: seconds per stage (``text_encoder``, ``vae_encode``, ``unet``,
            ``vae_decode``, ``total``); missing stages count as 0.
    """

    image: Any
    alpha: float
    seeds: tuple[int, ...]
    denoising: float
    guidance: float
    timesteps: tuple[int, ...]
    timings_s: dict[str, float]


@runtime_checkable
class ImageModel(Protocol):
    """What :class:`riffusion.Riffuser` needs from a diffusion model.

    Attributes:
        device: the ``torch.device`` generation runs on (decoding follows it on CUDA).
        loras: the loaded LoRAs in loading order, each ``(name, path, fingerprint, scale)``.
        textual_inversions: ``(path, token)`` of each loaded textual inversion, in order.
        interrupt: set to ``True`` by a step callback to stop the run before its next step.
        scheduler: the sampling scheduler in use (a recipe's is installed while it renders).
    """

    device: Any
    scheduler: Any
    loras: tuple[Any, ...]
    textual_inversions: Any
    interrupt: bool

    def riffuse(
        self,
        start: Any,
        end: Any = None,
        alpha: float = 0.0,
        *,
        init_image: Any = None,
        mask_image: Any = None,
        num_inference_steps: int = 50,
        width: int | None = None,
        height: int | None = None,
        periodic: bool = False,
        callback_on_step_end: Callable[..., Any] | None = None,
    ) -> GeneratedImage:
        """Generate one image between two :class:`~riffusion.PromptInput` values at ``alpha``
        (``init_image``: img2img at the prompts' denoising; ``mask_image``: white = regenerate;
        ``periodic``: seamless along the width). Calls ``callback_on_step_end(model, step,
        timestep, {"latents": ..., "num_steps": n})`` after each step.

        Args:
            start, end, alpha: the prompt inputs and the weight between them.
            init_image, mask_image: the img2img seed and its mask, or ``None``.
            num_inference_steps: scheduler steps of a full run.
            width, height: the size of text-to-image.
            periodic: seamless along the width.
            callback_on_step_end: the per-step callback.
        """
        ...

    def describe_scheduler(self) -> tuple[str, dict[str, Any]]:
        """``(name, config overrides)`` of the scheduler as recipes record it."""
        ...

    def build_scheduler(self, name: str, overrides: dict[str, Any] | None = None) -> Any:
        """A fresh scheduler called ``name`` (a recipe's) on this model's noise schedule.

        Args:
            name: a recipe's scheduler name.
            overrides: config entries that differ.
        """
        ...

    def set_scheduler(self, name: str) -> Any:
        """Switch to the scheduler called ``name``.

        Args:
            name: a scheduler name.
        """
        ...


def check_image_model(model: Any) -> Any:
    """``model`` if it has the members of :class:`ImageModel`, else a :class:`ParameterError`
    naming the first one missing.

    Args:
        model: the object given as ``pipeline``.
    """
    missing = [
        name
        for name in ("riffuse", "describe_scheduler", "build_scheduler", "set_scheduler", "device")
        if not hasattr(model, name)
    ]
    if missing:
        raise ParameterError(
            f"pipeline={type(model).__name__} is not an image model: it has no {missing[0]!r} "
            "(see riffusion.models.ImageModel)"
        )
    return model
