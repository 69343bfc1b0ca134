"""Built-in seed images and masks, synthesised by this project.

A seed image is the starting spectrogram of img2img: its rhythm and layout carry through to the
generated clip, so clips generated from the same seed image line up on the beat and can be played
back to back. All built-in seeds are 5.12 s long (512 columns) at **93.75 BPM** in 4/4, i.e.
exactly two bars (a beat is 0.64 s = 64 columns, a sixteenth 16 columns).

The pictures ship as PNG files in ``riffusion/assets``; :func:`synthesize_seed_audio` and
:func:`make_mask` are the code that made them (``python scripts/make_seed_images.py`` rebuilds
them), so nothing here is a third party's recording.

Masks are white where the model regenerates, black where the seed image is kept, and grey
regenerates partly.

**Ids.** Seed images and masks are picked by id: a built-in name (:func:`seed_images`,
:func:`mask_images`), an id registered from a folder of images with
:func:`register_seed_images`, or one of the original Riffusion web app's ids, which
:data:`RIFFUSION_ALIASES` maps to a built-in image of matching character (our own pictures,
not Riffusion's: ``og_beat`` → ``straight_beat``). Lookup order: registered, then built-in,
then alias, so a user who registers a folder holding Riffusion's own ``og_beat.png`` gets
exactly that picture. Ids are names, never paths: an id with a path separator, a leading dot,
``..`` or a NUL raises :class:`~riffusion.errors.ParameterError`; pass a
:class:`pathlib.Path` to :class:`riffusion.Riffuser` to use a file. ``None`` and ``""`` mean
"no mask" wherever a mask id is taken (the web app sends both).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from riffusion.audio import Audio
from riffusion.defaults import DEFAULT_SEED_IMAGE
from riffusion.errors import ParameterError
from riffusion.image import load_image, mel_to_image
from riffusion.params import SpectrogramParams

__all__ = [
    "DEFAULT_SEED_IMAGE",
    "RIFFUSION_ALIASES",
    "SEED_BPM",
    "SeedImage",
    "check_image_id",
    "image_fingerprint",
    "load_mask_image",
    "load_seed_image",
    "make_mask",
    "make_seed_image",
    "mask_images",
    "register_seed_images",
    "registered_images",
    "resolve_mask_id",
    "resolve_seed_id",
    "seed_images",
    "synthesize_seed_audio",
    "unregister_seed_images",
]

SEED_BPM = 93.75
"""Tempo of every built-in seed image: two bars of 4/4 in 5.12 s."""

"""The built-in seed image used when none is named (the web app's ``og_beat`` maps to it)."""

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
    "straight_beat": "straight rock/hip-hop beat: kick on 1 and 3, snare on 2 and 4, eighth hats",
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
    "beat_lines_80": "keep a thin stripe at every beat, regenerate between at 80 % strength",
    "gradient_dark": "regenerate the highs at most 50 %, fading to keep the bass (mostly keeps)",
    "gradient_top_70": "regenerate the top at 70 %, fading linearly to keep the bottom",
    "gradient_top_fifth_75": "regenerate the top fifth at 75 %, fading to keep below it",
    "top_third_75": "regenerate the top third of the frequencies at 75 %, keep the rest",
    "top_third_95": "regenerate the top third of the frequencies at 95 %, keep the rest",
}

RIFFUSION_ALIASES: dict[str, str] = {
    # seed images the original web app asks for → ours of matching character
    "og_beat": "straight_beat",
    "agile": "breakbeat",
    "marim": "marimba_arp",
    "motorway": "four_on_the_floor",
    "vibes": "pad_pulse",
    # masks it offers → ours drawn after the names' meaning
    "mask_beat_lines_80": "beat_lines_80",
    "mask_gradient_dark": "gradient_dark",
    "mask_gradient_top_70": "gradient_top_70",
    "mask_gradient_top_fifth_75": "gradient_top_fifth_75",
    "mask_top_third_75": "top_third_75",
    "mask_top_third_95": "top_third_95",
}
"""The original Riffusion app's seed and mask ids → this library's built-in images.

The targets are this project's own pictures with the character the names suggest (a straight
beat for ``og_beat``, a marimba for ``marim``; masks drawn after their names: ``top_third_75``
regenerates the top third at 75 %), not copies of Riffusion's images. Register a folder holding
the originals with :func:`register_seed_images` to use exactly those instead.
"""

