"""The :class:`Audio` value type: a waveform with its sample rate, file I/O and simple edits.

Files are read and written with ``soundfile`` (libsndfile): WAV, FLAC, OGG (Vorbis) and MP3,
among others. Resampling uses ``torchaudio.functional.resample``.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile
import torch
import torchaudio

from riffusion._checks import check_integer, check_number, describe
from riffusion._files import atomic_output, check_output_path
from riffusion.errors import AudioFileError, ParameterError
from riffusion.limits import (
    MAX_AUDIO_BYTES,
    MAX_AUDIO_SAMPLES,
    MAX_CHANNELS,
    MAX_DURATION_S,
    MAX_SAMPLE_RATE,
)

__all__ = ["Audio"]

# Extension → (libsndfile format, subtype used when writing).
_WRITE_FORMATS: dict[str, tuple[str, str]] = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}

# Sample rates each lossy encoder supports. MPEG layer III knows nine rates; libsndfile's Vorbis
# encoder kills the whole process (no exception) at 240 kHz and above, so stay at 192 kHz.
_MP3_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_OGG_MAX_SAMPLE_RATE = 192_000


def _check_sample_rate(name: str, value: object) -> int:
    """``value`` as an int in ``[1, MAX_SAMPLE_RATE]`` Hz, or a ParameterError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ParameterError(f"{name}={value!r} must be a positive integer (Hz)")
    if not 0 < value <= MAX_SAMPLE_RATE:
        raise ParameterError(
            f"{name}={value} must be a positive integer of at most {MAX_SAMPLE_RATE} Hz"
        )
    return int(value)


def _check_encodable(format: str, subtype: str | None, sample_rate: int, target: str) -> None:
    """Refuse, before writing a byte, what libsndfile cannot write (or would crash on)."""
    if not isinstance(format, str) or format.upper() not in soundfile.available_formats():
        raise AudioFileError(
            f"format={format!r} for {target} is not an audio format libsndfile writes; use one "
            f"of {', '.join(sorted(soundfile.available_formats()))}"
        )
    if subtype is not None and not isinstance(subtype, str):
        raise AudioFileError(f"subtype={subtype!r} for {target} must be a string such as 'PCM_16'")
    if format.upper() == "MP3" and sample_rate not in _MP3_SAMPLE_RATES:
        raise AudioFileError(
            f"MP3 cannot store sample_rate={sample_rate} Hz ({target}); resample to one of "
            f"{', '.join(map(str, _MP3_SAMPLE_RATES))} first"
        )
    if format.upper() == "OGG" and sample_rate > _OGG_MAX_SAMPLE_RATE:
        raise AudioFileError(
            f"OGG Vorbis cannot store sample_rate={sample_rate} Hz ({target}); at most "
            f"{_OGG_MAX_SAMPLE_RATE} Hz — resample first or save as .wav/.flac"
        )


