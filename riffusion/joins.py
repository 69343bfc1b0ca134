"""Joining audio: equal-power crossfades, seamless loops from periodic images, the seam metric.

Audio-level only (no diffusion): it sits above :mod:`riffusion.convert` and below
:class:`riffusion.Riffuser`, which composes it with generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from riffusion._checks import finite_float
from riffusion.audio import Audio
from riffusion.convert import image_to_audio
from riffusion.errors import ParameterError
from riffusion.limits import MAX_DURATION_S
from riffusion.params import SpectrogramParams

__all__ = ["periodic_image_to_audio", "seam_discontinuity", "stitch"]


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

    Example:
        >>> import numpy as np
        >>> one_second = Audio(np.zeros((1, 44100), np.float32), 44100)
        >>> stitch([one_second, one_second], crossfade_s=0.5).duration_s
        1.5
    """
    if isinstance(clips_or_audio, Audio) or not isinstance(clips_or_audio, Sequence):
        raise ParameterError("clips_or_audio must be a list of Audio or Clip values")
    if len(clips_or_audio) == 0:
        raise ParameterError("clips_or_audio is empty; give at least one clip")
    crossfade = finite_float(crossfade_s)
    if crossfade is None or crossfade < 0 or crossfade > MAX_DURATION_S:
        raise ParameterError(
            f"crossfade_s={crossfade_s!r} must be a finite number >= 0 (at most "
            f"{MAX_DURATION_S:g} s)"
        )
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
            ``num_iterations``, ``device``, ...); ``method`` must name a decoder with a circular
            mode (``"fast"``, the default).

    Returns:
        Audio of ``params.samples_for_width(width, periodic=True)`` = ``width · hop_length``
        samples (512 columns → 225,792 samples = 5.12 s: the one-shot convention's
        ``(width − 1) · hop`` plus the hop from the last column back to the first),
        peak-normalised like ``image_to_audio``.
    """
    return image_to_audio(image, params, periodic=True, **decode_options)


def seam_discontinuity(
    audio: Audio, *, frame_s: float = 0.02, local_s: float = 0.01
) -> dict[str, float]:
    """How audible the wrap-around of a loop is, relative to the clip's own typical values.

    Args:
        audio: the loop, any channels (mixed to mono), at least 4 frames long.
        frame_s: frame length of the spectral flux, in seconds.
        local_s: span on each side of the seam whose sample steps set the scale, in seconds.

    Returns:
        ``jump_ratio``: |first sample − last sample| divided by the RMS of the steps between
        neighbouring samples within ``local_s`` seconds on either side of the seam (what the
        waveform normally does right there, so loud noisy material is not mistaken for a click);
        ``flux_ratio``: spectral flux between the last and first ``frame_s`` frames divided by
        the 95th percentile of the flux between neighbouring frames inside the clip (a loop may
        wrap on a downbeat, an onset like the clip's others). Values near 1 (or below) mean the
        seam is like any other moment of the clip.
    """
    if not isinstance(audio, Audio):
        raise ParameterError(f"audio must be a riffusion.Audio, got {type(audio).__name__}")
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
