"""The two stages of a stream clip: make its spectrogram image, then decode it.

A ``riffuse`` clip is one model window and one decode of that window
(:func:`riffusion.compose.interpolation.riffuse`). The stream runs the two halves apart, so
that with clips buffered ahead the next window is generated while the previous one is decoded
(:class:`riffusion.compose.stream.Stream`); the clip is the same, bit for bit: the same recipe,
the same window call, the same :func:`~riffusion.compose.windows.finish_clip`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from PIL import Image

from riffusion.compose.windows import WindowInfo, finish_clip, window_generator
from riffusion.defaults import WINDOW_WIDTH
from riffusion.inputs import PromptInput
from riffusion.params import SpectrogramParams
from riffusion.progress import StepHooks, expect_windows
from riffusion.recipe import Clip, Recipe
from riffusion.schedule import StreamStep

__all__ = [
    "ClipStages",
    "Drawn",
    "RiffuseStages",
    "StreamSettings",
    "StreamTask",
    "decode_device",
]


@dataclass(frozen=True)
class StreamSettings:
    """What every clip of a stream is made with besides its prompts; changed live.

    Attributes:
        seed_picture: the RGB seed image (512 columns × ``params.num_frequencies`` rows), or
            ``None`` for text-to-image.
        seed_id: its recipe id (a built-in name or ``custom:<fingerprint>``), or ``None``.
        mask_picture: the ``L`` mask (white = regenerate) of the seed image's size, or ``None``.
        mask_id: its recipe id, or ``None``.
        num_inference_steps: scheduler steps of a full run.
        denoising: img2img strength in [0, 1] for both ends of every clip, or ``None`` for the
            prompt inputs' own.
        guidance: classifier-free guidance (finite, >= 0) for both ends, or ``None`` for the
            prompt inputs' own.
    """

    seed_picture: Image.Image | None
    seed_id: str | None
    mask_picture: Image.Image | None
    mask_id: str | None
    num_inference_steps: int
    denoising: float | None = None
    guidance: float | None = None


@dataclass(frozen=True)
class StreamTask:
    """One clip to make: a schedule step with the settings in force when it was planned.

    Attributes:
        epoch: the stream's target generation; a change of target makes older tasks stale.
        step: the schedule step (``index``: the clip's position in the stream, from 0).
        settings: seed image, mask, steps and the denoising / guidance overrides.
    """

    epoch: int
    step: StreamStep
    settings: StreamSettings

    def prompts(self) -> tuple[PromptInput, PromptInput | None, float]:
        """``(start, end, alpha)`` of the clip: ``end`` is ``None`` (alpha 0) when the step is
        its start alone; the settings' denoising and guidance replace both ends' own."""
        step, settings = self.step, self.settings
        end = None if step.end == step.start else step.end
        alpha = step.alpha if end is not None else 0.0
        changes = {
            name: value
            for name in ("denoising", "guidance")
            if (value := getattr(settings, name)) is not None
        }
        start = dataclasses.replace(step.start, **changes) if changes else step.start
        if changes and end is not None:
            end = dataclasses.replace(end, **changes)
        return start, end, alpha


@dataclass(frozen=True)
class Drawn:
    """A clip's spectrogram, made and not yet decoded.

    Attributes:
        image: the RGB spectrogram, 512 × ``params.num_frequencies`` pixels.
        recipe: the clip's ``riffuse`` recipe.
        info: what the window reported (:data:`~riffusion.compose.windows.WindowInfo`).
        started: ``time.perf_counter()`` when the clip began.
        device: where the decoder runs.
    """

    image: Image.Image
    recipe: Recipe
    info: WindowInfo
    started: float
    device: torch.device


class ClipStages(Protocol):
    """What a :class:`~riffusion.compose.stream.Stream` needs to make its clips (
    :class:`RiffuseStages` over an image model; a test can pass its own).

    Attributes:
        params: the spectrogram parameters (seed images are resolved to their size).
    """

    params: SpectrogramParams

    def draw(self, task: StreamTask, hooks: StepHooks | None = None) -> Any:
        """Make the task's image, on the thread that asks.

        Args:
            task: the clip to make.
            hooks: called after every denoising step (a stale task's hook sets the model's
                ``interrupt``).
        """

    def decode(self, drawn: Any) -> Any:
        """Turn what :meth:`draw` made into the clip; may run on another thread.

        Args:
            drawn: what :meth:`draw` returned.
        """

    def decode_apart(self, drawn: Any) -> bool:
        """Whether decoding ``drawn`` on a thread of its own would overlap the next draw
        rather than compete with it for the same processor.

        Args:
            drawn: what :meth:`draw` returned.
        """


def decode_device(model: Any) -> torch.device:
    """Where a clip of ``model`` is decoded: CUDA when the model runs there, else the CPU (MPS
    lacks some FFT operators).

    Args:
        model: the image model (its ``device``).
    """
    device = torch.device(model.device)
    return device if device.type == "cuda" else torch.device("cpu")


class RiffuseStages:
    """The two stages of a stream clip over an image model, as ``Riffuser.riffuse`` makes it.

    Args:
        model: the image model (:class:`~riffusion.models.ImageModel`).
        params: the spectrogram parameters of its images.
        lock: held while the model runs (and the recipe is recorded from its scheduler); the
            decode runs without it.
        record: ``record(kind, start, **fields) -> Recipe``: the recipe of a clip about to be
            made, from the model's scheduler and adapters now
            (:func:`riffusion.compose.replay.make_recipe` bound to the model and its ids).
    """

    def __init__(
        self,
        model: Any,
        params: SpectrogramParams,
        *,
        lock: threading.RLock | threading.Lock,
        record: Callable[..., Recipe],
    ) -> None:
        self.model = model
        self.params = params
        self.lock = lock
        self.record = record

    def draw(self, task: StreamTask, hooks: StepHooks | None = None) -> Drawn:
        """Make the task's spectrogram image (one model window), holding :attr:`lock`.

        Args:
            task: the clip to make.
            hooks: per-step hooks of the window (the stream's cancellation check).
        """
        start, end, alpha = task.prompts()
        settings = task.settings
        duration_s = self.params.samples_for_width(WINDOW_WIDTH) / self.params.sample_rate
        with self.lock:
            recipe = self.record(
                "riffuse", start, end=end, alpha=alpha,
                num_inference_steps=settings.num_inference_steps, seed_image=settings.seed_id,
                mask_image=settings.mask_id, duration_s=duration_s,
            )  # fmt: skip
            device = decode_device(self.model)
            expect_windows(1)  # progress counts this clip's window from 1 (the decode may be
            started = time.perf_counter()  # in another thread, which reports nothing)
            generate = window_generator(self.model, recipe.params, hooks)
            image, info = generate(
                recipe.start, recipe.end, recipe.alpha, init_image=settings.seed_picture,
                mask_image=settings.mask_picture, steps=recipe.num_inference_steps,
            )  # fmt: skip
        return Drawn(image, recipe, info, started, device)

    def decode(self, drawn: Drawn) -> Clip:
        """Decode a drawn spectrogram into its :class:`Clip` (225,351 samples at 44.1 kHz for
        the default parameters); needs no model and no lock.

        Args:
            drawn: what :meth:`draw` made.
        """
        return finish_clip(
            drawn.image, drawn.recipe, [drawn.info], drawn.started, device=drawn.device
        )

    def decode_apart(self, drawn: Drawn) -> bool:
        """``True`` when the clip decodes on a CUDA device: there the decode of one clip and
        the denoising of the next interleave on the GPU. On the CPU both would share the same
        cores (and oversubscribe torch's threads), so it decodes in line.

        Args:
            drawn: what :meth:`draw` made.
        """
        return drawn.device.type == "cuda"
