"""Shared fixtures of the diffusion-layer tests (imported by tests/test_diffusion_*.py).

The tiny random checkpoint is built once per test process and shared by every test module.
"""

from __future__ import annotations

import atexit
import contextlib
import pathlib
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from riffusion.testing import make_tiny_model

_CACHE: dict[str, object] = {}


def tiny_model_dir() -> pathlib.Path:
    """Build (once per process) and return the tiny model folder."""
    if "dir" not in _CACHE:
        root = pathlib.Path(tempfile.mkdtemp(prefix="riffusion-tiny-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _CACHE["dir"] = make_tiny_model(root / "tiny-model", seed=0)
    return _CACHE["dir"]  # type: ignore[return-value]


@contextlib.contextmanager
def single_thread_riffuser(**kwargs: Any) -> Iterator[Any]:
    """A Riffuser on the tiny model, on the CPU, with one torch thread while the block runs.

    CPU results are bitwise reproducible only at a fixed thread count (reductions split
    differently), and the tiny model gains nothing from more. ``kwargs`` go to
    ``Riffuser.from_pretrained``.
    """
    from riffusion import Riffuser

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        riffuser = Riffuser.from_pretrained(tiny_model_dir(), device="cpu", **kwargs)
        riffuser.pipeline.set_progress_bar_config(disable=True)
        yield riffuser
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model() -> pathlib.Path:
    """Folder of a tiny random SD 1.x checkpoint with riffusion-model-v1's layout."""
    return tiny_model_dir()


@pytest.fixture(scope="session")
def tiny_pipe(tiny_model):
    """A CPU pipeline on the tiny model, progress bar off. Tests must restore its scheduler."""
    from riffusion.models.sd1 import RiffusionPipeline

    if "pipe" not in _CACHE:
        pipe = RiffusionPipeline.from_pretrained(tiny_model, device="cpu")
        pipe.set_progress_bar_config(disable=True)
        _CACHE["pipe"] = pipe
    return _CACHE["pipe"]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run torch single-threaded during these tests.

    On small, shared CI machines OpenMP's intra-op threads contend badly with each other (a
    2-thread elementwise add was measured 40x slower than 1 thread), while the tiny model gains
    nothing from them. Results do not depend on it; only the speed does.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def gradient_image(width: int, height: int, *, seed: int = 0) -> Image.Image:
    """A smooth RGB test image with some texture (deterministic)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 127 + 100 * np.sin(x / 17.0)
    g = 127 + 100 * np.cos(y / 23.0)
    b = 127 + 60 * np.sin((x + y) / 31.0)
    pixels = np.stack([r, g, b], axis=-1) + rng.normal(0, 8, size=(height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def as_array(image: Image.Image) -> np.ndarray:
    """Image as a float64 array (H, W, C) for numeric comparisons."""
    return np.asarray(image, dtype=np.float64)
