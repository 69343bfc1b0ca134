"""Spectrogram parameters: the contract between audio and Riffusion spectrogram images.

The defaults are exactly those the public ``riffusion/riffusion-model-v1`` checkpoint was trained
with, so images that model produces decode correctly with ``SpectrogramParams()``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from riffusion._checks import check_integer, finite_float
from riffusion.errors import ImageFormatError, ParameterError
from riffusion.limits import (
    MAX_FFT_SIZE,
    MAX_FILTERBANK_SIZE,
    MAX_NUM_FREQUENCIES,
    MAX_SAMPLE_RATE,
)

__all__ = ["ExifTag", "SpectrogramParams"]

_MAX_DURATION_MS = 3_600_000.0
"""Longest step, window or padded duration (an hour, in ms): bounds the sample counts computed
from them before anything is allocated (the FFT size has its own, tighter limit)."""


class ExifTag(IntEnum):
    """EXIF tag ids under which Riffusion stores spectrogram parameters in its images."""

    SAMPLE_RATE = 11000
    STEREO = 11005
    STEP_SIZE_MS = 11010
    WINDOW_DURATION_MS = 11020
    PADDED_DURATION_MS = 11030
    NUM_FREQUENCIES = 11040
    MIN_FREQUENCY = 11050
    MAX_FREQUENCY = 11060
    POWER_FOR_IMAGE = 11070
    MAX_VALUE = 11080


@dataclass(frozen=True)
class SpectrogramParams:
    """How audio maps to a mel spectrogram and on to an 8-bit image.

    Attributes:
        sample_rate: audio sample rate (in Hz) the spectrogram describes.
        stereo: encode two channels (image G = left, B = right) instead of one grey channel.
        step_size_ms: hop between STFT frames (in ms); one image column per step.
        window_duration_ms: length of the Hann window (in ms).
        padded_duration_ms: length of the zero-padded FFT frame (in ms); at least the window.
        num_frequencies: number of mel bins = image height (in pixels).
        min_frequency_hz: lowest mel frequency (in Hz).
        max_frequency_hz: highest mel frequency (in Hz), at most the Nyquist frequency.
        mel_scale_norm: filterbank normalisation, ``None`` or ``"slaney"``.
        mel_scale_type: ``"htk"`` or ``"slaney"`` mel scale.
        power_for_image: exponent applied to normalised magnitudes before 8-bit quantisation.
        max_value: magnitude that a black pixel decodes to (Riffusion decodes with 30e6, the
            scale of 16-bit integer samples).
    """

    sample_rate: int = 44100
    stereo: bool = False
    step_size_ms: float = 10.0
    window_duration_ms: float = 100.0
    padded_duration_ms: float = 400.0
    num_frequencies: int = 512
    min_frequency_hz: float = 0.0
    max_frequency_hz: float = 10000.0
    mel_scale_norm: str | None = None
    mel_scale_type: str = "htk"
    power_for_image: float = 0.25
    max_value: float = 30e6

    def __post_init__(self) -> None:
        if not isinstance(self.sample_rate, int) or isinstance(self.sample_rate, bool):
            raise ParameterError(
                f"sample_rate={self.sample_rate!r} must be a positive integer (Hz)"
            )
        if not 0 < self.sample_rate <= MAX_SAMPLE_RATE:
            raise ParameterError(
                f"sample_rate={self.sample_rate} must be a positive integer of at most "
                f"{MAX_SAMPLE_RATE} Hz"
            )
        if not isinstance(self.stereo, bool):
            raise ParameterError(f"stereo={self.stereo!r} must be True or False")
        for name in (
            "step_size_ms",
            "window_duration_ms",
            "padded_duration_ms",
            "power_for_image",
            "max_value",
        ):
            value = getattr(self, name)
            number = finite_float(value)
            if number is None or number <= 0:
                raise ParameterError(f"{name}={value!r} must be a positive finite number")
            if name.endswith("_ms") and number > _MAX_DURATION_MS:
                raise ParameterError(
                    f"{name}={value!r} must be at most {_MAX_DURATION_MS:g} ms (an hour)"
                )
        if not isinstance(self.num_frequencies, int) or isinstance(self.num_frequencies, bool):
            raise ParameterError(
                f"num_frequencies={self.num_frequencies!r} must be a positive integer"
            )
        if not 0 < self.num_frequencies <= MAX_NUM_FREQUENCIES:
            raise ParameterError(
                f"num_frequencies={self.num_frequencies} must be between 1 and "
                f"{MAX_NUM_FREQUENCIES} (mel bins = image rows)"
            )
        for name in ("min_frequency_hz", "max_frequency_hz"):
            value = getattr(self, name)
            number = finite_float(value)
            if number is None or number < 0:
                raise ParameterError(f"{name}={value!r} must be a finite number >= 0 (Hz)")
        if self.hop_length < 1:
            raise ParameterError(
                f"step_size_ms={self.step_size_ms} gives a hop of {self.hop_length} samples at "
                f"{self.sample_rate} Hz; it must be at least one sample"
            )
        if self.win_length < 2:
            raise ParameterError(
                f"window_duration_ms={self.window_duration_ms} gives a window of "
                f"{self.win_length} samples at {self.sample_rate} Hz; it must be at least 2"
            )
        if self.n_fft > MAX_FFT_SIZE:
            raise ParameterError(
                f"padded_duration_ms={self.padded_duration_ms} gives an FFT of {self.n_fft} "
                f"samples at {self.sample_rate} Hz; at most {MAX_FFT_SIZE} (riffusion.limits)"
            )
        if (self.n_fft // 2 + 1) * self.num_frequencies > MAX_FILTERBANK_SIZE:
            raise ParameterError(
                f"padded_duration_ms={self.padded_duration_ms} and "
                f"num_frequencies={self.num_frequencies} give a mel filterbank of "
                f"{self.n_fft // 2 + 1}×{self.num_frequencies} entries; at most "
                f"{MAX_FILTERBANK_SIZE} (riffusion.limits)"
            )
        if self.hop_length > self.n_fft:
            raise ParameterError(
                f"step_size_ms={self.step_size_ms} must not exceed "
                f"padded_duration_ms={self.padded_duration_ms} (frames would leave gaps)"
            )
        if self.window_duration_ms > self.padded_duration_ms:
            raise ParameterError(
                f"window_duration_ms={self.window_duration_ms} must not exceed "
                f"padded_duration_ms={self.padded_duration_ms}"
            )
        if self.min_frequency_hz >= self.max_frequency_hz:
            raise ParameterError(
                f"min_frequency_hz={self.min_frequency_hz} must be below "
                f"max_frequency_hz={self.max_frequency_hz}"
            )
        bin_hz = self.sample_rate / self.n_fft
        if self.max_frequency_hz - self.min_frequency_hz < bin_hz:
            raise ParameterError(
                f"min_frequency_hz={self.min_frequency_hz} to max_frequency_hz="
                f"{self.max_frequency_hz} is narrower than one STFT bin ({bin_hz:g} Hz = "
                f"sample_rate / n_fft): no mel band would hold any energy"
            )
        nyquist = self.sample_rate / 2
        if self.max_frequency_hz > nyquist:
            raise ParameterError(
                f"max_frequency_hz={self.max_frequency_hz} is above the Nyquist frequency "
                f"{nyquist} Hz of sample_rate={self.sample_rate}"
            )
        if self.mel_scale_norm not in (None, "slaney"):
            raise ParameterError(f"mel_scale_norm={self.mel_scale_norm!r} must be None or 'slaney'")
        if self.mel_scale_type not in ("htk", "slaney"):
            raise ParameterError(
                f"mel_scale_type={self.mel_scale_type!r} must be 'htk' or 'slaney'"
            )

    # Derived sample counts, rounded down like Riffusion does.
    @property
    def n_fft(self) -> int:
        """FFT size (in samples): the padded window duration at ``sample_rate``."""
        return int(self.padded_duration_ms / 1000.0 * self.sample_rate)

    @property
    def win_length(self) -> int:
        """Hann window length (in samples)."""
        return int(self.window_duration_ms / 1000.0 * self.sample_rate)

    @property
    def hop_length(self) -> int:
        """Hop between frames (in samples); one image column per hop."""
        return int(self.step_size_ms / 1000.0 * self.sample_rate)

    @property
    def num_channels(self) -> int:
        """Audio channels the image encodes: 2 when ``stereo`` else 1."""
        return 2 if self.stereo else 1

    @property
    def pixels_per_second(self) -> float:
        """Image columns per second of audio."""
        return self.sample_rate / self.hop_length

    def width_for_samples(self, num_samples: int, *, periodic: bool = False) -> int:
        """Image width (columns, i.e. STFT frames) for ``num_samples`` samples of audio.

        Riffusion's convention, the one source of truth for lengths in this library: centred
        STFT frames sit at samples ``0, hop, 2·hop, …`` and the last one is kept, so
        ``num_samples // hop_length + 1`` columns (5.12 s = 225,792 samples → 513 columns,
        5.11 s = 225,351 samples → 512 columns, 5.678 s → 568 columns at the defaults).

        Args:
            num_samples: audio length (in samples), >= 0.
            periodic: the audio is one period of a loop; frame ``num_samples // hop`` would be
                frame 0 again, so the width is ``num_samples // hop_length`` (5.12 s → 512).

        Returns:
            The number of image columns.

        Example:
            >>> params = SpectrogramParams()
            >>> params.hop_length, params.width_for_samples(225_351)
            (441, 512)
            >>> params.width_for_samples(225_792, periodic=True)
            512
        """
        check_integer("num_samples", num_samples, minimum=0)
        if periodic:
            return num_samples // self.hop_length
        return num_samples // self.hop_length + 1

    def samples_for_width(self, width: int, *, periodic: bool = False) -> int:
        """Number of audio samples that an image ``width`` columns wide decodes to.

        Riffusion's convention: ``(width − 1) · hop_length`` samples, from the centre of the
        first frame to the centre of the last (a 512-px image → 225,351 samples = 5.11 s at the
        defaults, the length of every clip Riffusion's server sent). Round trips are
        width-stable: ``width_for_samples(samples_for_width(w)) == w``.

        Args:
            width: image width (in columns), >= 1.
            periodic: the image is one period of a loop (its last column continues into its
                first): ``width · hop_length`` samples (512 px → 225,792 samples = 5.12 s).

        Returns:
            The number of audio samples.

        Example:
            >>> SpectrogramParams().samples_for_width(512)  # (512 − 1) · 441 = 5.11 s at 44.1 kHz
            225351
            >>> SpectrogramParams().samples_for_width(512, periodic=True)  # 512 · 441 = 5.12 s
            225792
        """
        check_integer("width", width)
        if periodic:
            return width * self.hop_length
        return (width - 1) * self.hop_length

    def replace(self, **changes: Any) -> SpectrogramParams:
        """A copy with ``changes`` applied (validated like a new instance).

        Args:
            **changes: field names and new values, e.g. ``step_size_ms=5``.
        """
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------------------------- EXIF
    def to_exif(self) -> dict[int, int | float]:
        """The parameters as Riffusion EXIF tags ``{tag_id: value}`` (max value excluded)."""
        return {
            ExifTag.SAMPLE_RATE: int(self.sample_rate),
            ExifTag.STEREO: int(self.stereo),
            ExifTag.STEP_SIZE_MS: _exif_number(self.step_size_ms),
            ExifTag.WINDOW_DURATION_MS: _exif_number(self.window_duration_ms),
            ExifTag.PADDED_DURATION_MS: _exif_number(self.padded_duration_ms),
            ExifTag.NUM_FREQUENCIES: int(self.num_frequencies),
            ExifTag.MIN_FREQUENCY: _exif_number(self.min_frequency_hz),
            ExifTag.MAX_FREQUENCY: _exif_number(self.max_frequency_hz),
            ExifTag.POWER_FOR_IMAGE: float(self.power_for_image),
        }

    @classmethod
    def from_exif(
        cls, exif: dict[int, Any], *, base: SpectrogramParams | None = None
    ) -> SpectrogramParams:
        """Parameters from Riffusion EXIF tags; tags that are absent keep ``base``'s values.

        Args:
            exif: EXIF tag id (int) -> value, e.g. ``image.getexif()``; tags are
                :class:`ExifTag`.
            base: parameters for the tags that are absent (default: ``SpectrogramParams()``).

        Raises:
            ImageFormatError: a tag holds a value that is not a number or gives invalid params.
        """
        if base is not None and not isinstance(base, SpectrogramParams):
            raise ParameterError(
                f"base must be a SpectrogramParams or None, got {type(base).__name__}"
            )
        if not isinstance(exif, Mapping):
            raise ParameterError(f"exif must be a mapping of tag ids, got {type(exif).__name__}")
        base = base if base is not None else cls()
        fields: dict[str, Any] = {}
        mapping = {
            ExifTag.SAMPLE_RATE: ("sample_rate", int),
            ExifTag.STEREO: ("stereo", bool),
            ExifTag.STEP_SIZE_MS: ("step_size_ms", float),
            ExifTag.WINDOW_DURATION_MS: ("window_duration_ms", float),
            ExifTag.PADDED_DURATION_MS: ("padded_duration_ms", float),
            ExifTag.NUM_FREQUENCIES: ("num_frequencies", int),
            ExifTag.MIN_FREQUENCY: ("min_frequency_hz", float),
            ExifTag.MAX_FREQUENCY: ("max_frequency_hz", float),
            ExifTag.POWER_FOR_IMAGE: ("power_for_image", float),
        }
        for tag, (name, kind) in mapping.items():
            if int(tag) not in exif:
                continue
            raw = exif[int(tag)]
            try:
                if isinstance(raw, str | bytes):
                    raise TypeError("text")
                number = float(raw)
            except (TypeError, ValueError, ZeroDivisionError, OverflowError) as error:
                raise ImageFormatError(
                    f"EXIF tag {int(tag)} ({name}) holds {raw!r}, which is not a number"
                ) from error
            if not math.isfinite(number):
                raise ImageFormatError(f"EXIF tag {int(tag)} ({name}) holds {raw!r}, not finite")
            if kind is int:
                if number != int(number):
                    raise ImageFormatError(
                        f"EXIF tag {int(tag)} ({name}) holds {raw!r}, expected an integer"
                    )
                fields[name] = int(number)
            elif kind is bool:
                if number not in (0.0, 1.0):
                    raise ImageFormatError(
                        f"EXIF tag {int(tag)} ({name}) holds {raw!r}, expected 0 or 1"
                    )
                fields[name] = bool(number)
            else:
                fields[name] = number
        try:
            return dataclasses.replace(base, **fields)
        except ParameterError as error:
            tags = ", ".join(
                f"tag {int(tag)} ({name})={fields[name]!r}"
                for tag, (name, _) in mapping.items()
                if name in fields
            )
            raise ImageFormatError(
                f"the image's EXIF parameters are impossible ({tags}): {error}"
            ) from error


def _exif_number(value: float) -> int | float:
    """Whole numbers as int (as Riffusion writes them), others as float."""
    return int(value) if float(value).is_integer() else float(value)
