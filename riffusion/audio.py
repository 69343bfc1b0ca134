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

from riffusion._checks import check_integer
from riffusion._files import atomic_output
from riffusion.errors import AudioFileError, ParameterError

__all__ = ["Audio"]

# Extension → (libsndfile format, subtype used when writing).
_WRITE_FORMATS: dict[str, tuple[str, str]] = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}


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
        if waveform.shape[0] > waveform.shape[1] and waveform.shape[0] > 16:
            raise ParameterError(
                f"waveform of shape {waveform.shape} looks like (samples, channels); "
                "expected (channels, samples) — transpose it"
            )
        waveform = np.ascontiguousarray(waveform, dtype=np.float32)
        if not np.isfinite(waveform).all():
            raise ParameterError("waveform contains NaN or infinite samples")
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int | np.integer):
            raise ParameterError(f"sample_rate={self.sample_rate!r} must be a positive integer")
        if self.sample_rate <= 0:
            raise ParameterError(f"sample_rate={self.sample_rate} must be a positive integer (Hz)")
        waveform.setflags(write=False)
        object.__setattr__(self, "waveform", waveform)
        object.__setattr__(self, "sample_rate", int(self.sample_rate))

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
    ) -> Audio:
        """Read an audio file (WAV, FLAC, OGG, MP3, ... — anything libsndfile reads).

        Args:
            source: a path, an open binary file, or the file's bytes.
            sample_rate: resample to this rate (in Hz); ``None`` keeps the file's rate.
            num_channels: convert to this many channels (1 or 2); ``None`` keeps the file's.

        Raises:
            AudioFileError: missing, unreadable, corrupt, unsupported or empty file.
        """
        name = "<bytes>"
        if isinstance(source, bytes | bytearray):
            source = io.BytesIO(source)
        elif isinstance(source, str | os.PathLike):
            path = Path(source)
            name = str(path)
            if not path.exists():
                raise AudioFileError(f"audio file {name!r} does not exist")
            if path.is_dir():
                raise AudioFileError(f"audio file {name!r} is a folder, not a file")
            if path.stat().st_size == 0:
                raise AudioFileError(f"audio file {name!r} is empty (0 bytes)")
        else:
            name = getattr(source, "name", "<file object>")
        try:
            data, rate = soundfile.read(source, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
            raise AudioFileError(
                f"cannot read audio from {name!r}: {error} (supported formats: "
                f"{', '.join(sorted(soundfile.available_formats()))})"
            ) from error
        if data.shape[0] == 0:
            raise AudioFileError(f"audio file {name!r} contains no samples")
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
        path = Path(path)
        suffix = path.suffix.lower()
        if format is None:
            if suffix not in _WRITE_FORMATS:
                raise AudioFileError(
                    f"cannot tell the audio format of {str(path)!r} from its extension; use one "
                    f"of {', '.join(_WRITE_FORMATS)} or pass format="
                )
            format, default_subtype = _WRITE_FORMATS[suffix]
            subtype = subtype or default_subtype
        waveform = np.clip(self.waveform, -1.0, 1.0).T
        try:
            with atomic_output(path) as temporary:
                soundfile.write(
                    temporary, waveform, self.sample_rate, format=format, subtype=subtype
                )
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
            raise AudioFileError(f"cannot write {str(path)!r}: {error}") from error
        return path

    def to_bytes(self, format: str = "WAV", subtype: str | None = None) -> bytes:
        """The audio encoded as a file in memory (default 16-bit WAV)."""
        buffer = io.BytesIO()
        subtype = subtype or {f: s for f, s in _WRITE_FORMATS.values()}.get(format.upper())
        soundfile.write(
            buffer,
            np.clip(self.waveform, -1.0, 1.0).T,
            self.sample_rate,
            format=format,
            subtype=subtype,
        )
        return buffer.getvalue()

    # ------------------------------------------------------------------------------ edits
    def resample(self, sample_rate: int) -> Audio:
        """The audio at ``sample_rate`` Hz (band-limited sinc interpolation; itself if equal)."""
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ParameterError(f"sample_rate={sample_rate!r} must be a positive integer (Hz)")
        if sample_rate == self.sample_rate:
            return self
        resampled = torchaudio.functional.resample(
            torch.from_numpy(self.waveform.copy()), self.sample_rate, sample_rate
        )
        if resampled.shape[-1] == 0:
            raise ParameterError(
                f"resampling {self.num_samples} samples from {self.sample_rate} Hz to "
                f"{sample_rate} Hz leaves no samples"
            )
        return Audio(resampled.numpy(), sample_rate=sample_rate)

    def with_channels(self, num_channels: int) -> Audio:
        """The audio with ``num_channels`` channels: mono is averaged, mono→N is duplicated."""
        check_integer("num_channels", num_channels)
        if num_channels == self.num_channels:
            return self
        mono = self.waveform.mean(axis=0, keepdims=True)
        if num_channels == 1:
            return Audio(mono, sample_rate=self.sample_rate)
        if self.num_channels == 1:
            return Audio(np.repeat(mono, num_channels, axis=0), sample_rate=self.sample_rate)
        raise ParameterError(
            f"cannot convert {self.num_channels} channels to num_channels={num_channels}; "
            "only to 1 (mix down) or from 1 (duplicate)"
        )

    def to_mono(self) -> Audio:
        """Channels averaged into one."""
        return self.with_channels(1)

    def normalize_peak(self, peak_dbfs: float = -1.0) -> Audio:
        """Scale so the largest absolute sample is at ``peak_dbfs`` (dB full scale, <= 0).

        Silence stays silent (no division by zero).
        """
        if not math.isfinite(peak_dbfs) or peak_dbfs > 0:
            raise ParameterError(f"peak_dbfs={peak_dbfs!r} must be a finite number <= 0")
        peak = self.peak
        if peak == 0:
            return self
        gain = 10 ** (peak_dbfs / 20) / peak
        return Audio(self.waveform * gain, sample_rate=self.sample_rate)

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
        loudness = torchaudio.functional.loudness(
            torch.from_numpy(self.waveform.copy()), self.sample_rate
        )
        return float(loudness)

    def normalize_loudness(self, target_lufs: float = -14.0, *, max_peak: float = 1.0) -> Audio:
        """Scale to an integrated loudness of ``target_lufs`` (LUFS), peaks limited to ``max_peak``.

        The gain is reduced if it would push any sample above ``max_peak``, so the result can be
        quieter than the target. Silence stays silent.
        """
        if not math.isfinite(target_lufs):
            raise ParameterError(f"target_lufs={target_lufs!r} must be finite")
        if not 0 < max_peak <= 1:
            raise ParameterError(f"max_peak={max_peak!r} must be in (0, 1]")
        current = self.loudness_lufs()
        if not math.isfinite(current):
            return self
        gain = 10 ** ((target_lufs - current) / 20)
        gain = min(gain, max_peak / self.peak)
        return Audio(self.waveform * gain, sample_rate=self.sample_rate)

    def slice(self, start_s: float = 0.0, end_s: float | None = None) -> Audio:
        """The part between ``start_s`` and ``end_s`` (seconds; ``None`` = the end)."""
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
        """Trimmed or zero-padded at the end to exactly ``num_samples`` samples per channel."""
        check_integer("num_samples", num_samples)
        if num_samples <= self.num_samples:
            return Audio(self.waveform[:, :num_samples], sample_rate=self.sample_rate)
        padding = np.zeros((self.num_channels, num_samples - self.num_samples), np.float32)
        return Audio(np.concatenate([self.waveform, padding], axis=1), sample_rate=self.sample_rate)