# Noise seeds of the synthesis, fixed per name so renaming or adding seeds keeps the pictures.
_RNG_SEEDS = {
    "breakbeat": 0,
    "four_on_the_floor": 1,
    "marimba_arp": 2,
    "noise_swell": 3,
    "straight_beat": 4,
    "pad_pulse": 5,
}

_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_REGISTERED: dict[str, Path] = {}
_REGISTRY_LOCK = threading.Lock()


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


def check_image_id(value: Any, *, what: str = "image id") -> str:
    """``value`` if it is a well-formed seed or mask id, else :class:`ParameterError`.

    Ids are names: letters, digits, ``_``, ``-`` and ``.`` (not first), no ``..``. Anything
    path-like (``../x``, ``/etc/x``, ``a/b``, ``C:\\x``, a NUL) is rejected, so ids from an
    untrusted client can never reach the file system.

    Args:
        value: the id to check (any value; only well-formed strings pass).
        what: name of the argument, used in the error message.
    """
    if not isinstance(value, str):
        raise ParameterError(
            f"{what}={value!r} must be a string id; known ids: {', '.join(_known_ids())}"
        )
    if not _ID_PATTERN.fullmatch(value) or ".." in value:
        raise ParameterError(
            f"{what}={value!r} is not a valid id (letters, digits, '_', '-', '.'; no paths); "
            f"known ids: {', '.join(_known_ids())}"
        )
    return value


def _known_ids() -> list[str]:
    with _REGISTRY_LOCK:
        registered = sorted(_REGISTERED)
    return [*registered, *_SEEDS, *_MASKS, *RIFFUSION_ALIASES]


def register_seed_images(folder: str | os.PathLike[str]) -> list[str]:
    """Make every image in ``folder`` available as a seed image and mask id (its file stem).

    For example the original Riffusion's ``seed_images`` folder registers ``og_beat``,
    ``agile``, ``mask_top_third_75`` …: a registered id wins over a built-in name and over
    :data:`RIFFUSION_ALIASES`, so those ids then give exactly the original pictures. Files whose
    stem is not a valid id (see :func:`check_image_id`) and non-image files are skipped.
    Registering again replaces an id's file.

    Args:
        folder: a directory holding ``.png``/``.jpg``/``.jpeg``/``.webp``/``.bmp``/``.tif``
            images.

    Returns:
        The ids registered, sorted.

    Raises:
        ParameterError: ``folder`` is not a directory, or holds no usable image.
    """
    if isinstance(folder, bytes) or not isinstance(folder, str | os.PathLike):
        raise ParameterError(f"folder must be a str or pathlib.Path, got {type(folder).__name__}")
    root = Path(folder)
    try:
        is_folder = root.is_dir()
    except (OSError, ValueError):  # a name too long, a NUL byte
        is_folder = False
    if not is_folder:
        raise ParameterError(f"folder={str(folder)[:200]!r} is not a directory")
    found = {
        path.stem: path.resolve()
        for path in sorted(root.iterdir())
        if path.is_file()
        and path.suffix.lower() in _IMAGE_SUFFIXES
        and _ID_PATTERN.fullmatch(path.stem)
        and ".." not in path.stem
    }
    if not found:
        raise ParameterError(
            f"folder={os.fspath(folder)!r} holds no image whose name is a valid id "
            f"({', '.join(_IMAGE_SUFFIXES)})"
        )
    with _REGISTRY_LOCK:
        _REGISTERED.update(found)
    return sorted(found)


