"""STFT and mel conversion: waveform ↔ mel magnitudes (phase recovery in :mod:`riffusion.phase`).

Pure functions take every parameter explicitly; :class:`SpectrogramConverter` holds what is
worth computing once per :class:`~riffusion.params.SpectrogramParams` and device (windows, the mel
filterbank, the inverse mel operator), and :func:`get_converter` shares one per parameters and
device. The converter's inverse is the math of the two built-in decoders (``"fast"`` and
``"reference"``, a closed set: :data:`InverseMethod`); decoding by a registered decoder name,
plug-ins included, is :func:`riffusion.decoders.decode_mel`, one layer up.

Shapes follow torchaudio: any leading dimensions are allowed, time is last.

- waveform: ``(..., samples)`` float32, at ``params.sample_rate`` Hz. Riffusion computed its
  spectrograms from 16-bit integer sample values, so the converter works at that scale: multiply a
  waveform in [-1, 1] by :data:`INT16_SCALE` first to get Riffusion's magnitudes (the high-level
  functions in :mod:`riffusion.convert` do this).
- mel: ``(..., n_mels, frames)`` non-negative float32 linear magnitudes (not power, not dB).
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import numpy as np
import torch
import torchaudio

from riffusion._checks import check_device
from riffusion.errors import ParameterError
from riffusion.limits import MAX_DECODE_BYTES
from riffusion.params import SpectrogramParams
from riffusion.phase import (
    DEFAULT_ITERATIONS,
    FAST_DEFAULT_ITERATIONS,
    FINE_SHARE,
    MEL_FROM,
    MOMENTUM,
    _InverseOperators,
    _set_magnitudes_,
    _single_intra_op_thread,
    gradient_phase,
    reference_mel_to_waveform,
)

__all__ = [
    "DEFAULT_ITERATIONS",
    "FAST_DEFAULT_ITERATIONS",
    "INT16_SCALE",
    "ForwardMethod",
    "InverseMethod",
    "SpectrogramConverter",
    "band_limit",
    "check_decode_memory",
    "check_inverse_options",
    "check_mel",
    "decoded_length",
    "get_converter",
    "gradient_phase",
    "inverse_bytes_per_frame",
    "mel_filterbank",
    "num_frames",
    "spectral_convergence",
]

INT16_SCALE = 32768.0
"""Factor between float samples in [-1, 1] and the 16-bit integer scale Riffusion worked at."""

ForwardMethod = Literal["fast", "reference"]
"""Forward (waveform → mel) methods: ``"fast"`` (default) or ``"reference"`` (Riffusion's
torchaudio path). A closed set, unlike the decoders."""

InverseMethod = Literal["fast", "reference"]
"""The converter's own inverse (mel → waveform) methods: ``"fast"`` (default) and
``"reference"``, the math of the built-in decoders of the same names. A closed set: any
registered decoder, these two included, decodes by name with
:func:`riffusion.decoders.decode_mel`."""

_FRAME_BLOCK = 128
"""STFT frames the fast forward transform processes at a time."""


def num_frames(num_samples: int, params: SpectrogramParams) -> int:
    """Spectrogram frames (image columns) for ``num_samples`` samples.

    Riffusion's convention, ``params.width_for_samples(num_samples)`` =
    ``num_samples // hop_length + 1``: centred STFT frames sit at ``0, hop, 2·hop, ...`` and
    the last one is kept (5.12 s at 44.1 kHz → 513 columns, 5.11 s → 512). An image of
    ``width`` columns decodes to ``params.samples_for_width(width)`` = ``(width − 1) · hop``
    samples.

    Args:
        num_samples: samples per channel, an int >= 0.
        params: the spectrogram parameters (``hop_length`` in samples).
    """
    return params.width_for_samples(num_samples)


def _fit_samples(waveform: torch.Tensor, length: int) -> torch.Tensor:
    """Crop or zero-pad the last axis of ``waveform`` to ``length`` samples."""
    if waveform.shape[-1] >= length:
        return waveform[..., :length]
    return torch.nn.functional.pad(waveform, (0, length - waveform.shape[-1]))


def _hz_to_mel(frequency_hz: float, scale: str) -> float:
    if scale == "htk":
        return 2595.0 * math.log10(1.0 + frequency_hz / 700.0)
    # Slaney: linear below 1 kHz, logarithmic above.
    if frequency_hz < _SLANEY_LOG_HZ:
        return frequency_hz / _SLANEY_HZ_PER_MEL
    return _SLANEY_LOG_MEL + math.log(frequency_hz / _SLANEY_LOG_HZ) / _SLANEY_LOG_STEP


def _mel_to_hz(mels: np.ndarray, scale: str) -> np.ndarray:
    if scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    hertz = _SLANEY_HZ_PER_MEL * mels
    logarithmic = mels >= _SLANEY_LOG_MEL
    hertz[logarithmic] = _SLANEY_LOG_HZ * np.exp(
        _SLANEY_LOG_STEP * (mels[logarithmic] - _SLANEY_LOG_MEL)
    )
    return hertz


_SLANEY_HZ_PER_MEL = 200.0 / 3
_SLANEY_LOG_HZ = 1000.0
_SLANEY_LOG_MEL = _SLANEY_LOG_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = math.log(6.4) / 27.0


def mel_filterbank(
    params: SpectrogramParams,
    *,
    num_freqs: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Triangular mel filterbank ``(num_freqs, n_mels)`` mapping STFT magnitudes to mel bins.

    The filters of torchaudio's ``melscale_fbanks`` (which Riffusion used): the same formulas,
    evaluated in float64 and rounded once to ``dtype``. torchaudio evaluates them in float32,
    and its vectorised and scalar kernels round differently: at the triangles' feet, where a
    filter's value is the difference of two nearby frequencies over the band's width, entries
    differ by up to 7e-5 from one CPU to another. In float64 they differ by ~1e-16, far below
    float32's resolution, so the rounded filterbank is the same on every CPU.

    Args:
        params: spectrogram parameters (mel range, bins, scale, norm, sample rate).
        num_freqs: linear frequency bins; defaults to ``params.n_fft // 2 + 1``.
        device: device of the returned tensor.
        dtype: dtype of the returned tensor.
    """
    if not isinstance(params, SpectrogramParams):
        raise ParameterError(f"params must be a SpectrogramParams, got {type(params).__name__}")
    num_freqs = params.n_fft // 2 + 1 if num_freqs is None else num_freqs
    scale = params.mel_scale_type
    bin_hz = np.linspace(0.0, float(params.sample_rate // 2), num_freqs)
    lowest = _hz_to_mel(float(params.min_frequency_hz), scale)
    highest = _hz_to_mel(float(params.max_frequency_hz), scale)
    corners_hz = _mel_to_hz(np.linspace(lowest, highest, params.num_frequencies + 2), scale)
    # The outer corners are the range's ends exactly (the mel round trip may miss them by an
    # ulp, which would leave a rounding-noise weight on the bin at max_frequency_hz).
    corners_hz[0], corners_hz[-1] = params.min_frequency_hz, params.max_frequency_hz
    widths = np.diff(corners_hz)  # (n_mels + 1,): each half-triangle's width
    offsets = corners_hz[None, :] - bin_hz[:, None]  # (num_freqs, n_mels + 2)
    # Bands narrower than float64 can tell apart (a mel range below one STFT bin, refused by
    # SpectrogramParams, or many bands in a few Hz) have width 0: their weights are 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        triangles = np.minimum(-offsets[:, :-2] / widths[:-1], offsets[:, 2:] / widths[1:])
    filterbank = np.where(triangles > 0, triangles, 0.0)  # no -0.0 where a foot meets a bin
    if params.mel_scale_norm == "slaney":  # equal area: divide by the band's width
        filterbank *= 2.0 / (corners_hz[2:] - corners_hz[:-2])
    return torch.from_numpy(filterbank).to(device=device, dtype=dtype)


def spectral_convergence(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Spectral convergence ``‖reference − estimate‖_F / ‖reference‖_F`` (0 is perfect).

    Both inputs are magnitudes of the same shape; each is normalised by its own maximum first so
    that the overall gain (which Riffusion images do not preserve) does not count.

    Args:
        reference: magnitudes, float tensor of any shape (e.g. ``(..., n_mels, frames)``).
        estimate: magnitudes of the same shape.
    """
    if reference.shape != estimate.shape:
        raise ParameterError(
            f"reference shape {tuple(reference.shape)} and estimate shape "
            f"{tuple(estimate.shape)} must match"
        )
    reference = reference.double() / reference.max().clamp_min(1e-30)
    estimate = estimate.double() / estimate.max().clamp_min(1e-30)
    denominator = torch.linalg.vector_norm(reference)
    if denominator == 0:
        raise ParameterError("spectral convergence is undefined for an all-zero reference")
    return float(torch.linalg.vector_norm(reference - estimate) / denominator)


def _check_waveform(waveform: torch.Tensor) -> None:
    if not isinstance(waveform, torch.Tensor):
        raise ParameterError(f"waveform must be a torch.Tensor, got {type(waveform).__name__}")
    if waveform.ndim < 1 or waveform.shape[-1] == 0:
        raise ParameterError(f"waveform of shape {tuple(waveform.shape)} has no samples")
    if not waveform.is_floating_point():
        raise ParameterError(f"waveform dtype {waveform.dtype} must be floating point")
    if not torch.isfinite(waveform).all():
        raise ParameterError("waveform contains NaN or infinite samples")


def check_mel(mel: torch.Tensor, params: SpectrogramParams) -> None:
    """Refuse mel magnitudes that no decoder can take.

    Args:
        mel: ``(..., params.num_frequencies, frames)`` tensor, at least one frame, finite and
            non-negative (any float dtype, any device).
        params: the spectrogram parameters (``num_frequencies``: the mel bands).

    Raises:
        ParameterError: not a tensor, the wrong shape, no frames, or non-finite or negative
            values.
    """
    if not isinstance(mel, torch.Tensor):
        raise ParameterError(f"mel must be a torch.Tensor, got {type(mel).__name__}")
    if mel.ndim < 2 or mel.shape[-2] != params.num_frequencies:
        raise ParameterError(
            f"mel of shape {tuple(mel.shape)} must be (..., {params.num_frequencies}, frames)"
        )
    if mel.shape[-1] == 0:
        raise ParameterError(f"mel of shape {tuple(mel.shape)} has no frames")
    if not torch.isfinite(mel).all() or (mel < 0).any():
        raise ParameterError("mel magnitudes must be finite and non-negative")


def check_inverse_options(num_iterations: object, seed: object, periodic: object) -> None:
    """Refuse decode options of the wrong type or range (every decoder takes these three).

    Args:
        num_iterations: ``None`` (the decoder's default) or an int >= 1.
        seed: an int (any sign).
        periodic: ``True`` or ``False``.

    Raises:
        ParameterError: naming the first bad option, in the order of the arguments above.
    """
    if num_iterations is not None and (
        isinstance(num_iterations, bool)
        or not isinstance(num_iterations, int)
        or num_iterations < 1
    ):
        raise ParameterError(f"num_iterations={num_iterations!r} must be a positive integer")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ParameterError(f"seed={seed!r} must be an integer")
    if not isinstance(periodic, bool):
        raise ParameterError(f"periodic={periodic!r} must be True or False")


def decoded_length(frames: int, params: SpectrogramParams, *, periodic: bool) -> int:
    """Samples per channel that ``frames`` mel columns decode to; refuses none.

    Args:
        frames: mel columns, an int >= 1.
        params: the spectrogram parameters (``hop_length`` in samples).
        periodic: one period of a loop (``frames · hop_length`` samples) or a one-shot clip
            (``(frames − 1) · hop_length``, Riffusion's convention).

    Returns:
        ``params.samples_for_width(frames, periodic=periodic)``, at least 1.

    Raises:
        ParameterError: a one-shot clip of one frame (no samples).
    """
    length = params.samples_for_width(frames, periodic=periodic)
    if length == 0:
        raise ParameterError(
            "mel with 1 frame decodes to no samples ((frames − 1) · hop_length); use at "
            "least 2 frames, or periodic=True"
        )
    return length


def _check_forward_method(method: object) -> None:
    if method not in ("fast", "reference"):
        raise ParameterError(f"method={method!r} must be 'fast' or 'reference'")


def band_limit(filterbank: torch.Tensor) -> int:
    """Number of leading STFT bins the filterbank ``(num_freqs, n_mels)`` uses (last non-zero row
    + 1); the bins above contribute nothing to the mel spectrogram.

    Args:
        filterbank: mel filterbank, float tensor of shape ``(num_freqs, n_mels)``
            (``n_fft // 2 + 1`` STFT bins by mel bands).
    """
    if not isinstance(filterbank, torch.Tensor) or filterbank.ndim != 2:
        raise ParameterError(
            f"filterbank must be a 2-D torch.Tensor (bins × mel bands), got "
            f"{type(filterbank).__name__}"
        )
    rows = torch.nonzero(filterbank.abs().sum(dim=-1)).flatten()
    return int(rows.max()) + 1 if rows.numel() else 1


# ------------------------------------------------------------------------------ phase recovery
#: Time-frequency spread of the Gaussian that best matches a Hann window of length L seconds:
#: ``λ = 0.25645 · L²`` (Průša, Balazs & Søndergaard 2017, "A noniterative method for
#: reconstruction of phase from STFT magnitude").
class SpectrogramConverter:
    """Converts waveforms to mel magnitudes and back, caching windows, filterbanks and operators.

    Both directions offer two methods:

    - ``"fast"`` (default): the forward transform runs the STFT in blocks of frames and takes
      ``abs`` and the filterbank product only over the bins the filterbank uses (up to
      ``max_frequency_hz``), equal to the reference to float32 rounding; the inverse maps mel to
      linear magnitudes with a cached operator, initialises the phase from the magnitudes
      (phase-gradient integration) and refines it with fast Griffin-Lim on a band-limited,
      reduced-rate grid. See :meth:`mel_to_waveform`.
    - ``"reference"``: Riffusion's original algorithm with torchaudio (``Spectrogram`` +
      ``MelScale`` forward; ``InverseMelScale`` least squares + ``GriffinLim`` inverse), kept for
      comparisons and benchmarks.

    Args:
        params: spectrogram parameters; defaults to Riffusion's.
        device: where tensors live and the math runs (``"cpu"``, ``"cuda"``, ...).

    Example:
        >>> import torch
        >>> converter = SpectrogramConverter()
        >>> waveform = torch.zeros(1, 44100)  # 1 s: 44100 // 441 + 1 = 101 columns
        >>> converter.waveform_to_mel(waveform).shape
        torch.Size([1, 512, 101])
    """

    def __init__(
        self, params: SpectrogramParams | None = None, *, device: torch.device | str = "cpu"
    ) -> None:
        if params is not None and not isinstance(params, SpectrogramParams):
            raise ParameterError(
                f"params must be a riffusion.SpectrogramParams or None, got {type(params).__name__}"
            )
        self.params = params if params is not None else SpectrogramParams()
        self.device = check_device("device", device)
        params = self.params
        self._window = torch.hann_window(params.win_length, device=self.device)
        self._filterbank = mel_filterbank(params, device=self.device)
        # Bins above the last non-zero filterbank row never reach the mel spectrogram.
        self.num_bins = band_limit(self._filterbank)
        self._band = self._filterbank[: self.num_bins].contiguous()
        # n_fft = zoom · win_length: the win_length-point DFT grid is every zoom-th bin.
        zoom, remainder = divmod(params.n_fft, params.win_length)
        self._zoom = zoom if remainder == 0 else 0
        self._inverse: tuple[_InverseOperators, _InverseOperators | None] | None = None
        self._reference_forward: tuple[torch.nn.Module, torch.nn.Module] | None = None
        self._float64_forward: tuple[torch.Tensor, torch.Tensor] | None = None

    # ---------------------------------------------------------------------------- forward
    def waveform_to_mel(
        self,
        waveform: torch.Tensor,
        *,
        method: ForwardMethod = "fast",
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Mel magnitudes of a waveform.

        Args:
            waveform: ``(..., samples)`` float tensor at ``params.sample_rate`` Hz, at least one
                hop long. Audio shorter than half an FFT frame is zero-padded at the end (the
                reflect padding of a centred STFT needs that many samples).
            method: ``"fast"`` (default; STFT in blocks of frames, ``abs`` and filterbank only
                over the bins below ``max_frequency_hz``) or ``"reference"`` (Riffusion's
                torchaudio ``Spectrogram`` + ``MelScale`` over all ``n_fft // 2 + 1`` bins).
                The two agree to float32 rounding (the FFTs run in other batches, the sums over
                other rows, and torchaudio rounds its filterbank differently: see
                :func:`mel_filterbank`); their images agree on ≥ 99.9 % of the pixels, and
                differ by at most one grey level elsewhere.
            dtype: ``torch.float32`` (default; Riffusion's arithmetic) or ``torch.float64``
                (``method="fast"`` only): window, filterbank and STFT in double precision,
                whose magnitudes differ by ~1e-16 relative between CPUs and FFT kernels where
                float32's differ by ~1e-7, so the image made from them is the same on every
                machine (the built-in seed images are made this way).

        Returns:
            ``(..., n_mels, samples // hop_length + 1)`` ``dtype`` magnitudes on
            ``self.device`` (Riffusion's convention, ``params.width_for_samples``: 5.12 s →
            513 frames, 5.11 s → 512).
        """
        _check_waveform(waveform)
        _check_forward_method(method)
        if dtype not in (torch.float32, torch.float64):
            raise ParameterError(f"dtype={dtype} must be torch.float32 or torch.float64")
        if dtype == torch.float64 and method != "fast":
            raise ParameterError(
                f"dtype={dtype} needs method='fast'; the reference method is torchaudio's "
                "float32 path"
            )
        params = self.params
        frames = num_frames(waveform.shape[-1], params)
        if waveform.shape[-1] < params.hop_length:
            raise ParameterError(
                f"waveform of {waveform.shape[-1]} samples is shorter than one hop "
                f"({params.hop_length} samples = {params.step_size_ms} ms)"
            )
        leading = waveform.shape[:-1]
        flat = waveform.reshape(-1, waveform.shape[-1]).to(self.device, dtype)
        minimum = params.n_fft // 2 + 1
        if flat.shape[-1] < minimum:
            flat = torch.nn.functional.pad(flat, (0, minimum - flat.shape[-1]))
        # An odd n_fft pads one sample less than it spans: one zero keeps the last frame whole.
        spanned = flat.shape[-1] + 2 * (params.n_fft // 2) - params.n_fft
        if spanned // params.hop_length + 1 < frames:
            flat = torch.nn.functional.pad(flat, (0, 1))
        if method == "reference":
            mel = self._reference_waveform_to_mel(flat)[..., :frames]
        else:
            mel = self._fast_waveform_to_mel(flat, frames).transpose(-1, -2)
        return mel.reshape(*leading, params.num_frequencies, frames)

    def _reference_waveform_to_mel(self, flat: torch.Tensor) -> torch.Tensor:
        if self._reference_forward is None:
            params = self.params
            spectrogram = torchaudio.transforms.Spectrogram(
                n_fft=params.n_fft,
                win_length=params.win_length,
                hop_length=params.hop_length,
                pad=0,
                window_fn=torch.hann_window,
                power=1.0,
                normalized=False,
                center=True,
                pad_mode="reflect",
                onesided=True,
            ).to(self.device)
            mel_scale = torchaudio.transforms.MelScale(
                n_mels=params.num_frequencies,
                sample_rate=params.sample_rate,
                f_min=float(params.min_frequency_hz),
                f_max=float(params.max_frequency_hz),
                n_stft=params.n_fft // 2 + 1,
                norm=params.mel_scale_norm,
                mel_scale=params.mel_scale_type,
            ).to(self.device)
            self._reference_forward = (spectrogram, mel_scale)
        spectrogram, mel_scale = self._reference_forward
        return mel_scale(spectrogram(flat))

    def _fast_waveform_to_mel(self, flat: torch.Tensor, frames: int) -> torch.Tensor:
        """``(batch, samples)`` → ``(batch, frames, n_mels)``, the reference's magnitudes.

        The same ``torch.stft`` frames as the reference (reflect padding, centred window), but
        in blocks of :data:`_FRAME_BLOCK` frames, so that the temporaries stay small (fresh
        full-size buffers cost more in page faults than in arithmetic); ``abs`` only of the
        bins the filterbank uses (≤ ``max_frequency_hz``), and the product with only those rows
        of the filterbank — the rows above are zeros, which add nothing. Equal to the reference
        up to rounding: the FFT and BLAS kernels may order their sums differently for other
        batch shapes, and the filterbank is rounded from float64 (:func:`mel_filterbank`).
        """
        params = self.params
        n_fft, hop = params.n_fft, params.hop_length
        window, band = self._forward_operators(flat.dtype)
        padded = torch.nn.functional.pad(flat[:, None], (n_fft // 2, n_fft // 2), mode="reflect")
        mel = flat.new_empty(flat.shape[0], frames, params.num_frequencies)
        for item in range(flat.shape[0]):
            for start in range(0, frames, _FRAME_BLOCK):
                count = min(_FRAME_BLOCK, frames - start)
                segment = padded[item, 0, start * hop : (start + count - 1) * hop + n_fft]
                stft = torch.stft(
                    segment,
                    n_fft=n_fft,
                    hop_length=hop,
                    win_length=params.win_length,
                    window=window,
                    center=False,
                    return_complex=True,
                )
                magnitudes = stft[: self.num_bins].abs().transpose(0, 1)
                mel[item, start : start + count] = torch.matmul(magnitudes, band)
        return mel

    def _forward_operators(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Window and band-limited filterbank in ``dtype`` (float64 ones built on first use)."""
        if dtype == torch.float32:
            return self._window, self._band
        if self._float64_forward is None:
            window = torch.hann_window(self.params.win_length, dtype=dtype, device=self.device)
            filterbank = mel_filterbank(self.params, device=self.device, dtype=dtype)
            self._float64_forward = (window, filterbank[: self.num_bins].contiguous())
        return self._float64_forward

    # ---------------------------------------------------------------------------- inverse
    def mel_to_waveform(
        self,
        mel: torch.Tensor,
        *,
        method: InverseMethod = "fast",
        num_iterations: int | None = None,
        seed: int = 0,
        periodic: bool = False,
    ) -> torch.Tensor:
        """Waveform whose mel magnitudes approximate ``mel``, with phase recovered.

        The math of the built-in decoders; to decode by any registered decoder name (a
        plug-in's included) use :func:`riffusion.decoders.decode_mel`.

        Methods:

        - ``"fast"`` (default): linear magnitudes from a cached operator (the minimum-norm
          inverse of the filterbank — the solution the reference's least squares finds —
          restricted to the bins below ``max_frequency_hz`` on the ``win_length``-point DFT grid),
          phase initialised by integrating the phase gradient implied by the magnitudes (PGHI,
          Průša et al. 2017; the first frame, which the encoder reflect-padded, as the real
          spectrum that padding implies), then ``num_iterations`` (default 40) fast Griffin-Lim
          iterations with momentum 0.95 at a reduced internal sample rate that still holds
          every bin below ``max_frequency_hz`` — four fifths on that grid, the last fifth on the
          grid padded 2x, whose finer bins shape the narrow low mel bands (after two of them,
          towards the mel magnitudes themselves rather than the filterbank's minimum-norm
          inverse); the final synthesis is at ``params.sample_rate``. ``seed`` picks the
          integration constants of the phase (the starting phase of each bin's track; in a
          one-shot clip the sign of each quieter lobe of the first frame), so the output is a
          deterministic function of ``mel`` and ``seed``. On CPU it runs with one intra-op
          thread in the calling thread (other threads keep theirs), which keeps it fast when
          other processes load the cores.
        - ``"reference"``: Riffusion's algorithm — torchaudio ``InverseMelScale`` (least squares
          per call), then ``GriffinLim`` with ``num_iterations`` (default 32) iterations, momentum
          0.99 and a random initial phase drawn from ``seed``.

        Args:
            mel: ``(..., n_mels, frames)`` non-negative magnitudes (any float dtype, any device).
            method: ``"fast"`` or ``"reference"``.
            num_iterations: Griffin-Lim iterations (more is slower and more faithful); ``None``
                picks 40 for ``"fast"`` and 32 (Riffusion's) for ``"reference"``.
            seed: seed of the initial phase (random for the reference, integration constants for
                ``"fast"``); equal seeds give equal output.
            periodic: treat ``mel`` as one period of a loop (``"fast"`` only): the STFT frames
                wrap around the ends, so the waveform's last sample flows into its first and
                the audio loops without a click.

        Returns:
            ``(..., params.samples_for_width(frames))`` float32 waveform on ``self.device``
            (Riffusion's convention: ``(frames − 1) · hop_length`` samples, 225,351 for 512
            frames; ``frames · hop_length`` with ``periodic=True``), at the scale of the
            waveform the magnitudes came from.
        """
        iterations, length = self._check_inverse_arguments(
            mel, method, num_iterations, seed, periodic
        )
        mel = mel.to(self.device, torch.float32)
        if method == "reference":
            return _fit_samples(self._reference_mel_to_waveform(mel, iterations, seed), length)
        return self._fast_decode(mel, iterations, seed, periodic, length)

    def _check_inverse_arguments(
        self,
        mel: torch.Tensor,
        method: InverseMethod,
        num_iterations: int | None,
        seed: int,
        periodic: bool,
    ) -> tuple[int, int]:
        """Check :meth:`mel_to_waveform`'s arguments; the iterations and the output length.

        Args:
            mel: ``(..., n_mels, frames)`` magnitudes (checked: finite, non-negative).
            method: ``"fast"`` or ``"reference"``.
            num_iterations: a positive int, or ``None`` for the method's default.
            seed: an int. periodic: a bool (``True`` only for ``"fast"``).

        Returns:
            the Griffin-Lim iterations (``num_iterations``, or 32 for ``"reference"`` and 48
            for ``"fast"``); the output length in samples per channel,
            ``params.samples_for_width(frames, periodic=periodic)``, at least 1.

        Raises:
            ParameterError: a bad argument, a mel too short for the method, or one too large
                to decode (:func:`check_decode_memory`).
        """
        check_mel(mel, self.params)
        if method not in ("fast", "reference"):
            raise ParameterError(
                f"method={method!r} must be 'fast' or 'reference' (a registered decoder "
                "decodes by name with riffusion.decoders.decode_mel)"
            )
        check_inverse_options(num_iterations, seed, periodic)
        if num_iterations is not None:
            iterations = num_iterations
        else:
            iterations = DEFAULT_ITERATIONS if method == "reference" else FAST_DEFAULT_ITERATIONS
        if periodic and method == "reference":
            raise ParameterError(
                f"periodic=True needs method='fast' or another decoder with a circular mode "
                f"(method={method!r} has none)"
            )
        if method == "reference" and (mel.shape[-1] - 1) * self.params.hop_length <= (
            self.params.n_fft // 2
        ):
            raise ParameterError(
                f"mel with {mel.shape[-1]} frames is too short for method='reference' (torch.stft "
                f"reflect-pads {self.params.n_fft // 2} samples); use at least "
                f"{self.params.n_fft // 2 // self.params.hop_length + 2} frames or method='fast'"
            )
        channels = math.prod(mel.shape[:-2])
        per_frame = inverse_bytes_per_frame(self.params, method)
        check_decode_memory(mel.shape[-1], channels, per_frame, method)
        return iterations, decoded_length(mel.shape[-1], self.params, periodic=periodic)

    def _fast_decode(
        self, mel: torch.Tensor, iterations: int, seed: int, periodic: bool, length: int
    ) -> torch.Tensor:
        """The ``"fast"`` decoder over any leading dimensions (:meth:`_fast_mel_to_waveform`).

        Args:
            mel: ``(..., n_mels, frames)`` float32 magnitudes on ``self.device``.
            iterations: Griffin-Lim iterations. seed: seed of the phase's integration
                constants. periodic: make one period of a loop.
            length: output samples per channel (the waveform is cut or zero-padded to it).

        Returns:
            ``(..., length)`` float32 waveform on ``self.device``.
        """
        leading = mel.shape[:-2]
        flat = mel.reshape(-1, *mel.shape[-2:])
        if self.device.type == "cpu":
            # One item at a time: a batch's working set overflows the caches (measured on 2
            # cores: stereo batched 2.1-2.4x mono, item by item 2.0x). Same result either way.
            # One intra-op thread: see _single_intra_op_thread.
            with _single_intra_op_thread():
                waveform = torch.cat(
                    [
                        self._fast_mel_to_waveform(item[None], iterations, seed, periodic)
                        for item in flat
                    ]
                )
        else:
            waveform = self._fast_mel_to_waveform(flat, iterations, seed, periodic)
        waveform = _fit_samples(waveform, length)
        return waveform.reshape(*leading, waveform.shape[-1])

    def _reference_mel_to_waveform(
        self, mel: torch.Tensor, num_iterations: int, seed: int
    ) -> torch.Tensor:
        return reference_mel_to_waveform(
            mel, self.params, num_iterations=num_iterations, seed=seed, device=self.device
        )

    def _get_inverse(self) -> tuple[_InverseOperators, _InverseOperators | None]:
        """The operators of the fast inverse: the ``win_length``-point grid (10 Hz at the
        defaults) and, when ``n_fft`` pads the window by an even factor, the grid padded 2x
        (5 Hz). The 10 Hz grid cannot shape the lowest mel bands, which are narrower than
        10 Hz; Griffin-Lim runs mostly on the cheap grid and finishes on the finer one."""
        if self._inverse is None:
            band = self._filterbank[: self.num_bins]
            coarse = _InverseOperators.build(self.params, band, self._zoom or 1, self.device)
            fine = None
            if self._zoom and self._zoom % 2 == 0:
                fine = _InverseOperators.build(
                    self.params,
                    band,
                    self._zoom // 2,
                    self.device,
                    internal_hop=coarse.internal.hop,  # one rate for both grids
                )
            self._inverse = (coarse, fine)
        return self._inverse

    def _fast_mel_to_waveform(
        self, mel: torch.Tensor, num_iterations: int, seed: int, periodic: bool
    ) -> torch.Tensor:
        """``(batch, n_mels, frames)`` → ``(batch, params.samples_for_width(frames))``.

        The iterations: ``num_iterations − num_iterations // FINE_SHARE`` on the coarse grid
        (from the phase-gradient start), then the rest on the fine grid, the first
        :data:`~riffusion.phase.MEL_FROM` of them towards the minimum-norm magnitudes and the
        others towards the mel magnitudes themselves.
        """
        coarse, fine = self._get_inverse()
        params = self.params
        frames = mel.shape[-1]
        # The one place the output length comes from (the library's frame convention).
        length = params.samples_for_width(frames, periodic=periodic)
        # The same signal on the reduced-rate grid (its hop is a fraction of the output's).
        internal_length = -(-length * coarse.internal.hop // coarse.output.hop)
        mel_t = mel.transpose(-1, -2)
        # Linear magnitudes, (batch, frames, bins): bins last, as the FFTs want them.
        magnitudes = torch.relu(torch.matmul(mel_t, coarse.mel_to_linear))
        phase = gradient_phase(
            magnitudes,
            bin_hz=coarse.bin_hz,
            hop_s=params.hop_length / params.sample_rate,
            window_s=params.win_length / params.sample_rate,
            seed=seed,
            periodic=periodic,
        )
        # Centre-referenced phase → phase of frames whose window starts at the frame start.
        spectrum = torch.polar(magnitudes, phase - coarse.centre_shift)
        fine_iterations = num_iterations // FINE_SHARE if fine is not None else 0
        spectrum = coarse.internal.griffin_lim(
            magnitudes,
            spectrum,
            num_iterations - fine_iterations,
            momentum=MOMENTUM,
            length=internal_length,
            periodic=periodic,
        )
        if fine is None or fine_iterations == 0:
            return coarse.output.synthesize(spectrum, length=length, periodic=periodic)
        fine_magnitudes = torch.relu(torch.matmul(mel_t, fine.mel_to_linear))
        # Both reduced grids frame one signal at one rate (the fine one zero-pads its frames):
        # hand it over at that rate, not through a 44.1 kHz round trip.
        waveform = coarse.internal.synthesize(spectrum, length=internal_length, periodic=periodic)
        rebuilt = fine.internal.analyze(waveform, frames, periodic=periodic)
        spectrum = fine.internal.griffin_lim(
            fine_magnitudes,
            _set_magnitudes_(rebuilt, fine_magnitudes),
            fine_iterations,
            momentum=MOMENTUM,
            length=-(-length * fine.internal.hop // fine.output.hop),
            periodic=periodic,
            mel=(fine.bands, mel_t.contiguous(), MEL_FROM),
        )
        return fine.output.synthesize(spectrum, length=length, periodic=periodic)


# ------------------------------------------------------------------- decode memory budget
def inverse_bytes_per_frame(params: SpectrogramParams, method: InverseMethod) -> int:
    """Estimated working memory, in bytes per image column and channel, of an inverse method.

    The fast inverse keeps about 20 complex spectra of its fine grid (the window's DFT, 2x
    zero-padded, up to ``max_frequency_hz``) and a few windows of samples per column; the
    reference about 8 complex spectra of the full FFT. Measured at Riffusion's parameters:
    271 KiB (fast) and 460 KiB (reference) per column and channel, against these estimates'
    381 KiB and 551 KiB.

    Args:
        params: the spectrogram parameters.
        method: ``"fast"`` or ``"reference"``.
    """
    if method == "fast":
        fine_bins = int(params.max_frequency_hz * 2 * params.win_length / params.sample_rate) + 1
        return 20 * 8 * fine_bins + 16 * params.win_length
    return 8 * 8 * (params.n_fft // 2 + 1)


def check_decode_memory(
    frames: int, channels: int, bytes_per_frame: int, method: str, *, what: str = "mel"
) -> None:
    """Refuse a decode whose working memory would exceed :data:`MAX_DECODE_BYTES`.

    Args:
        frames: image columns.
        channels: 1 or 2 (any leading dimensions' product).
        bytes_per_frame: the decoder's working memory per column and channel, in bytes (at
            least 1: :func:`inverse_bytes_per_frame`, or a decoder's own estimate).
        method: the decoder's name, for the message.
        what: how the message names the input (``"an image 65536 columns wide"``).

    Raises:
        ParameterError: naming the size, the estimate and the limit.
    """
    needed = int(frames) * int(channels) * int(bytes_per_frame)
    if needed > MAX_DECODE_BYTES:
        widest = MAX_DECODE_BYTES // (int(bytes_per_frame) * channels)
        raise ParameterError(
            f"{what} ({frames} columns, {channels} channel(s)) needs about "
            f"{needed / 2**30:.1f} GiB to decode with method={method!r}; at most "
            f"{MAX_DECODE_BYTES / 2**30:g} GiB (riffusion.limits.MAX_DECODE_BYTES), i.e. "
            f"{widest} columns at these parameters"
        )


# ------------------------------------------------------------------------ shared converters
@functools.lru_cache(maxsize=8)
def _cached_converter(params: SpectrogramParams, device: str) -> SpectrogramConverter:
    return SpectrogramConverter(params, device=device)


def get_converter(
    params: SpectrogramParams | None = None, *, device: torch.device | str = "cpu"
) -> SpectrogramConverter:
    """A shared :class:`SpectrogramConverter` for ``params`` and ``device`` (built once, cached).

    The encoder (:func:`riffusion.audio_to_image`) and the built-in decoders use these, so
    their windows, filterbanks and inverse operators are built once per parameters and device
    (the 8 most recently used are kept).

    Args:
        params: spectrogram parameters (default: ``SpectrogramParams()``).
        device: torch device of the converter's STFT, filterbank and phase recovery.
    """
    if params is not None and not isinstance(params, SpectrogramParams):
        raise ParameterError(
            f"params must be a riffusion.SpectrogramParams or None, got {type(params).__name__}"
        )
    return _cached_converter(params or SpectrogramParams(), str(check_device("device", device)))
