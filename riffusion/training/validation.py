"""Validation clips: the validation prompts rendered with the adapters as they stand, saved as
spectrogram PNGs and the audio decoded from them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from riffusion.training.data import ImageTextExamples

if TYPE_CHECKING:
    from riffusion.training.model import TrainingModels
    from riffusion.training.settings import TrainingSettings

__all__ = ["Validator", "spectrogram_params"]


class Validator:
    """Renders ``settings.validation_prompts`` into ``output_dir/validation/step_NNNNNN/``.

    Each prompt gives ``NN_<prompt>.png`` (the spectrogram, the training images' size, with
    their spectrogram parameters in its EXIF) and ``NN_<prompt>.wav``, sampled with the run's
    seed in ``settings.validation_steps`` steps, so clips of different steps compare.

    Args:
        output_dir: the run's output folder.
        settings: the run's settings.
        models: the run's models (their pipeline samples the clips).
        examples: the training examples (their size and spectrogram parameters).

    Attributes:
        files: every file written so far, in order.
    """

    def __init__(
        self,
        output_dir: Path,
        settings: TrainingSettings,
        models: TrainingModels,
        examples: ImageTextExamples,
    ) -> None:
        self.output_dir, self.settings, self.models = output_dir, settings, models
        self.size = examples.size(0)
        self.params = spectrogram_params(examples)
        self.files: list[Path] = []

    def __call__(self, step: int) -> None:
        """Render the clips of optimizer step ``step``; the models train again after."""
        folder = self.output_dir / "validation" / f"step_{step:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        for module in self.models.trained:
            module.eval()
        try:
            for number, prompt in enumerate(self.settings.validation_prompts):
                with self.models.accelerator.autocast():
                    result = self.models.pipeline.text_to_image(
                        prompt,
                        seed=self.settings.seed,
                        num_inference_steps=self.settings.validation_steps,
                        width=self.size[0],
                        height=self.size[1],
                    )
                stem = folder / f"{number:02d}_{_slug(prompt)}"
                self.files.extend(_save_clip(result.image, self.params, stem))
        finally:
            for module in self.models.trained:
                module.train()


def spectrogram_params(examples: ImageTextExamples) -> Any:
    """The spectrogram parameters in the first image's EXIF (Riffusion's when absent)."""
    from riffusion.image import load_image, params_from_image

    return params_from_image(load_image(examples.images[0]))


def _save_clip(image: Any, params: Any, stem: Path) -> list[Path]:
    """The validation image as a spectrogram PNG (with EXIF) and its decoded audio."""
    from riffusion.convert import image_to_audio
    from riffusion.image import save_image

    exif = image.getexif()
    for tag, value in params.to_exif().items():
        exif[int(tag)] = value
    png = save_image(image, stem.with_suffix(".png"))
    wav = image_to_audio(image, params).save(stem.with_suffix(".wav"))
    return [png, wav]


def _slug(text: str) -> str:
    """``text`` as a short file-name part: runs of other characters become ``_``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:40] or "prompt"