def unregister_seed_images(ids: list[str] | None = None) -> None:
    """Forget registered ids (all of them when ``ids`` is ``None``).

    Args:
        ids: registered ids to forget; ``None`` forgets every registered id.
    """
    if ids is not None and (
        isinstance(ids, str) or not isinstance(ids, list | tuple | set | frozenset)
    ):
        raise ParameterError(f"ids={ids!r} must be a list of ids or None")
    with _REGISTRY_LOCK:
        if ids is None:
            _REGISTERED.clear()
        for name in ids or []:
            if isinstance(name, str):
                _REGISTERED.pop(name, None)


def registered_images() -> dict[str, Path]:
    """The registered ids and the (absolute) files they load."""
    with _REGISTRY_LOCK:
        return dict(_REGISTERED)


def resolve_seed_id(seed_id: Any) -> str:
    """The id a seed image request resolves to: registered, built-in, or an alias's target.

    Args:
        seed_id: a registered id, built-in name or Riffusion alias (``og_beat``, ...).

    Raises:
        ParameterError: malformed (path-like) or unknown id; the message lists the known ids.
    """
    return _resolve_id(seed_id, _SEEDS, what="seed image", argument="seed_image")


def resolve_mask_id(mask_id: Any) -> str | None:
    """Like :func:`resolve_seed_id` for masks; ``None`` and ``""`` mean no mask (``None``).

    Args:
        mask_id: a mask id, ``None`` or ``""``.
    """
    if mask_id is None or mask_id == "":
        return None
    return _resolve_id(mask_id, _MASKS, what="mask image", argument="mask_image")


def _resolve_id(name: Any, built_in: Mapping[str, Any], *, what: str, argument: str) -> str:
    """``name`` as a registered id, a key of ``built_in``, or the target of a Riffusion alias
    that is a key of ``built_in`` (checked in that order)."""
    check_image_id(name, what=argument)
    with _REGISTRY_LOCK:
        if name in _REGISTERED:
            return name
    if name in built_in:
        return name
    if name in RIFFUSION_ALIASES and RIFFUSION_ALIASES[name] in built_in:
        return RIFFUSION_ALIASES[name]
    raise ParameterError(
        f"unknown {what} {name!r} ({argument}={name!r} is no registered, built-in or alias "
        f"id); known: {', '.join(_known_ids_of(built_in))}"
    )


def _known_ids_of(built_in: Mapping[str, Any]) -> list[str]:
    aliases = [name for name, target in RIFFUSION_ALIASES.items() if target in built_in]
    return [*sorted(registered_images()), *built_in, *aliases]


def _registered_image(name: str) -> Image.Image | None:
    with _REGISTRY_LOCK:
        path = _REGISTERED.get(name)
    return None if path is None else load_image(path)


def load_seed_image(name: str) -> Image.Image:
    """A seed image by id (a fresh copy; built-ins are 512×512 RGB with spectrogram EXIF).

    ``name`` is a registered id, a built-in name or a :data:`RIFFUSION_ALIASES` id.

    Args:
        name: a registered id, a built-in name or a Riffusion alias.
    """
    resolved = resolve_seed_id(name)
    registered = _registered_image(resolved)
    if registered is not None:
        return registered.convert("RGB") if registered.mode != "RGB" else registered
    image = _cached_seed(resolved)
    copy = image.copy()
    copy.getexif().update(image.getexif())
    return copy


def load_mask_image(name: str) -> Image.Image:
    """A mask by id (a fresh ``L`` copy; built-ins are 512×512); see :func:`load_seed_image`.

    Args:
        name: a registered mask id or a built-in mask name.

    Raises:
        ParameterError: ``None``/``""`` (no mask has no image), or a bad or unknown id.
    """
    resolved = resolve_mask_id(name)
    if resolved is None:
        raise ParameterError(f"mask_image={name!r} means no mask; there is no image to load")
    registered = _registered_image(resolved)
    if registered is not None:
        return registered.convert("L")
    return _cached_mask(resolved).copy()


