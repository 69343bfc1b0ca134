"""Shared fixtures: synthetic, music-like test signals (no committed audio, no network)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import settings

from riffusion import Audio

# Property-based tests: a quick default profile, and HYPOTHESIS_PROFILE=slow for thousands of
# cases. No deadline: a shared 2-core machine makes per-example timings meaningless.
# database=None: the derandomised default run has nothing to replay, and writes no .hypothesis
# folder into whatever directory pytest is started from.
settings.register_profile(
    "default", max_examples=40, deadline=None, derandomize=True, database=None
)
settings.register_profile("slow", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# The server tests' shared fixtures (``riffuser``, ``client``: module-scoped, one server per
# module; a module's own fixture of the same name wins).
pytest_plugins = ["tests.server_fixtures"]

SAMPLE_RATE = 44100


def harmonic_tone(
    frequency_hz: float, duration_s: float, *, sample_rate: int = SAMPLE_RATE, harmonics: int = 6
) -> np.ndarray:
    """A decaying harmonic tone (plucked-string-like), float32 ``(samples,)``."""
    time = np.arange(int(duration_s * sample_rate)) / sample_rate
    tone = sum(np.sin(2 * np.pi * frequency_hz * k * time) / k for k in range(1, harmonics + 1))
    envelope = np.exp(-3.0 * time)
    return (tone * envelope).astype(np.float32)


def music_like(
    duration_s: float = 1.0, *, seed: int = 0, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Notes with onsets, a chord and noise bursts (hi-hat-like), peak 0.8, ``(samples,)``."""
    rng = np.random.default_rng(seed)
    total = int(duration_s * sample_rate)
    signal = np.zeros(total, np.float32)
    note_length = int(0.25 * sample_rate)
    frequencies = [220.0, 277.18, 329.63, 440.0, 554.37, 659.25]
    for start in range(0, total, note_length):
        frequency = frequencies[rng.integers(len(frequencies))]
        note = harmonic_tone(frequency, note_length / sample_rate, sample_rate=sample_rate)
        end = min(total, start + note_length)
        signal[start:end] += note[: end - start]
    chord = sum(
        harmonic_tone(f, duration_s, sample_rate=sample_rate) for f in (261.63, 329.63, 392.0)
    )
    signal[: len(chord)] += 0.5 * chord[:total]
    burst = int(0.03 * sample_rate)
    for start in range(note_length // 2, total - burst, note_length):
        signal[start : start + burst] += (
            0.3 * rng.standard_normal(burst) * np.exp(-np.arange(burst) / (burst / 5))
        )
    return (0.8 * signal / np.abs(signal).max()).astype(np.float32)


@pytest.fixture
def music_mono() -> Audio:
    """1 s of mono music-like audio at 44.1 kHz."""
    return Audio(music_like(1.0), sample_rate=SAMPLE_RATE)


@pytest.fixture
def music_stereo() -> Audio:
    """1 s of stereo audio with different content left and right."""
    return Audio(np.stack([music_like(1.0, seed=1), music_like(1.0, seed=2)]), SAMPLE_RATE)