@dataclass(frozen=True, eq=False)
class Audio:
    """A waveform and its sample rate.

    Attributes:
        waveform: ``(channels, samples)`` float32 numpy array, nominally in [-1, 1]. A 1-D array
            is taken as one channel. At least one sample; no NaN or infinite values.
        sample_rate: samples per second (in Hz), a positive integer.

    Example:
        >>> import numpy as np
        >>> tone = Audio(np.sin(np.linspace(0, 2 * np.pi * 440, 44100)), sample_rate=44100)
        >>> tone.num_channels, tone.duration_s
        (1, 1.0)
    """

    waveform: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        waveform = self.waveform
        if isinstance(waveform, torch.Tensor):
            waveform = waveform.detach().cpu().numpy()
        waveform = np.asarray(waveform)
        if not np.issubdtype(waveform.dtype, np.number) or np.iscomplexobj(waveform):
            raise ParameterError(f"waveform dtype {waveform.dtype} must be real numbers")
        if waveform.ndim == 1:
            waveform = waveform[None, :]
        if waveform.ndim != 2:
            raise ParameterError(
                f"waveform of shape {waveform.shape} must be (channels, samples) or (samples,)"
            )
        if waveform.shape[0] < 1 or waveform.shape[1] < 1:
            raise ParameterError(f"waveform of shape {waveform.shape} holds no samples")
        if waveform.shape[0] > MAX_CHANNELS:
            raise ParameterError(
                f"waveform of shape {waveform.shape} has more than {MAX_CHANNELS} channels; "
                "expected (channels, samples) — if it is (samples, channels), transpose it"
            )
        if waveform.shape[1] > MAX_AUDIO_SAMPLES:
            raise ParameterError(
                f"waveform of shape {waveform.shape} has more than {MAX_AUDIO_SAMPLES} samples "
                "per channel (riffusion.limits.MAX_AUDIO_SAMPLES)"
            )
        sample_rate = _check_sample_rate("sample_rate", self.sample_rate)
        with np.errstate(over="ignore", invalid="ignore"):
            waveform = np.ascontiguousarray(waveform, dtype=np.float32)
        if not np.isfinite(waveform).all():
            raise ParameterError(
                "waveform contains NaN or infinite samples (or values beyond float32's range)"
            )
        waveform.setflags(write=False)
        object.__setattr__(self, "waveform", waveform)
        object.__setattr__(self, "sample_rate", sample_rate)

    # ------------------------------------------------------------------------------ facts
    @property
    def num_channels(self) -> int:
        """Number of channels."""
        return int(self.waveform.shape[0])

    @property
    def num_samples(self) -> int:
        """Samples per channel."""
        return int(self.waveform.shape[1])

    @property
    def duration_s(self) -> float:
        """Duration (in seconds)."""
        return self.num_samples / self.sample_rate

    @property
    def peak(self) -> float:
        """Largest absolute sample value."""
        return float(np.abs(self.waveform).max())

    def __repr__(self) -> str:
        return (
            f"Audio(channels={self.num_channels}, samples={self.num_samples}, "
            f"sample_rate={self.sample_rate}, duration_s={self.duration_s:.3f})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Audio):
            return NotImplemented
        return self.sample_rate == other.sample_rate and np.array_equal(
            self.waveform, other.waveform
        )

    __hash__ = None  # type: ignore[assignment]

    def to_tensor(self) -> torch.Tensor:
        """The waveform as a ``(channels, samples)`` float32 tensor (a copy)."""
        return torch.from_numpy(self.waveform.copy())

    # -------------------------------------------------------------------------------- I/O
    @classmethod
    def load(
        cls,
        source: str | os.PathLike[str] | BinaryIO | bytes,
        *,
        sample_rate: int | None = None,
        num_channels: int | None = None,
        max_bytes: int = MAX_AUDIO_BYTES,
    ) -> Audio:
        """Read an audio file (WAV, FLAC, OGG, MP3, ... — anything libsndfile reads).

        Args:
            source: a path, an open binary file, or the file's bytes.
            sample_rate: resample to this rate (in Hz); ``None`` keeps the file's rate.
            num_channels: convert to this many channels (1 or 2); ``None`` keeps the file's.
            max_bytes: most bytes of decoded float32 samples (all channels): checked from the
                header before decoding, then while decoding (default
                :data:`riffusion.limits.MAX_AUDIO_BYTES`; a server reading uploads sets less).

        Raises:
            AudioFileError: missing, unreadable, corrupt, unsupported, empty or too large file.
        """
        check_integer("max_bytes", max_bytes)
        name = "<bytes>"
        if sample_rate is not None:
            _check_sample_rate("sample_rate", sample_rate)
        if num_channels is not None:
            check_integer("num_channels", num_channels)
        if isinstance(source, bytes | bytearray | memoryview):
            source = io.BytesIO(bytes(source))
        elif isinstance(source, str | os.PathLike):
            path = Path(os.fsdecode(source))
            name = str(path)
            if "\x00" in name:
                raise AudioFileError(f"audio file name {name!r} contains a NUL byte")
            try:
                exists, is_folder, is_file = path.exists(), path.is_dir(), path.is_file()
            except OSError as error:  # a name too long, a loop of links, ...
                raise AudioFileError(
                    f"audio file {name[:200]!r} cannot be opened: {error.strerror}"
                ) from None
            if not exists:
                raise AudioFileError(f"audio file {name[:200]!r} does not exist")
            if is_folder:
                raise AudioFileError(f"audio file {name!r} is a folder, not a file")
            if not is_file:  # a FIFO or a device would block or never end
                raise AudioFileError(f"audio file {name!r} is not a regular file")
            if path.stat().st_size == 0:
                raise AudioFileError(f"audio file {name!r} is empty (0 bytes)")
        elif hasattr(source, "read"):
            name = str(getattr(source, "name", "<file object>"))
        else:
            raise AudioFileError(
                f"audio source must be a path, an open binary file or bytes, got "
                f"{type(source).__name__}; e.g. Audio.load('song.wav')"
            )
        try:
            data, rate = _read_bounded(source, name, max_bytes)
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as error:
            if isinstance(error, AudioFileError):
                raise
            # libsndfile's message names the file object by its repr (a memory address).
            reason = str(error).replace(repr(source), repr(name))
            raise AudioFileError(
                f"cannot read audio from {name!r}: {reason} (supported formats: "
                f"{', '.join(sorted(soundfile.available_formats()))})"
            ) from error
        if data.shape[0] == 0:
            raise AudioFileError(f"audio file {name!r} contains no samples")
        if not np.isfinite(data).all():
            raise AudioFileError(f"audio file {name!r} contains NaN or infinite samples")
        audio = cls(data.T, sample_rate=int(rate))
        if sample_rate is not None:
            audio = audio.resample(sample_rate)
        if num_channels is not None:
            audio = audio.with_channels(num_channels)
        return audio

    def save(
        self, path: str | os.PathLike[str], *, format: str | None = None, subtype: str | None = None
    ) -> Path:
        """Write the audio to ``path``; the format follows the extension (.wav, .flac, .ogg, .mp3).

        Samples are clipped to [-1, 1]. The file appears only when completely written.

        Args:
            path: output file.
            format: libsndfile format name overriding the extension (e.g. ``"WAV"``).
            subtype: libsndfile subtype (e.g. ``"FLOAT"``, ``"PCM_24"``); a sensible default
                per format otherwise.

        Raises:
            AudioFileError: unknown extension or a failed write.
        """
        path = check_output_path(path, error=AudioFileError, what="audio file")
        suffix = path.suffix.lower()
        if format is None:
            if suffix not in _WRITE_FORMATS:
                raise AudioFileError(
                    f"cannot tell the audio format of {str(path)!r} from its extension; use one "
                    f"of {', '.join(_WRITE_FORMATS)} or pass format="
                )
            format, default_subtype = _WRITE_FORMATS[suffix]
            subtype = subtype or default_subtype
        _check_encodable(format, subtype, self.sample_rate, repr(str(path)))
        waveform = np.clip(self.waveform, -1.0, 1.0).T
        try:
            with atomic_output(path, error=AudioFileError) as temporary:
                soundfile.write(
                    temporary, waveform, self.sample_rate, format=format, subtype=subtype
                )
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
            if isinstance(error, AudioFileError):  # from atomic_output: already names the path
                raise
            raise AudioFileError(f"cannot write {str(path)!r}: {error}") from error
        return path

    def _repr_html_(self) -> str:
        """A notebook audio player with the audio embedded as compressed MP3 (OGG Vorbis where
        this libsndfile cannot write MP3), plus duration, sample rate and channels."""
        import base64

        try:
            data, mime = self.to_bytes("MP3"), "audio/mpeg"
        except AudioFileError:
            data, mime = self.to_bytes("OGG"), "audio/ogg"
        return (
            f'<div><audio controls src="data:{mime};base64,{base64.b64encode(data).decode()}">'
            f"</audio><br><small>{self.duration_s:.2f} s, {self.sample_rate} Hz, "
            f"{self.num_channels} channel{'s' if self.num_channels != 1 else ''}</small></div>"
        )

    def to_bytes(self, format: str = "WAV", subtype: str | None = None) -> bytes:
        """The audio encoded as a file in memory.

        Args:
            format: libsndfile format name: ``"WAV"`` (16-bit PCM by default), ``"FLAC"``,
                ``"OGG"`` (Vorbis), ``"MP3"``, ...
            subtype: libsndfile subtype; a sensible default per format otherwise.

        Returns:
            The encoded file's bytes; samples are clipped to [-1, 1].

        Raises:
            AudioFileError: unknown format or subtype, or a sample rate the format cannot store.
        """
        _check_encodable(format, subtype, self.sample_rate, "in-memory audio")
        buffer = io.BytesIO()
        subtype = subtype or {f: s for f, s in _WRITE_FORMATS.values()}.get(format.upper())
        try:
            soundfile.write(
                buffer,
                np.clip(self.waveform, -1.0, 1.0).T,
                self.sample_rate,
                format=format,
                subtype=subtype,
            )
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
            raise AudioFileError(f"cannot encode audio as {format!r}: {error}") from error
        return buffer.getvalue()

    # ------------------------------------------------------------------------------ edits
    def resample(self, sample_rate: int) -> Audio:
        """The audio at ``sample_rate`` Hz (band-limited sinc interpolation; itself if equal).

        Args:
            sample_rate: target rate (in Hz), at most :data:`riffusion.limits.MAX_SAMPLE_RATE`.

        Returns:
            ``(channels, round(samples * sample_rate / self.sample_rate))`` audio.
        """
        sample_rate = _check_sample_rate("sample_rate", sample_rate)
        if sample_rate == self.sample_rate:
            return self
        expected = math.ceil(self.num_samples * sample_rate / self.sample_rate)
        _check_bytes(self.num_channels, expected, f"resampling to sample_rate={sample_rate}")
        if expected > MAX_AUDIO_SAMPLES:
            raise ParameterError(
                f"resampling {self.num_samples} samples from {self.sample_rate} Hz to "
                f"sample_rate={sample_rate} Hz gives {expected} samples, more than "
                f"{MAX_AUDIO_SAMPLES} (riffusion.limits.MAX_AUDIO_SAMPLES)"
            )
        resampled = _resample(self.waveform, self.sample_rate, sample_rate)
        if resampled.shape[-1] == 0:
            raise ParameterError(
                f"resampling {self.num_samples} samples from {self.sample_rate} Hz to "
                f"{sample_rate} Hz leaves no samples"
            )
        return Audio(resampled, sample_rate=sample_rate)

    def with_channels(self, num_channels: int) -> Audio:
        """The audio with ``num_channels`` channels.

        To one channel the channels are averaged; from one channel it is duplicated; from more
        channels to fewer (but more than one) the first ``num_channels`` are kept (a 5.1 file's
        first two are front left and right).

        Args:
            num_channels: channels of the result, an int >= 1; from several channels to more
                than one, at most as many as there are.
        """
        check_integer("num_channels", num_channels)
        if num_channels > MAX_CHANNELS:
            raise ParameterError(f"num_channels={num_channels} must be at most {MAX_CHANNELS}")
        if num_channels == self.num_channels:
            return self
        if num_channels == 1:
            return Audio(self.waveform.mean(axis=0, keepdims=True), sample_rate=self.sample_rate)
        if self.num_channels == 1:
            _check_bytes(num_channels, self.num_samples, f"num_channels={num_channels}")
            return Audio(np.repeat(self.waveform, num_channels, axis=0), self.sample_rate)
        if num_channels < self.num_channels:
            return Audio(self.waveform[:num_channels], sample_rate=self.sample_rate)
        raise ParameterError(
            f"cannot convert {self.num_channels} channels to num_channels={num_channels}; "
            "only to fewer channels or from 1 (duplicate)"
        )

    def to_mono(self) -> Audio:
        """Channels averaged into one."""
        return self.with_channels(1)

    def normalize_peak(self, peak_dbfs: float = -1.0) -> Audio:
        """Scale so the largest absolute sample is at ``peak_dbfs`` (dB full scale, <= 0).

        Silence stays silent (no division by zero).

        Args:
            peak_dbfs: target peak in dB full scale (<= 0; -1 dBFS = 0.891 linear).
        """
        check_number("peak_dbfs", peak_dbfs, maximum=0.0)
        peak = self.peak
        if peak == 0:
            return self
        gain = 10 ** (peak_dbfs / 20) / peak
        # In float64: for a tiny peak (1e-40) the gain itself overflows float32.
        scaled = (self.waveform.astype(np.float64) * gain).astype(np.float32)
        return Audio(scaled, sample_rate=self.sample_rate)

    def loudness_lufs(self) -> float:
        """Integrated loudness (ITU-R BS.1770-4, in LUFS); ``-inf`` for silence.

        Raises:
            ParameterError: shorter than the 400 ms the measurement needs.
        """
        if self.duration_s < 0.4:
            raise ParameterError(
                f"loudness needs at least 0.4 s of audio, got {self.duration_s:.3f} s"
            )
        if self.peak == 0:
            return float("-inf")
        return _integrated_loudness(self.waveform, self.sample_rate)

    def normalize_loudness(self, target_lufs: float = -14.0, *, max_peak: float = 1.0) -> Audio:
        """Scale to an integrated loudness of ``target_lufs`` (LUFS), peaks limited to ``max_peak``.

        The gain is reduced if it would push any sample above ``max_peak``, so the result can be
        quieter than the target. Silence stays silent.

        Args:
            target_lufs: integrated loudness to reach, in LUFS (ITU-R BS.1770).
            max_peak: largest absolute sample allowed after scaling, linear in (0, 1].
        """
        check_number("target_lufs", target_lufs, minimum=-100.0, maximum=0.0)
        check_number("max_peak", max_peak, maximum=1.0)
        if max_peak <= 0:
            raise ParameterError(f"max_peak={max_peak!r} must be in (0, 1]")
        current = self.loudness_lufs()
        if not math.isfinite(current):
            return self
        gain = 10 ** ((target_lufs - current) / 20)
        gain = min(gain, max_peak / self.peak)
        return Audio(self.waveform * gain, sample_rate=self.sample_rate)

    def slice(self, start_s: float = 0.0, end_s: float | None = None) -> Audio:
        """The part between ``start_s`` and ``end_s`` (seconds; ``None`` = the end).

        Args:
            start_s: first instant kept (in seconds), ``>= 0``.
            end_s: end of the part (in seconds), above ``start_s`` and at most ``duration_s``.

        Returns:
            ``(channels, round(end_s·rate) − round(start_s·rate))`` audio (at least one sample).
        """
        check_number("start_s", start_s)
        if end_s is not None:
            check_number("end_s", end_s)
        end_s = self.duration_s if end_s is None else end_s
        if not (0 <= start_s < end_s <= self.duration_s + 1e-9):
            raise ParameterError(
                f"start_s={start_s}, end_s={end_s} must satisfy 0 <= start_s < end_s <= "
                f"duration_s={self.duration_s:.3f}"
            )
        first = round(start_s * self.sample_rate)
        last = max(first + 1, round(end_s * self.sample_rate))
        return Audio(self.waveform[:, first:last], sample_rate=self.sample_rate)

    def fit_length(self, num_samples: int) -> Audio:
        """Trimmed or zero-padded at the end to exactly ``num_samples`` samples per channel.

        Args:
            num_samples: samples per channel of the result, an int >= 0.
        """
        check_integer("num_samples", num_samples)
        _check_bytes(self.num_channels, num_samples, f"num_samples={num_samples}")
        if num_samples > MAX_AUDIO_SAMPLES:
            raise ParameterError(
                f"num_samples={num_samples} is more than {MAX_AUDIO_SAMPLES} "
                "(riffusion.limits.MAX_AUDIO_SAMPLES)"
            )
        if num_samples <= self.num_samples:
            return Audio(self.waveform[:, :num_samples], sample_rate=self.sample_rate)
        padding = np.zeros((self.num_channels, num_samples - self.num_samples), np.float32)
        return Audio(np.concatenate([self.waveform, padding], axis=1), sample_rate=self.sample_rate)


def _check_bytes(channels: int, samples: int, what: str) -> None:
    """Refuse a waveform of ``channels × samples`` float32 beyond :data:`MAX_AUDIO_BYTES`."""
    if 4 * channels * samples > MAX_AUDIO_BYTES:
        raise ParameterError(
            f"{what} makes {channels} × {describe(samples)} float32 samples, more than "
            f"{MAX_AUDIO_BYTES / 2**30:g} GiB (riffusion.limits.MAX_AUDIO_BYTES)"
        )


def _read_bounded(source: object, name: str, max_bytes: int) -> tuple[np.ndarray, int]:
    """Read a whole file with soundfile, within ``max_bytes`` of float32 samples.

    The header's rate, channels and length are checked before anything is decoded, and the
    budget again while decoding, block by block: a header may understate the length (or not
    know it), and a small compressed file can expand a thousandfold.
    """
    with soundfile.SoundFile(source) as handle:
        rate, frames, channels = handle.samplerate, handle.frames, handle.channels
        if not 0 < rate <= MAX_SAMPLE_RATE:
            raise AudioFileError(
                f"audio file {name!r} declares a sample rate of {rate} Hz; at most "
                f"{MAX_SAMPLE_RATE} Hz is supported"
            )
        if channels > MAX_CHANNELS:
            raise AudioFileError(
                f"audio file {name!r} declares {channels} channels; at most {MAX_CHANNELS}"
            )
        if frames > MAX_AUDIO_SAMPLES or frames / rate > MAX_DURATION_S:
            raise AudioFileError(
                f"audio file {name!r} declares {frames} frames ({frames / rate:.0f} s); at most "
                f"{MAX_DURATION_S:.0f} s and {MAX_AUDIO_SAMPLES} frames are read at once"
            )
        if 4 * frames * channels > max_bytes:
            raise AudioFileError(
                f"audio file {name!r} declares {frames} frames × {channels} channels "
                f"({frames / rate:.1f} s at {rate} Hz), {4 * frames * channels / 2**20:.0f} MiB "
                f"decoded; at most {max_bytes / 2**20:.0f} MiB are read"
            )
        blocks, size = [], 0
        block_frames = max(1, (4 << 20) // (4 * channels))  # 4 MiB at a time
        while True:
            block = handle.read(block_frames, dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            size += block.nbytes
            if size > max_bytes:
                raise AudioFileError(
                    f"audio file {name!r} decodes to more than {max_bytes / 2**20:.0f} MiB "
                    f"(its header declared {frames} frames); at most "
                    f"{max_bytes / 2**20:.0f} MiB are read"
                )
            blocks.append(block)
    if not blocks:
        return np.zeros((0, channels), np.float32), int(rate)
    return np.concatenate(blocks), int(rate)


# Above this many polyphase filter taps (new/g × old/g for g = gcd of the rates), torchaudio's
# kernel would take gigabytes (44100 → 44101 Hz asks for ~8 GB); use scipy's polyphase
# resampler instead, whose filter grows with max(up, down) rather than with their product.
_MAX_TORCHAUDIO_PHASES = 1_000_000


def _resample(waveform: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """``(channels, samples)`` float32 at ``from_rate`` → at ``to_rate`` (both in Hz)."""
    divisor = math.gcd(from_rate, to_rate)
    up, down = to_rate // divisor, from_rate // divisor
    if up * down <= _MAX_TORCHAUDIO_PHASES:
        resampled = torchaudio.functional.resample(
            torch.from_numpy(waveform.copy()), from_rate, to_rate
        )
        return resampled.numpy()
    from scipy.signal import resample_poly

    length = math.ceil(waveform.shape[-1] * up / down)
    out = resample_poly(waveform.astype(np.float64), up, down, axis=-1)[:, :length]
    return out.astype(np.float32)


def _integrated_loudness(waveform: np.ndarray, sample_rate: int) -> float:
    """ITU-R BS.1770-4 integrated loudness (in LUFS) of ``(channels, samples)`` audio.

    Uses ``pyloudnorm``: its K-weighting filter is not clamped, so bright full-scale material
    measures correctly (full-scale white noise: about -1.7 LUFS).
    """
    import warnings

    import pyloudnorm

    if waveform.shape[0] > 5:
        raise ParameterError(
            f"loudness is defined for at most 5 channels (ITU-R BS.1770 weights), got "
            f"{waveform.shape[0]}; mix down with with_channels(2) first"
        )
    meter = pyloudnorm.Meter(sample_rate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loudness = meter.integrated_loudness(waveform.T.astype(np.float64))
    return float(loudness)