def make_seed_image(name: str) -> Image.Image:
    """Encode a built-in seed's synthesised audio as its 512×512 spectrogram image.

    The audio is two bars (5.12 s, one period of a loop), so the image is
    ``params.width_for_samples(samples, periodic=True)`` = 512 columns: the 513th frame of
    Riffusion's centred encoding would be the next bar's downbeat.

    The magnitudes are computed in float64 (``waveform_to_mel(dtype=torch.float64)``), so the
    picture is the same on every CPU: float32 STFTs differ in the last bits from one FFT kernel
    to another, which moves the faintest pixels (more than ~80 dB below the peak) by a level
    or two. It agrees with :func:`riffusion.audio_to_image` of the same audio within that.

    Args:
        name: a built-in seed name (see :func:`seed_images`).
    """
    from riffusion.spectrogram import INT16_SCALE, get_converter

    audio = synthesize_seed_audio(name)
    params = SpectrogramParams()
    waveform = torch.from_numpy(audio.waveform.astype(np.float64)) * INT16_SCALE
    mel = get_converter(params).waveform_to_mel(waveform, dtype=torch.float64)
    image = mel_to_image(mel, params)
    width = params.width_for_samples(audio.num_samples, periodic=True)
    cropped = image.crop((0, 0, width, image.height))
    cropped.getexif().update(image.getexif())
    return cropped


def image_fingerprint(image: Image.Image) -> str:
    """A short, stable identity of an image's pixels: the first 16 hex digits of SHA-256.

    Args:
        image: a PIL image (its mode, size and pixels are hashed).
    """
    if not isinstance(image, Image.Image):
        raise ParameterError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
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
    """The 5.12 s, 44.1 kHz mono audio a built-in seed image was made from (deterministic).

    Args:
        name: a built-in seed name (see :func:`seed_images`).
    """
    if not isinstance(name, str) or name not in _SEEDS:
        raise ParameterError(f"unknown seed image {name!r}; built-in ones are {', '.join(_SEEDS)}")
    rng = np.random.default_rng(_RNG_SEEDS[name])
    total = round(_DURATION_S * _SAMPLE_RATE)
    if name == "straight_beat":
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
    """Draw a built-in mask (``L`` mode; 255 = regenerate, 0 = keep) at the given size.

    Args:
        name: a built-in mask name (see :func:`mask_images`).
        width: width of the mask in pixels (image columns), an int >= 1.
        height: height in pixels (mel rows), an int >= 1.
    """
    if not isinstance(name, str) or name not in _MASKS:
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
    elif name in ("beat_lines", "beat_lines_80"):
        # A stripe of 8 columns kept at each beat (64 columns at 93.75 BPM).
        if name == "beat_lines_80":
            mask[:] = _grey(0.80)
        beat = round(_BEAT_S * 100 * width / 512)
        for start in range(0, width, beat):
            mask[:, start : start + 8] = 0
    else:
        # Top rows are the high frequencies. ``top`` = 1 at the first row, 0 at the last.
        top = np.linspace(1.0, 0.0, height)[:, None]
        if name == "gradient_dark":
            values = 0.5 * top
        elif name == "gradient_top_70":
            values = 0.70 * top
        elif name == "gradient_top_fifth_75":
            fifth = height // 5
            values = np.zeros((height, 1))
            values[:fifth, 0] = 0.75 * np.linspace(1.0, 0.0, fifth)
        else:  # top_third_75, top_third_95
            strength = 0.75 if name == "top_third_75" else 0.95
            values = np.zeros((height, 1))
            values[: height // 3] = strength
        mask = np.broadcast_to(np.rint(values * 255).astype(np.uint8), (height, width)).copy()
    return Image.fromarray(mask, mode="L")


def _grey(strength: float) -> int:
    return round(strength * 255)
