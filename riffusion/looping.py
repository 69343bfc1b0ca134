"""Joining and looping: crossfades, stitching, tempo, whole bars, the endless stream schedule.

This layer sits above the diffusion layer (it knows :class:`~riffusion.diffusion.PromptInput`)
and the audio layer; :class:`riffusion.Riffuser` composes it with generation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from riffusion._checks import check_integer
from riffusion.audio import Audio
from riffusion.convert import image_to_audio
from riffusion.diffusion.interpolation import PromptInput
from riffusion.errors import ParameterError
from riffusion.image import load_image, params_from_image
from riffusion.params import SpectrogramParams

__all__ = [
    "StreamStep",
    "estimate_tempo",
    "periodic_image_to_audio",
    "seam_discontinuity",
    "stitch",
    "stream_schedule",
    "trim_to_bars",
]


def _as_audio(item: Any) -> Audio:
    """An :class:`Audio`, or anything with an ``audio`` attribute holding one (a ``Clip``)."""
    audio = item if isinstance(item, Audio) else getattr(item, "audio", None)
    if not isinstance(audio, Audio):
        raise ParameterError(f"expected riffusion.Audio or a Clip, got {type(item).__name__}")
    return audio


def stitch(clips_or_audio: Sequence[Any], *, crossfade_s: float = 0.05) -> Audio:
    """Join clips end to end with equal-power crossfades.

    Each overlap fades the outgoing clip with ``cos`` and the incoming one with ``sin`` over
    ``crossfade_s`` seconds, so uncorrelated material keeps a constant power through the join.
    Clips are converted to the first clip's sample rate and to the largest channel count.

    Args:
        clips_or_audio: :class:`Audio` values or ``Clip``\\ s (anything with ``.audio``); at least
            one.
        crossfade_s: overlap of consecutive clips (in seconds), >= 0 and shorter than every clip.
            0 concatenates.

    Returns:
        Audio lasting ``sum(durations) - (n - 1) * crossfade_s`` seconds.
    """
    if isinstance(clips_or_audio, Audio) or not isinstance(clips_or_audio, Sequence):
        raise ParameterError("clips_or_audio must be a list of Audio or Clip values")
    if len(clips_or_audio) == 0:
        raise ParameterError("clips_or_audio is empty; give at least one clip")
    if (
        not isinstance(crossfade_s, int | float)
        or not math.isfinite(crossfade_s)
        or crossfade_s < 0
    ):
        raise ParameterError(f"crossfade_s={crossfade_s!r} must be a finite number >= 0")
    audios = [_as_audio(item) for item in clips_or_audio]
    sample_rate = audios[0].sample_rate
    channels = max(audio.num_channels for audio in audios)
    if channels > 2 and any(audio.num_channels != channels for audio in audios):
        raise ParameterError("cannot mix clips of more than two channels with other layouts")
    audios = [audio.resample(sample_rate).with_channels(channels) for audio in audios]
    overlap = round(crossfade_s * sample_rate)
    shortest = min(audio.num_samples for audio in audios)
    if len(audios) > 1 and overlap >= shortest:
        raise ParameterError(
            f"crossfade_s={crossfade_s} is not shorter than the shortest clip "
            f"({shortest / sample_rate:.3f} s)"
        )
    result = audios[0].waveform.copy()
    if overlap:
        ramp = (np.arange(overlap, dtype=np.float64) + 0.5) / overlap
        fade_in = np.sin(ramp * np.pi / 2).astype(np.float32)
        fade_out = np.cos(ramp * np.pi / 2).astype(np.float32)
    for audio in audios[1:]:
        incoming = audio.waveform
        if overlap:
            mixed = result[:, -overlap:] * fade_out + incoming[:, :overlap] * fade_in
            result = np.concatenate([result[:, :-overlap], mixed, incoming[:, overlap:]], axis=1)
        else:
            result = np.concatenate([result, incoming], axis=1)
    return Audio(result, sample_rate=sample_rate)


def _onset_envelope(audio: Audio) -> tuple[np.ndarray, float]:
    """Half-wave-rectified log-spectral flux and its frame rate (frames per second)."""
    mono = torch.from_numpy(audio.to_mono().waveform[0].copy())
    hop = 512 if audio.sample_rate >= 32000 else 256
    n_fft = 4 * hop
    if mono.shape[-1] < n_fft:
        mono = torch.nn.functional.pad(mono, (0, n_fft - mono.shape[-1]))
    spectrum = torch.stft(
        mono, n_fft=n_fft, hop_length=hop, window=torch.hann_window(n_fft), return_complex=True
    ).abs()
    log_spectrum = torch.log1p(1000 * spectrum / spectrum.max().clamp_min(1e-12))
    flux = torch.relu(log_spectrum[:, 1:] - log_spectrum[:, :-1]).sum(dim=0)
    return flux.numpy().astype(np.float64), audio.sample_rate / hop


def estimate_tempo(audio: Audio, *, min_bpm: float = 60.0, max_bpm: float = 200.0) -> float:
    """Estimate the tempo (in beats per minute) from the autocorrelation of onset strength.

    Args:
        audio: at least two seconds of music with audible onsets.
        min_bpm: slowest tempo considered.
        max_bpm: fastest tempo considered.

    Returns:
        The tempo in BPM, refined to sub-frame precision by parabolic interpolation.

    Raises:
        ParameterError: audio too short or silent, or a bad tempo range.
    """
    if not (0 < min_bpm < max_bpm):
        raise ParameterError(f"min_bpm={min_bpm}, max_bpm={max_bpm} must satisfy 0 < min < max")
    if audio.duration_s < 2.0:
        raise ParameterError(
            f"tempo estimation needs at least 2 s of audio, got {audio.duration_s:.2f} s"
        )
    if audio.peak == 0:
        raise ParameterError("cannot estimate the tempo of silence")
    envelope, frame_rate = _onset_envelope(audio)
    envelope = envelope - envelope.mean()
    if not np.any(envelope):
        raise ParameterError("cannot estimate the tempo: the audio has no onsets")
    size = 1 << (2 * len(envelope) - 1).bit_length()
    spectrum = np.fft.rfft(envelope, size)
    autocorrelation = np.fft.irfft(spectrum * np.conj(spectrum), size)[: len(envelope)]
    autocorrelation /= np.arange(len(envelope), 0, -1)  # unbiased: long lags see fewer pairs
    shortest = max(1, math.floor(60.0 * frame_rate / max_bpm))
    longest = min(len(envelope) - 2, math.ceil(60.0 * frame_rate / min_bpm))
    if longest <= shortest:
        raise ParameterError("audio too short for the requested tempo range")
    lags = np.arange(shortest, longest + 1)
    # Prefer the beat over its multiples: add the evidence at twice the lag (the bar level).
    score = autocorrelation[lags].copy()
    doubled = 2 * lags
    valid = doubled < len(autocorrelation)
    score[valid] += 0.5 * autocorrelation[doubled[valid]]
    best = int(lags[int(np.argmax(score))])
    if 1 <= best < len(autocorrelation) - 1:
        left, centre, right = autocorrelation[best - 1 : best + 2]
        curvature = left - 2 * centre + right
        offset = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
    else:
        offset = 0.0
    return float(60.0 * frame_rate / (best + float(np.clip(offset, -0.5, 0.5))))


def trim_to_bars(audio: Audio, *, bpm: float | None = None, beats_per_bar: int = 4) -> Audio:
    """Trim audio to a whole number of bars (from the start), so it loops on the bar.

    Args:
        audio: the audio to trim.
        bpm: tempo in beats per minute; ``None`` estimates it with :func:`estimate_tempo`.
        beats_per_bar: beats in one bar (4 for 4/4).

    Returns:
        Audio of ``floor(duration / bar) * bar`` seconds, where ``bar = beats_per_bar * 60 / bpm``.

    Raises:
        ParameterError: bad tempo or audio shorter than one bar.
    """
    check_integer("beats_per_bar", beats_per_bar)
    if bpm is None:
        bpm = estimate_tempo(audio)
    if not isinstance(bpm, int | float) or not math.isfinite(bpm) or bpm <= 0:
        raise ParameterError(f"bpm={bpm!r} must be a positive number")
    bar_samples = beats_per_bar * 60.0 / bpm * audio.sample_rate
    bars = int(audio.num_samples // bar_samples)
    if bars < 1:
        raise ParameterError(
            f"audio of {audio.duration_s:.2f} s is shorter than one bar "
            f"({bar_samples / audio.sample_rate:.2f} s at {bpm:.1f} BPM)"
        )
    return audio.fit_length(round(bars * bar_samples))


def periodic_image_to_audio(
    image: Image.Image,
    params: SpectrogramParams | None = None,
    **decode_options: Any,
) -> Audio:
    """Decode a spectrogram image that wraps around in time into audio that loops seamlessly.

    Phase recovery of a single image normally treats both ends as edges, so even a periodic
    spectrogram gives a click at the wrap. Here the STFT frames wrap around the ends (circular
    framing in every Griffin-Lim iteration), so the waveform is exactly one period of a loop:
    played end to start, the sample after the last one is its continuation.

    Args:
        image: spectrogram image (PIL or path) whose last column continues into its first.
        params: decoding parameters (EXIF or defaults when ``None``).
        **decode_options: passed to :func:`riffusion.image_to_audio` (``seed``,
            ``num_iterations``, ``device``, ...); the method is always ``"fast"``.

    Returns:
        Audio of ``params.samples_for_width(width, periodic=True)`` = ``width · hop_length``
        samples (512 columns → 225,792 samples = 5.12 s: the one-shot convention's
        ``(width − 1) · hop`` plus the hop from the last column back to the first),
        peak-normalised like ``image_to_audio``.
    """
    image = load_image(image)
    params = params or params_from_image(image)
    return image_to_audio(image, params, periodic=True, **decode_options)


def seam_discontinuity(
    audio: Audio, *, frame_s: float = 0.02, local_s: float = 0.01
) -> dict[str, float]:
    """How audible the wrap-around of a loop is, relative to the clip's own typical values.

    Returns:
        ``jump_ratio``: |first sample − last sample| divided by the RMS of the steps between
        neighbouring samples within ``local_s`` seconds on either side of the seam (what the
        waveform normally does right there, so loud noisy material is not mistaken for a click);
        ``flux_ratio``: spectral flux between the last and first ``frame_s`` frames divided by
        the 95th percentile of the flux between neighbouring frames inside the clip (a loop may
        wrap on a downbeat, an onset like the clip's others). Values near 1 (or below) mean the
        seam is like any other moment of the clip.
    """
    waveform = audio.to_mono().waveform[0].astype(np.float64)
    local = max(2, round(local_s * audio.sample_rate))
    steps = np.concatenate([np.diff(waveform[-local:]), np.diff(waveform[:local])])
    # Silence on both sides: any jump is infinitely unusual; the floor avoids dividing by 0.
    typical_step = float(np.sqrt(np.mean(steps**2))) or 1e-12
    jump_ratio = abs(waveform[0] - waveform[-1]) / typical_step
    frame = max(16, round(frame_s * audio.sample_rate))
    count = len(waveform) // frame
    if count < 4:
        raise ParameterError(f"audio of {audio.duration_s:.3f} s is too short to judge a seam")
    frames = waveform[: count * frame].reshape(count, frame) * np.hanning(frame)
    spectra = np.abs(np.fft.rfft(frames, axis=1))

    def flux(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(b - a) / (np.linalg.norm(a) + np.linalg.norm(b) + 1e-12))

    inner = [flux(spectra[i], spectra[i + 1]) for i in range(count - 1)]
    typical_flux = float(np.percentile(inner, 95)) or 1e-12
    seam_flux = flux(spectra[-1], spectra[0])
    return {"jump_ratio": jump_ratio, "flux_ratio": seam_flux / typical_flux}


@dataclass(frozen=True)
class StreamStep:
    """One clip of the endless stream: interpolate from ``start`` to ``end`` at ``alpha``."""

    start: PromptInput
    end: PromptInput
    alpha: float
    index: int


def _as_prompt_input(item: PromptInput | str | dict[str, Any], seed: int) -> PromptInput:
    if isinstance(item, PromptInput):
        return item
    if isinstance(item, str):
        return PromptInput(prompt=item, seed=seed)
    if isinstance(item, dict):
        return PromptInput.from_dict(item)
    raise ParameterError(
        f"prompts must hold PromptInput, str or dict items, got {type(item).__name__}"
    )


def stream_schedule(
    prompts: Iterable[PromptInput | str | dict[str, Any]],
    *,
    steps_per_transition: int = 4,
    seed: int = 0,
    endless: bool = True,
) -> Iterator[StreamStep]:
    """The schedule of the original web app's endless playback.

    Between successive prompts, ``steps_per_transition`` clips at ``alpha = 0, 1/n, ..., (n-1)/n``
    (the next transition starts at alpha 0 of the new start, which equals alpha 1 of the previous
    one). When the next prompt is the same as the current one, or the prompts run out, the seed
    walks instead: ``(prompt, seed) → (prompt, seed + 1)``, so the music keeps evolving.

    Args:
        prompts: prompts as :class:`PromptInput`, plain strings (seeded ``seed``, then walking),
            or riffusion JSON dicts; at least one.
        steps_per_transition: clips per transition (4 in the web app: alpha steps of 0.25).
        seed: seed of a first prompt given as a plain string.
        endless: keep walking the seed after the last prompt (forever); otherwise end with one
            clip of the last prompt itself (``start == end``, alpha 0).

    Yields:
        :class:`StreamStep` values, ``index`` counting from 0.
    """
    check_integer("steps_per_transition", steps_per_transition)
    if isinstance(prompts, str | PromptInput):
        prompts = [prompts]
    if isinstance(prompts, Sequence) and len(prompts) == 0:
        raise ParameterError("prompts is empty; give at least one prompt")
    return _walk_schedule(iter(prompts), steps_per_transition, seed, endless)


def _walk_schedule(
    iterator: Iterator[PromptInput | str | dict[str, Any]],
    steps_per_transition: int,
    seed: int,
    endless: bool,
) -> Iterator[StreamStep]:
    """The generator behind :func:`stream_schedule` (arguments already validated)."""
    first = next(iterator, None)
    if first is None:
        raise ParameterError("prompts is empty; give at least one prompt")
    current = _as_prompt_input(first, seed)
    index = 0
    while True:
        following = next(iterator, None)
        if following is None:
            if not endless:
                yield StreamStep(current, current, 0.0, index)
                return
            target = dataclasses.replace(current, seed=current.seed + 1)
        else:
            target = _as_prompt_input(following, current.seed + 1)
            if target == current or (
                isinstance(following, str) and target.prompt == current.prompt
            ):
                target = dataclasses.replace(target, seed=current.seed + 1)
        for step in range(steps_per_transition):
            yield StreamStep(current, target, step / steps_per_transition, index)
            index += 1
        current = target
