"""Audio ↔ spectrogram image in one call: the composition of spectrogram, image and audio.

These are the functions most users want::

    image = riffusion.audio_to_image(riffusion.Audio.load("loop.wav"))
    audio = riffusion.image_to_audio(image)
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from PIL import Image

from riffusion._checks import check_seed
from riffusion.audio import Audio
from riffusion.decoders import DecoderName, check_decode_size, decode_mel
from riffusion.errors import ImageFormatError, ParameterError
from riffusion.image import image_to_mel, load_image, mel_to_image, params_from_image
from riffusion.limits import MAX_AUDIO_SAMPLES
from riffusion.params import SpectrogramParams
from riffusion.spectrogram import INT16_SCALE, get_converter

__all__ = ["audio_to_image", "image_to_audio"]


def audio_to_image(
    audio: Audio | str | os.PathLike[str],
    params: SpectrogramParams | None = None,
    *,
    device: torch.device | str = "cpu",
) -> Image.Image:
    """Encode audio as a Riffusion spectrogram image.

    The audio is resampled to ``params.sample_rate`` and mixed down (or duplicated) to the
    channel count ``params.stereo`` asks for.

    Args:
        audio: :class:`Audio` or a path to an audio file (read with :meth:`Audio.load`);
            any sample rate and channel count, at least one hop (10 ms) long.
        params: spectrogram parameters; ``SpectrogramParams()`` (Riffusion's) by default.
        device: where the STFT runs.

    Returns:
        RGB image ``params.width_for_samples(samples)`` = ``samples // hop_length + 1``
        pixels wide (Riffusion's convention: 5.11 s → 512, 5.12 s → 513 at the defaults) and
        ``num_frequencies`` high, with the parameters in EXIF. Silence gives a white image.

    Example:
        >>> import numpy as np
        >>> from riffusion import Audio
        >>> tone = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype(np.float32)
        >>> audio_to_image(Audio(tone[None], 44100)).size  # (width, height): 44100 // 441 + 1
        (101, 512)
    """
    if isinstance(audio, str | os.PathLike):  # a path, e.g. audio_to_image("loop.wav")
        audio = Audio.load(audio)
    if not isinstance(audio, Audio):
        raise ParameterError(f"audio must be a riffusion.Audio, got {type(audio).__name__}")
    converter = get_converter(params, device=device)  # checks params and device first
    params = converter.params
    audio = audio.resample(params.sample_rate).with_channels(params.num_channels)
    if audio.num_samples < params.hop_length:
        raise ParameterError(
            f"audio of {audio.duration_s * 1000:.2f} ms is shorter than one spectrogram column "
            f"({params.step_size_ms} ms)"
        )
    # In float64, then rounded: the scale of a denormal peak is itself beyond float32's range.
    scaled = audio.waveform.astype(np.float64) * _level_scale(audio.peak)
    mel = converter.waveform_to_mel(torch.from_numpy(scaled.astype(np.float32)))
    return mel_to_image(mel, params)


def _level_scale(peak: float) -> float:
    """Riffusion's 16-bit scale, times a power of two that brings an extreme peak near 1.

    The image is normalised by its largest magnitude, and float arithmetic scaled by a power
    of two rounds exactly the same: the picture does not change, but a peak of 1e35 (float32
    allows it) no longer overflows the STFT's sums, nor does 1e-40 vanish below them.
    """
    if peak == 0 or 2.0**-20 <= peak <= 1.0:
        return INT16_SCALE
    return INT16_SCALE * 2.0 ** -math.ceil(math.log2(peak))


def image_to_audio(
    image: Image.Image | str | os.PathLike[str],
    params: SpectrogramParams | None = None,
    *,
    method: DecoderName = "fast",
    num_iterations: int | None = None,
    seed: int = 0,
    normalize: bool = True,
    periodic: bool = False,
    device: torch.device | str = "cpu",
) -> Audio:
    """Decode a Riffusion spectrogram image to audio, recovering the phase.

    Args:
        image: PIL image (any mode) or a path to one.
        params: decoding parameters; by default those in the image's EXIF, else Riffusion's.
        method: the registered decoder (:mod:`riffusion.decoders`): ``"fast"`` (default),
            ``"reference"`` (Riffusion's least-squares inverse mel + 32 Griffin-Lim iterations,
            slow) or a plug-in's name.
        num_iterations: Griffin-Lim iterations (more is slower and more faithful); ``None``
            for the decoder's default.
        seed: seed of the initial phase; equal seeds give equal audio.
        normalize: peak-normalise to -0.1 dBFS like Riffusion; otherwise the level follows
            ``params.max_value`` (int16 scale).
        periodic: the image is one period of a loop (only for a decoder that
            ``supports_periodic``, such as ``"fast"``): phase recovery wraps around the ends,
            so the audio loops seamlessly.
        device: where the decoder runs.

    Returns:
        :class:`Audio` at ``params.sample_rate`` with ``params.samples_for_width(width)``
        samples (Riffusion's convention, ``(width − 1) · hop_length``: 225,351 samples = 5.11 s
        for a 512-pixel-wide image; ``width · hop_length`` when ``periodic``) and 1 or 2
        channels. A white image decodes to silence.
    """
    check_seed("seed", seed)
    if params is not None and not isinstance(params, SpectrogramParams):
        raise ParameterError(
            f"params must be a riffusion.SpectrogramParams or None, got {type(params).__name__}"
        )
    image = load_image(image)
    params = params or params_from_image(image)
    if params.samples_for_width(image.width, periodic=periodic) == 0:
        raise ImageFormatError(
            f"an image {image.width} column wide decodes to no samples: a one-shot decode gives "
            "(width − 1) · hop_length samples (Riffusion's convention), so it needs at least 2 "
            "columns (periodic=True gives width · hop_length)"
        )
    if params.samples_for_width(image.width, periodic=periodic) > MAX_AUDIO_SAMPLES:
        raise ImageFormatError(
            f"an image {image.width} columns wide at step_size_ms={params.step_size_ms} and "
            f"sample_rate={params.sample_rate} would decode to "
            f"{params.samples_for_width(image.width, periodic=periodic)} samples, more than "
            f"{MAX_AUDIO_SAMPLES} (riffusion.limits.MAX_AUDIO_SAMPLES)"
        )
    check_decode_size(
        image.width,
        params.num_channels,
        params,
        method,
        what=f"an image {image.width} columns wide",
    )
    mel = image_to_mel(image, params)
    if float(mel.max()) == 0.0:
        length = params.samples_for_width(mel.shape[-1], periodic=periodic)
        silent = np.zeros((mel.shape[0], length), np.float32)
        return Audio(silent, sample_rate=params.sample_rate)
    waveform = decode_mel(
        mel,
        params,
        method=method,
        num_iterations=num_iterations,
        seed=seed,
        periodic=periodic,
        device=device,
    )
    audio = Audio(waveform.cpu().numpy() / INT16_SCALE, sample_rate=params.sample_rate)
    return audio.normalize_peak(-0.1) if normalize else audio
