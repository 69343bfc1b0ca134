"""The golden clips of the public verbs, made on the tiny model (see tests/test_golden_recipes.py).

Each case makes one or more clips with a :class:`riffusion.Riffuser` on the tiny random model;
``scripts/make_golden_recipes.py`` records their share strings, the SHA-256 of their audio and
their spectrogram images under ``tests/golden/``; the test re-renders every share string.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable

import numpy as np
from PIL import Image

from riffusion import Audio, Clip, PromptInput, Riffuser

STEPS = 4  # img2img at 0.75 runs 3 of the 4 steps: every scheduler branch, quickly
GOLDEN_FILE = "riffuser_v1.json"


def _source_audio() -> Audio:
    """3 s of a deterministic two-tone signal with a decaying pulse (integer-free arithmetic
    only: ``np.sin`` of float64 is correctly rounded to within an ulp on every libm we run)."""
    rate = 44100
    t = np.arange(3 * rate) / rate
    pulse = np.exp(-8.0 * (t % 0.5))
    wave = 0.3 * np.sin(2 * np.pi * 220.0 * t) * pulse + 0.1 * np.sin(2 * np.pi * 660.0 * t)
    return Audio(wave.astype(np.float32)[None, :], rate)


def _text_one(r: Riffuser) -> list[Clip]:
    return [r.text_to_audio("funky bass", seed=7, num_inference_steps=STEPS)]


def _text_long(r: Riffuser) -> list[Clip]:
    return [r.text_to_audio("slow piano", seed=11, num_inference_steps=STEPS, duration_s=8.0)]


def _riffuse(r: Riffuser) -> list[Clip]:
    start = PromptInput(prompt="jazz", seed=3, denoising=0.8)
    end = PromptInput(prompt="rock", seed=5, denoising=0.8, guidance=5.0)
    return [r.riffuse(start, end, alpha=0.25, num_inference_steps=STEPS, seed_image="agile")]


def _interpolate(r: Riffuser) -> list[Clip]:
    start = PromptInput(prompt="church bells", seed=1)
    end = PromptInput(prompt="techno", seed=2)
    return list(r.interpolate(start, end, num_clips=3, num_inference_steps=STEPS))


def _loop(r: Riffuser) -> list[Clip]:
    return [r.loop("techno beat", seed=42, num_inference_steps=STEPS, bars=3)]


def _audio_to_audio(r: Riffuser) -> list[Clip]:
    return [r.audio_to_audio(_source_audio(), "violin", seed=9, num_inference_steps=STEPS)]


def _stream(r: Riffuser) -> list[Clip]:
    prompts = [PromptInput(prompt="lofi", seed=20), PromptInput(prompt="dubstep", seed=30)]
    stream = r.stream(prompts, steps_per_transition=2, num_inference_steps=STEPS)
    return list(itertools.islice(stream, 3))


CASES: dict[str, Callable[[Riffuser], list[Clip]]] = {
    "text_to_audio": _text_one,
    "text_to_audio_long": _text_long,
    "riffuse": _riffuse,
    "interpolate": _interpolate,
    "loop": _loop,
    "audio_to_audio": _audio_to_audio,
    "stream": _stream,
}


def audio_sha256(audio: Audio) -> str:
    """SHA-256 of the waveform's float32 bytes, with its shape and rate (so a reshaped or
    resampled clip of the same bytes differs)."""
    digest = hashlib.sha256(f"{audio.waveform.shape}:{audio.sample_rate}:".encode())
    digest.update(np.ascontiguousarray(audio.waveform, dtype=np.float32).tobytes())
    return digest.hexdigest()


def image_sha256(image: Image.Image) -> str:
    """SHA-256 of the image's mode, size and pixel bytes."""
    digest = hashlib.sha256(f"{image.mode}:{image.size}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def machine_key() -> dict[str, str]:
    """What decides the last bits of a CPU run: the CPU, the kernels torch and MKL pick on it,
    and the library versions. Two runs with the same key render the same bits."""
    import os
    import platform

    import torch

    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next(
                (line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), ""
            )
    except OSError:
        model = platform.processor()
    return {
        "cpu": model or platform.machine(),
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl_instructions": os.environ.get("MKL_ENABLE_INSTRUCTIONS", ""),
        "mkl_cbwr": os.environ.get("MKL_CBWR", ""),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
