"""Built-in seed images and masks, synthesised by this project.

A seed image is the starting spectrogram of img2img: its rhythm and layout carry through to the
generated clip, so clips generated from the same seed image line up on the beat and can be played
back to back. All built-in seeds are 5.12 s long (512 columns) at **93.75 BPM** in 4/4, i.e.
exactly two bars (a beat is 0.64 s = 64 columns, a sixteenth 16 columns).

The pictures ship as PNG files in ``riffusion/assets``; :func:`synthesize_seed_audio` and
:func:`make_mask` are the code that made them (``python scripts/make_seed_images.py`` rebuilds
them), so nothing here is a third party's recording.

Masks are white where the model regenerates and black where the seed image is kept.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources

import numpy as np
from PIL import Image

from riffusion.audio import Audio
from riffusion.errors import ParameterError
from riffusion.image import load_image

__all__ = [
    "DEFAULT_SEED_IMAGE",
    "SEED_BPM",
    "SeedImage",
    "image_fingerprint",
    "load_mask_image",
    "load_seed_image",
    "make_mask",
    "mask_images",
    "seed_images",
    "synthesize_seed_audio",
]

SEED_BPM = 93.75
"""Tempo of every built-in seed image: two bars of 4/4 in 5.12 s."""

DEFAULT_SEED_IMAGE = "og_beat"

_SAMPLE_RATE = 44100
_DURATION_S = 5.12
_BEAT_S = 60.0 / SEED_BPM


@dataclass(frozen=True)
class SeedImage:
    """Facts about one built-in seed image or mask.

    Attributes:
        name: identifier to pass as ``seed_image=`` / ``mask_image=``.
        description: what it sounds (or masks) like.
        bpm: tempo in beats per minute (``None`` for masks).
        kind: ``"seed"`` or ``"mask"``.
    """

    name: str
    description: str
    bpm: float | None
    kind: str


_SEEDS = {
    "og_beat": "straight rock/hip-hop beat: kick on 1 and 3, snare on 2 and 4, eighth hats",
    "breakbeat": "syncopated breakbeat: off-beat kicks, ghost snares, sixteenth hats",
    "four_on_the_floor": "dance beat: kick every beat, clap on 2 and 4, open hats off the beat",
    "marimba_arp": "mallet arpeggio in sixteenths over Am–F–C–G, no drums",
    "pad_pulse": "warm chord pad gated in eighths, with a soft bass note per beat",
    "noise_swell": "filtered-noise texture swelling once per bar, with a quiet pulse",
}

_MASKS = {
    "keep_first_half": "keep 0–2.56 s (the first bar), regenerate the second",
    "keep_second_half": "keep 2.56–5.12 s (the second bar), regenerate the first",
    "keep_bass": "keep the lowest quarter of the frequencies, regenerate above",
    "keep_treble": "keep the upper half of the frequencies, regenerate below",
    "beat_lines": "keep a thin stripe at every beat, regenerate between (keeps the groove)",
}


def seed_images() -> list[SeedImage]:
    """The built-in seed images (all 93.75 BPM, 5.12 s, 512×512)."""
    return [SeedImage(name, text, SEED_BPM, "seed") for name, text in _SEEDS.items()]


def mask_images() -> list[SeedImage]:
    """The built-in masks (512×512, white = regenerate, black = keep)."""
    return [SeedImage(name, text, None, "mask") for name, text in _MASKS.items()]


def _asset(folder: str, name: str, known: dict[str, str], what: str) -> Image.Image:
    if not isinstance(name, str) or name not in known:
        raise ParameterError(f"unknown {what} {name!r}; built-in ones are {', '.join(known)}")
    resource = resources.files("riffusion") / "assets" / folder / f"{name}.png"
    with resources.as_file(resource) as path:
        return load_image(path)


@functools.lru_cache(maxsize=32)
def _cached_seed(name: str) -> Image.Image:
    return _asset("seed_images", name, _SEEDS, "seed image")


@functools.lru_cache(maxsize=32)
def _cached_mask(name: str) -> Image.Image:
    return _asset("masks", name, _MASKS, "mask image")


def load_seed_image(name: str) -> Image.Image:
    """A built-in seed image by name (a fresh copy, 512×512 RGB with spectrogram EXIF)."""
    image = _cached_seed(name)
    copy = image.copy()
    copy.getexif().update(image.getexif())
    return copy


def load_mask_image(name: str) -> Image.Image:
    """A built-in mask by name (a fresh copy, 512×512 ``L``)."""
    return _cached_mask(name).copy()


def image_fingerprint(image: Image.Image) -> str:
    """A short, stable identity of an image's pixels: the first 16 hex digits of SHA-256."""
    rgb = np.asarray(image.convert("RGB"))
    digest = hashlib.sha256()
    digest.update(f"{rgb.shape}".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- synthesis
def _time(duration_s: float) -> np.ndarray:
    return np.arange(round(duration_s * _SAMPLE_RATE)) / _SAMPLE_RATE


def _kick(rng: np.random.Generator) -> np.ndarray:
    time = _time(0.35)
    frequency = 45 + 110 * np.exp(-time / 0.04)
    phase = 2 * np.pi * np.cumsum(frequency) / _SAMPLE_RATE
    return np.sin(phase) * np.exp(-time / 0.12)


def _snare(rng: np.random.Generator) -> np.ndarray:
    time = _time(0.25)
    noise = rng.standard_normal(len(time))
    noise = np.diff(noise, prepend=0.0) * 0.5  # tilt towards the highs
    body = np.sin(2 * np.pi * 190 * time)
    return (0.7 * noise + 0.5 * body) * np.exp(-time / 0.06)


def _hat(rng: np.random.Generator, decay_s: float = 0.03) -> np.ndarray:
    time = _time(0.2)
    noise = np.diff(rng.standard_normal(len(time) + 1), n=1)
    return 0.35 * noise * np.exp(-time / decay_s)


def _note(frequency: float, duration_s: float, *, decay_s: float, harmonics: int = 4) -> np.ndarray:
    time = _time(duration_s)
    tone = sum(np.sin(2 * np.pi * frequency * k * time) / k**1.5 for k in range(1, harmonics + 1))
    attack = np.minimum(1.0, time / 0.005)
    return tone * attack * np.exp(-time / decay_s)


def _place(track: np.ndarray, sound: np.ndarray, start_s: float, gain: float = 1.0) -> None:
    start = round(start_s * _SAMPLE_RATE)
    end = min(len(track), start + len(sound))
    if start < end:
        track[start:end] += gain * sound[: end - start]


def _drums(rng: np.random.Generator, kicks, snares, hats, hat_decay_s=0.03) -> np.ndarray:
    """A drum track from hit times given in sixteenths (0–31 over the two bars)."""
    track = np.zeros(round(_DURATION_S * _SAMPLE_RATE))
    sixteenth = _BEAT_S / 4
    for step, gain in kicks:
        _place(track, _kick(rng), step * sixteenth, gain)
    for step, gain in snares:
        _place(track, _snare(rng), step * sixteenth, gain)
    for step, gain in hats:
        _place(track, _hat(rng, hat_decay_s), step * sixteenth, gain)
    return track


_CHORDS = [  # Am, F, C, G as frequencies in Hz
    (220.00, 261.63, 329.63),
    (174.61, 220.00, 261.63),
    (261.63, 329.63, 392.00),
    (196.00, 246.94, 293.66),
]


def synthesize_seed_audio(name: str) -> Audio:
    """The 5.12 s, 44.1 kHz mono audio a built-in seed image was made from (deterministic)."""
    if name not in _SEEDS:
        raise ParameterError(f"unknown seed image {name!r}; built-in ones are {', '.join(_SEEDS)}")
    rng = np.random.default_rng(sorted(_SEEDS).index(name))
    total = round(_DURATION_S * _SAMPLE_RATE)
    if name == "og_beat":
        bar = [0, 8, 10]
        track = _drums(
            rng,
            kicks=[(s + b, 1.0) for b in (0, 16) for s in bar],
            snares=[(s + b, 0.8) for b in (0, 16) for s in (4, 12)],
            hats=[(s, 0.7 if s % 4 == 0 else 0.5) for s in range(0, 32, 2)],
        )
    elif name == "breakbeat":
        track = _drums(
            rng,
            kicks=[(s, 1.0) for s in (0, 3, 10, 16, 19, 22, 26)],
            snares=[(s, 0.85) for s in (4, 12, 20, 28)] + [(s, 0.3) for s in (7, 15, 23, 30)],
            hats=[(s, 0.55 if s % 2 == 0 else 0.3) for s in range(32)],
            hat_decay_s=0.02,
        )
    elif name == "four_on_the_floor":
        track = _drums(
            rng,
            kicks=[(s, 1.0) for s in range(0, 32, 4)],
            snares=[(s, 0.7) for s in (4, 12, 20, 28)],
            hats=[(s, 0.6) for s in range(2, 32, 4)],
            hat_decay_s=0.09,
        )
    elif name == "marimba_arp":
        track = np.zeros(total)
        sixteenth = _BEAT_S / 4
        for step in range(32):
            chord = _CHORDS[step // 8]
            pattern = [chord[0], chord[1], chord[2], chord[1] * 2]
            note = _note(pattern[step % 4], 0.5, decay_s=0.12, harmonics=3)
            _place(track, note, step * sixteenth, 0.6)
    elif name == "pad_pulse":
        track = np.zeros(total)
        eighth = _BEAT_S / 2
        for step in range(16):
            chord = _CHORDS[step // 4]
            for frequency in chord:
                _place(
                    track, _note(frequency, eighth, decay_s=0.4, harmonics=6), step * eighth, 0.3
                )
            if step % 2 == 0:
                _place(track, _note(chord[0] / 2, _BEAT_S, decay_s=0.3), step * eighth, 0.6)
    else:  # noise_swell
        time = _time(_DURATION_S)
        noise = rng.standard_normal(total)
        # A slowly sweeping one-pole low-pass, written as a cumulative average per bar.
        swell = np.sin(np.pi * ((time / (4 * _BEAT_S)) % 1.0)) ** 2
        smoothed = np.convolve(noise, np.ones(24) / 24, mode="same")
        bright = noise - smoothed
        track = swell * (0.6 * smoothed * 3 + 0.25 * bright)
        for beat in range(8):
            _place(track, _note(55.0, 0.5, decay_s=0.15), beat * _BEAT_S, 0.5)
    track = track / np.abs(track).max() * 0.9
    return Audio(track.astype(np.float32), sample_rate=_SAMPLE_RATE)


def make_mask(name: str, *, width: int = 512, height: int = 512) -> Image.Image:
    """Draw a built-in mask (``L`` mode; 255 = regenerate, 0 = keep) at the given size."""
    if name not in _MASKS:
        raise ParameterError(f"unknown mask image {name!r}; built-in ones are {', '.join(_MASKS)}")
    mask = np.full((height, width), 255, np.uint8)
    if name == "keep_first_half":
        mask[:, : width // 2] = 0
    elif name == "keep_second_half":
        mask[:, width // 2 :] = 0
    elif name == "keep_bass":
        mask[height - height // 4 :, :] = 0  # low frequencies are at the bottom
    elif name == "keep_treble":
        mask[: height // 2, :] = 0
    else:  # beat_lines: a stripe of 8 columns at each beat (64 columns at 93.75 BPM)
        beat = round(_BEAT_S * 100 * width / 512)
        for start in range(0, width, beat):
            mask[:, start : start + 8] = 0
    return Image.fromarray(mask, mode="L")
