"""Training examples: spectrogram images with captions, from a prepared folder or any sequence."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from riffusion.errors import ParameterError

__all__ = ["ImageTextExamples", "load_examples"]


@dataclass(frozen=True)
class ImageTextExamples:
    """Indexable (image, caption) pairs; images are opened on demand.

    Attributes:
        images: PIL images or paths, one per example.
        texts: captions, one per example.
    """

    images: tuple[Any, ...]
    texts: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.texts)

    def image(self, index: int) -> Image.Image:
        """The ``index``-th image as RGB.

        Args:
            index: example index in ``[0, len(self))``.
        """
        item = self.images[index]
        if isinstance(item, Image.Image):
            return item.convert("RGB")
        with Image.open(item) as opened:
            return opened.convert("RGB")

    def size(self, index: int) -> tuple[int, int]:
        """``(width, height)`` of the ``index``-th image, without decoding its pixels.

        Args:
            index: example index in ``[0, len(self))``.
        """
        item = self.images[index]
        if isinstance(item, Image.Image):
            return item.size
        with Image.open(item) as opened:
            return opened.size


def _from_folder(folder: Path) -> ImageTextExamples:
    metadata = folder / "metadata.jsonl"
    if not metadata.is_file():
        raise ParameterError(
            f"dataset={str(folder)!r} has no metadata.jsonl; make one with "
            "riffusion.dataset.prepare (or `riffusion prepare-dataset`)"
        )
    images: list[Path] = []
    texts: list[str] = []
    for number, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            file_name, text = record["file_name"], record["text"]
        except (ValueError, KeyError, TypeError) as error:
            raise ParameterError(
                f"{metadata} line {number} must be a JSON object with 'file_name' and 'text'"
            ) from error
        path = folder / file_name
        if not path.is_file():
            raise ParameterError(f"{metadata} line {number}: {str(path)!r} does not exist")
        images.append(path)
        texts.append(str(text))
    return ImageTextExamples(tuple(images), tuple(texts))


def load_examples(dataset: Any) -> ImageTextExamples:
    """Training examples from a prepared folder or a sequence of ``{"image", "text"}`` rows.

    Args:
        dataset: a folder written by :func:`riffusion.dataset.prepare` (any imagefolder with a
            ``metadata.jsonl`` holding ``file_name`` and ``text``), or a sequence of mappings
            with an ``"image"`` (PIL image or path) and a ``"text"`` — for instance a Hugging
            Face ``datasets.Dataset`` loaded with ``load_dataset("imagefolder", ...)``.

    Raises:
        ParameterError: missing folder or metadata, empty dataset, rows without image or text,
            image sides that are not multiples of 8, or images of different sizes.
    """
    if isinstance(dataset, str | os.PathLike):
        folder = Path(dataset)
        if not folder.is_dir():
            raise ParameterError(f"dataset={str(dataset)!r} is not an existing folder")
        examples = _from_folder(folder)
    elif isinstance(dataset, Sequence) or (
        hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")
    ):
        images, texts = [], []
        for index in range(len(dataset)):
            row = dataset[index]
            if not isinstance(row, Mapping) or "image" not in row or "text" not in row:
                raise ParameterError(f"dataset[{index}] must be a mapping with 'image' and 'text'")
            images.append(row["image"])
            texts.append(str(row["text"]))
        examples = ImageTextExamples(tuple(images), tuple(texts))
    else:
        raise ParameterError(
            f"dataset={type(dataset).__name__} must be a folder or a sequence of "
            "{'image', 'text'} rows"
        )
    if len(examples) == 0:
        raise ParameterError("the dataset holds no examples")
    first = examples.size(0)
    for index in range(len(examples)):
        size = examples.size(index)
        if size[0] % 8 or size[1] % 8:
            raise ParameterError(
                f"image {index} is {size[0]}x{size[1]} pixels; both sides must be multiples of 8"
            )
        if size != first:
            raise ParameterError(
                f"image {index} is {size[0]}x{size[1]} pixels but image 0 is "
                f"{first[0]}x{first[1]}; all training images must have the same size"
            )
    return examples
