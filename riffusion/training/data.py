"""Training examples: spectrogram images with captions, from a prepared folder or any sequence;
the order they are drawn in, and the latents and caption embeddings of each micro-batch."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from riffusion.errors import ParameterError
from riffusion.training.randomness import EXAMPLE_ORDER, VALIDATION_SPLIT, seed_for

__all__ = [
    "CaptionBatches",
    "ExampleOrder",
    "ImageTextExamples",
    "load_examples",
    "micro_batch_indices",
    "split_examples",
]


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


def split_examples(size: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split ``size`` examples into training and held-out ones (``validation_split``).

    ``round(fraction * size)`` examples (at least one when ``fraction > 0``) are held out,
    chosen by a permutation drawn from ``seed_for(seed, VALIDATION_SPLIT)``.

    Args:
        size: examples in the dataset.
        fraction: the share held out, in ``[0, 1)``.
        seed: the run's seed.

    Returns:
        ``(training, held_out)``: sorted example indices, disjoint, together ``range(size)``.

    Raises:
        ParameterError: a split that leaves no example to train on.
    """
    if fraction == 0:
        return list(range(size)), []
    held = max(1, round(fraction * size))
    if held >= size:
        raise ParameterError(
            f"validation_split={fraction} holds out {held} of the {size} examples and leaves "
            "none to train on; use a smaller fraction or more data"
        )
    generator = torch.Generator().manual_seed(seed_for(seed, VALIDATION_SPLIT))
    permutation = torch.randperm(size, generator=generator).tolist()
    return sorted(permutation[held:]), sorted(permutation[:held])


class ExampleOrder:
    """Which example sits at each position of the endless, epoch-shuffled stream of examples.

    Epoch ``e`` is a permutation drawn from its own seed (``seed_for(seed, EXAMPLE_ORDER, e)``),
    so any position can be looked up without replaying the ones before it (a resumed run).

    Args:
        size: examples per epoch (``len(examples)``, or ``len(indices)``).
        seed: the run's seed.
        indices: the examples the stream draws from (the training ones); ``None``:
            ``range(size)``.
    """

    def __init__(self, size: int, seed: int, indices: Sequence[int] | None = None) -> None:
        self.size, self.seed = size, seed
        self.indices = list(range(size)) if indices is None else list(indices)
        if len(self.indices) != size:
            raise ParameterError(f"indices has {len(self.indices)} entries; expected size={size}")
        self._epochs: dict[int, list[int]] = {}

    def __getitem__(self, position: int) -> int:
        epoch, offset = divmod(position, self.size)
        if epoch not in self._epochs:
            generator = torch.Generator().manual_seed(seed_for(self.seed, EXAMPLE_ORDER, epoch))
            # Only the current epoch is kept: positions are read in increasing order.
            self._epochs = {epoch: torch.randperm(self.size, generator=generator).tolist()}
        return self.indices[self._epochs[epoch][offset]]


def micro_batch_indices(
    order: ExampleOrder, step: int, micro: int, batch_size: int, accumulation: int
) -> list[int]:
    """The examples of micro-batch ``micro`` of optimizer step ``step`` (both 0-based).

    Args:
        order: the run's example stream.
        step: optimizer step.
        micro: micro-batch within the step, in ``[0, accumulation)``.
        batch_size: examples per micro-batch.
        accumulation: micro-batches per optimizer step.

    Returns:
        ``batch_size`` example indices.
    """
    first = (step * accumulation + micro) * batch_size
    return [order[first + j] for j in range(batch_size)]


class CaptionBatches:
    """The latents and caption embeddings of micro-batches, cached where the models are frozen.

    A latent is the VAE posterior mean scaled like the pipeline's, encoded once per example; a
    caption's embedding is cached too unless the text encoder trains (then it changes every
    step, and is computed with gradients).

    Args:
        examples: the training examples.
        seed: the run's seed (it orders the examples: :attr:`order`).
        pipeline: a ``RiffusionPipeline`` over the training's VAE (its ``encode_image``).
        tokenizer: the CLIP tokenizer.
        text_encoder: the CLIP text encoder, on ``device``.
        train_text_encoder: whether the text encoder's adapters train.
        device: where the batches go.
        training: the examples the training stream draws from (``None``: all of them).

    Attributes:
        order: the run's stream of examples (:func:`micro_batch_indices` reads it).
    """

    def __init__(
        self,
        examples: ImageTextExamples,
        seed: int,
        pipeline: Any,
        tokenizer: Any,
        text_encoder: Any,
        *,
        train_text_encoder: bool,
        device: torch.device,
        training: Sequence[int] | None = None,
    ) -> None:
        self.examples, self.pipeline, self.device = examples, pipeline, device
        indices = list(range(len(examples))) if training is None else list(training)
        self.order = ExampleOrder(len(indices), seed, indices)
        self.tokenizer, self.text_encoder = tokenizer, text_encoder
        self.train_text_encoder = train_text_encoder
        self._latents: dict[int, torch.Tensor] = {}
        self._embeddings: dict[str, torch.Tensor] = {}

    def latents(self, indices: list[int], dtype: torch.dtype) -> torch.Tensor:
        """Latents ``(len(indices), 4, height / 8, width / 8)`` of ``dtype`` on the device."""
        for index in indices:
            if index not in self._latents:
                # Encoded one by one and kept in float32 on the CPU: the same latents whatever
                # the batch, and no device memory held for the cache.
                image = self.examples.image(index)
                self._latents[index] = self.pipeline.encode_image(image)[0].float().cpu()
        return torch.stack([self._latents[i] for i in indices]).to(self.device, dtype)

    def embeddings(self, indices: list[int]) -> torch.Tensor:
        """CLIP embeddings ``(len(indices), model_max_length, width)`` of the captions (77 tokens
        for CLIP), in the dtype the text encoder computes in.

        Call it under the accelerator's autocast, like the UNet: cached embeddings keep the
        dtype of their first computation.
        """
        texts = [self.examples.texts[i] for i in indices]
        if self.train_text_encoder:
            return self.text_encoder(self._token_ids(texts))[0]
        for text in texts:
            if text not in self._embeddings:
                with torch.no_grad():
                    self._embeddings[text] = self.text_encoder(self._token_ids([text]))[0][0]
        return torch.stack([self._embeddings[text] for text in texts])

    def _token_ids(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(
            texts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
