"""STFT and mel conversion: waveform ↔ mel magnitudes, with phase recovery.

Pure functions take every parameter explicitly; :class:`SpectrogramConverter` holds what is
worth computing once per :class:`~riffusion.params.SpectrogramParams` and device (windows, the mel
filterbank, the inverse mel operator).

Shapes follow torchaudio: any leading dimensions are allowed, time is last.

- waveform: ``(..., samples)`` float32, at ``params.sample_rate`` Hz. Riffusion computed its
  spectrograms from 16-bit integer sample values, so the converter works at that scale: multiply a
  waveform in [-1, 1] by :data:`INT16_SCALE` first to get Riffusion's magnitudes (the high-level
  functions in :mod:`riffusion.convert` do this).
- mel: ``(..., n_mels, frames)`` non-negative float32 linear magnitudes (not power, not dB).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Literal

import torch
import torchaudio

from riffusion._checks import check_device
from riffusion.errors import ParameterError
from riffusion.params import SpectrogramParams

__all__ = [
    "DEFAULT_ITERATIONS",
    "INT16_SCALE",
    "InverseMethod",
    "SpectrogramConverter",
    "band_limit",
    "gradient_phase",
    "mel_filterbank",
    "num_frames",
    "spectral_convergence",
]

INT16_SCALE = 32768.0
"""Factor between float samples in [-1, 1] and the 16-bit integer scale Riffusion worked at."""

InverseMethod = Literal["fast", "reference"]
"""Conversion methods: ``"fast"`` (default) or ``"reference"`` (Riffusion's torchaudio path)."""

DEFAULT_ITERATIONS = 32
"""Griffin-Lim iterations when ``num_iterations`` is ``None`` (both methods)."""

MOMENTUM = 0.95
"""Fast Griffin-Lim momentum of the ``"fast"`` inverse (the reference uses 0.99)."""

FINE_SHARE = 4
"""The ``"fast"`` inverse runs ``num_iterations // FINE_SHARE`` of its Griffin-Lim iterations on
the finer (2x padded) grid, the rest on the ``win_length``-point grid."""

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


def mel_filterbank(
    params: SpectrogramParams,
    *,
    num_freqs: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Triangular mel filterbank ``(num_freqs, n_mels)`` mapping STFT magnitudes to mel bins.

    Args:
        params: spectrogram parameters (mel range, bins, scale, norm, sample rate).
        num_freqs: linear frequency bins; defaults to ``params.n_fft // 2 + 1``.
        device: device of the returned tensor.
        dtype: dtype of the returned tensor.
    """
    num_freqs = params.n_fft // 2 + 1 if num_freqs is None else num_freqs
    filterbank = torchaudio.functional.melscale_fbanks(
        n_freqs=num_freqs,
        f_min=float(params.min_frequency_hz),
        f_max=float(params.max_frequency_hz),
        n_mels=params.num_frequencies,
        sample_rate=params.sample_rate,
        norm=params.mel_scale_norm,
        mel_scale=params.mel_scale_type,
    )
    return filterbank.to(device=device, dtype=dtype)


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


def _check_mel(mel: torch.Tensor, params: SpectrogramParams) -> None:
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


def _check_method(method: object) -> None:
    if method not in ("fast", "reference"):
        raise ParameterError(f"method={method!r} must be 'fast' or 'reference'")


def band_limit(filterbank: torch.Tensor) -> int:
    """Number of leading STFT bins the filterbank ``(num_freqs, n_mels)`` uses (last non-zero row
    + 1); the bins above contribute nothing to the mel spectrogram.

    Args:
        filterbank: mel filterbank, float tensor of shape ``(num_freqs, n_mels)``
            (``n_fft // 2 + 1`` STFT bins by mel bands).
    """
    rows = torch.nonzero(filterbank.abs().sum(dim=-1)).flatten()
    return int(rows.max()) + 1 if rows.numel() else 1


# ------------------------------------------------------------------------------ phase recovery
#: Time-frequency spread of the Gaussian that best matches a Hann window of length L seconds:
#: ``λ = 0.25645 · L²`` (Průša, Balazs & Søndergaard 2017, "A noniterative method for
#: reconstruction of phase from STFT magnitude").
_HANN_GAUSSIAN_RATIO = 0.25645


def gradient_phase(
    magnitudes: torch.Tensor,
    *,
    bin_hz: float,
    hop_s: float,
    window_s: float,
    seed: int = 0,
    tolerance: float = 1e-4,
    periodic: bool = False,
) -> torch.Tensor:
    """Phase estimated from STFT magnitudes by integrating its gradient (PGHI-style).

    For a Gaussian window ``exp(-π t² / λ)`` the log-magnitude ``s`` and phase ``φ`` of the
    (window-centre referenced) STFT satisfy ``∂φ/∂t = ∂s/∂f / λ + 2πf`` and
    ``∂φ/∂f = −λ ∂s/∂t``; a Hann window is close to the Gaussian with ``λ = 0.25645 · L²``.
    Each frame's bins continue their phase from the previous frame (trapezoidal time
    integration) where the previous frame was at least half as loud (sustained or decaying
    partials); the others (onsets, quiet bins) are integrated along frequency from the nearest
    continuing bin (the louder of the two neighbours), or from the frame's loudest bin. The first
    frame of a one-shot clip has no past: each spectral lobe (bins between two local minima)
    starts at its peak's integration constant, so partials do not line up into a click.

    Args:
        magnitudes: ``(batch, frames, bins)`` non-negative float32; bin ``k`` is at
            ``k · bin_hz`` Hz, frame ``t`` is centred at ``t · hop_s`` seconds.
        bin_hz: bin spacing in Hz. hop_s: frame hop in seconds. window_s: Hann length in seconds.
        seed: seeds the integration constant (the phase each track starts with) of every bin;
            the result is a deterministic function of ``magnitudes`` and ``seed``.
        tolerance: bins quieter than ``tolerance × max`` never anchor other bins.
        periodic: the frames are one period of a loop: the first frame continues from the last
            (time derivatives taken circularly, and a second pass around the loop starts from
            the first pass's last frame), so the phase has no seam at the wrap.

    Returns:
        ``(batch, frames, bins)`` float32 phase in radians, referenced to the window centre.
    """
    batch, frames, bins = magnitudes.shape
    device = magnitudes.device
    lam = _HANN_GAUSSIAN_RATIO * window_s**2
    peak = magnitudes.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-30)
    log_mag = torch.log(torch.maximum(magnitudes, peak * 1e-10))
    d_freq = torch.zeros_like(log_mag)
    d_freq[..., 1:-1] = (log_mag[..., 2:] - log_mag[..., :-2]) / (2 * bin_hz)
    if periodic:
        d_time = (log_mag.roll(-1, dims=1) - log_mag.roll(1, dims=1)) / (2 * hop_s)
    else:
        # Central differences inside, one-sided at the first and last frames (a zero there
        # would claim that every bin's energy is centred on the frame: an impulse at the edge).
        d_time = torch.zeros_like(log_mag)
        d_time[:, 1:-1] = (log_mag[:, 2:] - log_mag[:, :-2]) / (2 * hop_s)
        if frames > 1:
            d_time[:, 0] = (log_mag[:, 1] - log_mag[:, 0]) / hop_s
            d_time[:, -1] = (log_mag[:, -1] - log_mag[:, -2]) / hop_s
    freqs = torch.arange(bins, device=device, dtype=torch.float32) * bin_hz
    omega = d_freq / lam + 2 * math.pi * freqs  # rad/s
    if periodic:
        step_time = 0.5 * hop_s * (omega + omega.roll(1, dims=1))
    else:
        step_time = torch.zeros_like(omega)
        step_time[:, 1:] = 0.5 * hop_s * (omega[:, 1:] + omega[:, :-1])
    psi = -lam * d_time  # rad/Hz
    along_freq = torch.zeros_like(psi)
    along_freq[..., 1:] = torch.cumsum(0.5 * bin_hz * (psi[..., 1:] + psi[..., :-1]), dim=-1)

    loud = magnitudes > tolerance * peak
    if periodic:
        previous = magnitudes.roll(1, dims=1)
    else:
        previous = torch.zeros_like(magnitudes)
        previous[:, 1:] = magnitudes[:, :-1]
    continues = loud & (previous >= 0.5 * magnitudes)
    if not periodic:
        continues[:, 0] = False
    # Nearest continuing bin below and above each bin, and the louder of the two as anchor.
    index = torch.arange(bins, device=device).expand(batch, frames, bins)
    below = torch.cummax(torch.where(continues, index, -1), dim=-1).values
    above = (
        bins
        - 1
        - torch.cummax(torch.where(continues, bins - 1 - index, -1).flip(-1), dim=-1).values.flip(
            -1
        )
    )
    has_below, has_above = below >= 0, above < bins
    below, above = below.clamp(0, bins - 1), above.clamp(0, bins - 1)
    use_below = has_below & (
        ~has_above | (magnitudes.gather(-1, below) >= magnitudes.gather(-1, above))
    )
    loudest = magnitudes.argmax(dim=-1, keepdim=True).expand(batch, frames, bins)
    anchor = torch.where(use_below, below, torch.where(has_above, above, loudest))
    if not periodic:
        # The first frame has no past (the clip is a window cut out of music that was already
        # playing): each spectral peak starts its own track at its integration constant, and
        # only the bins of its lobe follow it. Seeding the whole frame from its loudest bin
        # gave every partial one phase slope — an impulse at the first sample.
        anchor[:, 0] = _lobe_peaks(magnitudes[:, 0])
    # Seeded bins take their anchor's phase plus the frequency integral from the anchor.
    offset = along_freq - along_freq.gather(-1, anchor)
    needs_anchor = (~continues).any(dim=-1).any(dim=0).tolist()

    # The same integration constants for every item, so a batch decodes like its items.
    generator = torch.Generator(device="cpu").manual_seed(seed)
    start = (torch.rand(bins, generator=generator) * (2 * math.pi)).to(device)
    current = start.expand(batch, bins)
    phase = torch.empty_like(magnitudes)
    # A loop goes round twice: the second pass starts where the first ended, so the first
    # frame continues from the last one as every other frame continues from its predecessor.
    for _ in range(2 if periodic else 1):
        for t in range(frames):
            candidate = current + step_time[:, t]
            if needs_anchor[t]:
                seeded = candidate.gather(-1, anchor[:, t]).add_(offset[:, t])
                candidate = torch.where(continues[:, t], candidate, seeded)
            phase[:, t] = candidate
            current = candidate
    return phase


@contextlib.contextmanager
def _single_intra_op_thread() -> Iterator[None]:
    """Run the block with one intra-op thread in the calling thread, then restore its count.

    The fast inverse is hundreds of small operations (per-frame phase steps, Griffin-Lim
    iterations on ~500 × 1000 bins). Split over several OpenMP threads, every one of them ends
    in a barrier; when other processes keep the cores busy, each barrier waits for a descheduled
    thread's next time slice, and the decode slowed down 15–60x under two CPU-bound processes
    (one thread: no barrier, and 1.0–1.3x; see docs/performance.md).

    Scope: with PyTorch's OpenMP backend the intra-op thread count (``omp_set_num_threads``,
    ``mkl_set_num_threads_local``) belongs to the calling thread, so other Python threads that
    already use torch (a stream's background generation, a server's workers) keep their own
    count during the decode, and the calling thread gets its count back afterwards. What
    ``torch.set_num_threads`` also sets is the default of threads that first use torch *while*
    the block runs; such a thread starts with one intra-op thread.
    """
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _lobe_peaks(magnitudes: torch.Tensor) -> torch.Tensor:
    """For each bin of ``(batch, bins)`` magnitudes, the index of the peak of its lobe.

    Lobes are the runs of bins between local minima; each lobe's peak is its loudest bin (the
    lowest index among equals). Returns ``(batch, bins)`` int64 indices.
    """
    batch, bins = magnitudes.shape
    valley = torch.zeros_like(magnitudes, dtype=torch.bool)
    if bins > 2:
        middle = magnitudes[:, 1:-1]
        valley[:, 1:-1] = (middle < magnitudes[:, :-2]) & (middle <= magnitudes[:, 2:])
    lobe = torch.cumsum(valley.long(), dim=-1)  # (batch, bins) lobe number of each bin
    count = int(lobe.max()) + 1
    loudest = magnitudes.new_full((batch, count), -1.0).scatter_reduce(
        -1, lobe, magnitudes, reduce="amax"
    )
    index = torch.arange(bins, device=magnitudes.device).expand(batch, bins)
    at_peak = magnitudes == loudest.gather(-1, lobe)
    peak = torch.full((batch, count), bins, device=magnitudes.device, dtype=torch.long)
    peak = peak.scatter_reduce(-1, lobe, torch.where(at_peak, index, bins), reduce="amin")
    return peak.gather(-1, lobe)


def _smooth_at_least(value: int, limit: int) -> int:
    """Smallest ``m`` in ``[value, limit]`` with only factors 2, 3, 5; ``limit`` if none."""
    for candidate in range(max(value, 1), limit + 1):
        rest = candidate
        for factor in (2, 3, 5):
            while rest % factor == 0:
                rest //= factor
        if rest == 1:
            return candidate
    return limit


class _FrameGrid:
    """Centred STFT framing (reflect-padded analysis, least-squares overlap-add synthesis) of
    ``win``-sample Hann windows at ``hop``, DFT size ``fft_size``, keeping the first ``bins``
    bins. The window starts at the frame start (phases are referenced to it)."""

    def __init__(self, fft_size: int, win: int, hop: int, bins: int, device: torch.device) -> None:
        self.fft_size, self.win, self.hop, self.bins = fft_size, win, hop, bins
        self.window = torch.hann_window(win, device=device)
        self._inverse_envelopes: dict[tuple[int, int, bool], torch.Tensor] = {}

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """``(batch, T, win)`` → ``(batch, (T − 1)·hop + win)``, summing overlapping frames."""
        batch, count, win = frames.shape
        hop = self.hop
        if win % hop == 0:
            ratio = win // hop
            pieces = frames.reshape(batch, count, ratio, hop)
            out = frames.new_zeros(batch, count + ratio - 1, hop)
            for r in range(ratio):
                out[:, r : r + count] += pieces[:, :, r]
            return out.reshape(batch, -1)
        length = (count - 1) * hop + win
        folded = torch.nn.functional.fold(
            frames.transpose(1, 2), (1, length), (1, win), stride=(1, hop)
        )
        return folded.reshape(batch, length)

    def _crop(self, buffer: torch.Tensor, length: int) -> torch.Tensor:
        start = self.win // 2
        missing = start + length - buffer.shape[-1]
        if missing > 0:
            buffer = torch.nn.functional.pad(buffer, (0, missing))
        return buffer[..., start : start + length]

    def _wrap(self, buffer: torch.Tensor, length: int) -> torch.Tensor:
        """Fold an overlap-add buffer onto a circle of ``length`` samples (periodic signals)."""
        # Buffer sample j belongs at position (j - win // 2) mod length. Pad in front so the
        # first sample sits at a multiple of length, pad the end to whole periods and sum the
        # periods: deterministic on every device (unlike index_add_ on CUDA).
        front = (-(self.win // 2)) % length
        total = front + buffer.shape[-1]
        back = -total % length
        padded = torch.nn.functional.pad(buffer, (front, back))
        return padded.reshape(buffer.shape[0], -1, length).sum(dim=1)

    def _place(self, buffer: torch.Tensor, length: int, periodic: bool) -> torch.Tensor:
        return self._wrap(buffer, length) if periodic else self._crop(buffer, length)

    def _inverse_envelope(self, count: int, length: int, periodic: bool) -> torch.Tensor:
        key = (count, length, periodic)
        if key not in self._inverse_envelopes:
            squares = (self.window**2).expand(1, count, self.win)
            envelope = self._place(self._overlap_add(squares), length, periodic)[0]
            tiny = envelope.max() * 1e-6
            inverse = torch.where(envelope > tiny, 1 / envelope.clamp_min(tiny), 0.0)
            self._inverse_envelopes = {key: inverse}  # keep one: widths rarely change
        return self._inverse_envelopes[key]

    def synthesize(
        self, spectrum: torch.Tensor, *, length: int | None = None, periodic: bool = False
    ) -> torch.Tensor:
        """``(batch, T, bins)`` complex → ``(batch, length)`` waveform (inverse STFT).

        ``length`` defaults to ``T · hop``; frame ``t`` is centred on sample ``t · hop``.
        ``periodic`` treats the signal as one period of a loop of ``length`` samples: frames
        that run past the end wrap around to the start (circular overlap-add) instead of being
        cut off. Samples are divided by the overlap-added squared window of the frames that
        reach them (least-squares inverse), at the edges as inside.
        """
        count = spectrum.shape[-2]
        length = count * self.hop if length is None else length
        frames = torch.fft.irfft(spectrum, n=self.fft_size)[..., : self.win] * self.window
        buffer = self._overlap_add(frames)
        envelope = self._inverse_envelope(count, length, periodic)
        return self._place(buffer, length, periodic) * envelope

    def analyze(
        self, waveform: torch.Tensor, count: int, *, periodic: bool = False
    ) -> torch.Tensor:
        """``(batch, samples)`` → ``(batch, count, bins)`` complex STFT (centred frames).

        ``periodic`` pads circularly (the frames at the ends see the other end of the loop)
        instead of reflecting.
        """
        half = self.win // 2
        if periodic:
            positions = torch.arange(-half, waveform.shape[-1] + self.win - half)
            padded = waveform[:, positions.to(waveform.device) % waveform.shape[-1]][:, None]
        else:
            mode = "reflect" if waveform.shape[-1] > half else "constant"
            padded = torch.nn.functional.pad(waveform[:, None], (half, self.win - half), mode=mode)
        frames = padded[:, 0].unfold(-1, self.win, self.hop)[:, :count] * self.window
        return torch.fft.rfft(frames, n=self.fft_size)[..., : self.bins]

    def griffin_lim(
        self,
        magnitudes: torch.Tensor,
        spectrum: torch.Tensor,
        iterations: int,
        momentum: float,
        *,
        length: int | None = None,
        periodic: bool = False,
    ) -> torch.Tensor:
        """Fast Griffin-Lim (Perraudin, Balazs & Søndergaard 2013) on this grid.

        Args:
            magnitudes: ``(batch, T, bins)`` target magnitudes.
            spectrum: ``(batch, T, bins)`` complex start, with those magnitudes.
            iterations: projections; momentum: the fast Griffin-Lim momentum in ``[0, 1)``.
            length: samples of the signal on this grid (default ``T · hop``).
            periodic: treat the signal as one period of a loop (circular framing).

        Returns:
            the refined complex spectrum (magnitudes ``magnitudes``, recovered phase).
        """
        count = magnitudes.shape[-2]
        alpha = momentum / (1 + momentum)
        previous: torch.Tensor | None = None
        for _ in range(iterations):
            waveform = self.synthesize(spectrum, length=length, periodic=periodic)
            rebuilt = self.analyze(waveform, count, periodic=periodic)
            target = rebuilt if previous is None else torch.sub(rebuilt, previous, alpha=alpha)
            previous = rebuilt
            spectrum = _with_magnitudes(target, magnitudes)
        return spectrum


def _with_magnitudes(spectrum: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
    """``spectrum · magnitudes / |spectrum|``: the phase of ``spectrum`` with ``magnitudes``.

    Uses ``rsqrt(re² + im²)`` rather than the complex ``abs`` (a careful, slow ``hypot``); bins
    with zero energy keep magnitude zero."""
    parts = torch.view_as_real(spectrum)
    real, imaginary = parts[..., 0], parts[..., 1]
    power = torch.addcmul(real * real, imaginary, imaginary)
    return spectrum * (magnitudes * power.clamp_min(1e-30).rsqrt())


class _InverseOperators:
    """What the fast inverse computes once per converter."""

    def __init__(
        self,
        mel_to_linear: torch.Tensor,
        bin_hz: float,
        centre_shift: torch.Tensor,
        internal: _FrameGrid,
        output: _FrameGrid,
    ) -> None:
        self.mel_to_linear = mel_to_linear  # (n_mels, bins)
        self.bin_hz = bin_hz
        self.centre_shift = centre_shift  # (bins,)
        self.internal = internal
        self.output = output

    @classmethod
    def build(
        cls,
        params: SpectrogramParams,
        band: torch.Tensor,
        zoom: int,
        device: torch.device,
    ) -> _InverseOperators:
        n_fft, win, hop = params.n_fft, params.win_length, params.hop_length
        # The analysis grid: win-point DFT when n_fft = zoom · win (every zoom-th n_fft bin).
        grid = n_fft // zoom
        bins = (band.shape[0] - 1) // zoom + 1
        # Minimum-norm inverse of the filterbank on the n_fft grid, F (FᵀF)⁺ — the solution the
        # reference's least squares finds — kept at the analysis grid's bins. FᵀF is only
        # n_mels × n_mels, so this takes milliseconds (no SVD of the n_fft-row matrix).
        dense = band.double().cpu()
        gram_inverse = torch.linalg.pinv(dense.T @ dense, hermitian=True)
        mel_to_linear = (dense[::zoom][:bins] @ gram_inverse).T.contiguous()
        # Griffin-Lim only needs the bins below the mel range: run it at the lowest rate whose
        # Nyquist bin still holds them (frame, hop and DFT sizes all scaled by scale / common).
        common = math.gcd(math.gcd(grid, win), hop)
        per_unit = grid // common
        scale = _smooth_at_least(-(-2 * bins // per_unit), common)
        if scale * per_unit < 2 * (bins - 1) + 2:
            scale = common
        internal = _FrameGrid(
            scale * per_unit, scale * win // common, scale * hop // common, bins, device
        )
        output = _FrameGrid(grid, win, hop, bins, device)
        shift = math.pi * torch.arange(bins, dtype=torch.float64) * win / grid
        return cls(
            mel_to_linear.to(device=device, dtype=torch.float32),
            params.sample_rate / grid,
            shift.to(device=device, dtype=torch.float32),
            internal,
            output,
        )


class SpectrogramConverter:
    """Converts waveforms to mel magnitudes and back, caching windows, filterbanks and operators.

    Both directions offer two methods:

    - ``"fast"`` (default): the forward transform runs the STFT in blocks of frames and takes
      ``abs`` and the filterbank product only over the bins the filterbank uses (up to
      ``max_frequency_hz``), bit-identical to the reference on CPU; the inverse maps mel to
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
                f"params must be a riffusion.SpectrogramParams or None, got "
                f"{type(params).__name__}"
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
        self._inverse: _InverseOperators | None = None
        self._reference_forward: tuple[torch.nn.Module, torch.nn.Module] | None = None

    # ---------------------------------------------------------------------------- forward
    def waveform_to_mel(
        self, waveform: torch.Tensor, *, method: InverseMethod = "fast"
    ) -> torch.Tensor:
        """Mel magnitudes of a waveform.

        Args:
            waveform: ``(..., samples)`` float tensor at ``params.sample_rate`` Hz, at least one
                hop long. Audio shorter than half an FFT frame is zero-padded at the end (the
                reflect padding of a centred STFT needs that many samples).
            method: ``"fast"`` (default; STFT in blocks of frames, ``abs`` and filterbank only
                over the bins below ``max_frequency_hz``) or ``"reference"`` (torchaudio
                ``Spectrogram`` + ``MelScale`` over all ``n_fft // 2 + 1`` bins). On CPU with
                MKL both give bit-identical magnitudes (so identical images); another BLAS or
                device may round the band-limited product differently by an ulp.

        Returns:
            ``(..., n_mels, samples // hop_length + 1)`` float32 magnitudes on
            ``self.device`` (Riffusion's convention, ``params.width_for_samples``: 5.12 s →
            513 frames, 5.11 s → 512).
        """
        _check_waveform(waveform)
        _check_method(method)
        params = self.params
        frames = num_frames(waveform.shape[-1], params)
        if waveform.shape[-1] < params.hop_length:
            raise ParameterError(
                f"waveform of {waveform.shape[-1]} samples is shorter than one hop "
                f"({params.hop_length} samples = {params.step_size_ms} ms)"
            )
        leading = waveform.shape[:-1]
        flat = waveform.reshape(-1, waveform.shape[-1]).to(self.device, torch.float32)
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
        """``(batch, samples)`` → ``(batch, frames, n_mels)``, bit-identical to the reference.

        The same ``torch.stft`` frames as the reference (reflect padding, centred window), but
        in blocks of :data:`_FRAME_BLOCK` frames, so that the temporaries stay small (fresh
        full-size buffers cost more in page faults than in arithmetic); ``abs`` only of the
        bins the filterbank uses (≤ ``max_frequency_hz``), and the product with only those rows
        of the filterbank — the rows above are zeros, which add nothing, so the sums and their
        rounding are the reference's.
        """
        params = self.params
        n_fft, hop = params.n_fft, params.hop_length
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
                    window=self._window,
                    center=False,
                    return_complex=True,
                )
                magnitudes = stft[: self.num_bins].abs().transpose(0, 1)
                mel[item, start : start + count] = torch.matmul(magnitudes, self._band)
        return mel

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

        Methods:

        - ``"fast"`` (default): linear magnitudes from a cached operator (the minimum-norm
          inverse of the filterbank — the solution the reference's least squares finds —
          restricted to the bins below ``max_frequency_hz`` on the ``win_length``-point DFT grid),
          phase initialised by integrating the phase gradient implied by the magnitudes (PGHI,
          Průša et al. 2017), then ``num_iterations`` (default 32) fast Griffin-Lim iterations
          with momentum 0.95 at a reduced internal sample rate that still holds every bin below
          ``max_frequency_hz`` — three quarters on that grid, the last quarter on the grid
          padded 2x, whose finer bins shape the narrow low mel bands; the final synthesis is at
          ``params.sample_rate``. ``seed`` picks the integration constants of the phase (the
          starting phase of each bin's track), so the output is a deterministic function of
          ``mel`` and ``seed``. On CPU it runs with one intra-op thread in the calling thread
          (other threads keep theirs), which keeps it fast when other processes load the cores.
        - ``"reference"``: Riffusion's algorithm — torchaudio ``InverseMelScale`` (least squares
          per call), then ``GriffinLim`` with ``num_iterations`` (default 32) iterations, momentum
          0.99 and a random initial phase drawn from ``seed``.

        Args:
            mel: ``(..., n_mels, frames)`` non-negative magnitudes (any float dtype, any device).
            method: ``"fast"`` or ``"reference"``.
            num_iterations: Griffin-Lim iterations (more is slower and more faithful); ``None``
                picks 32 for either method.
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
        _check_mel(mel, self.params)
        _check_method(method)
        if num_iterations is not None and (
            isinstance(num_iterations, bool)
            or not isinstance(num_iterations, int)
            or num_iterations < 1
        ):
            raise ParameterError(f"num_iterations={num_iterations!r} must be a positive integer")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ParameterError(f"seed={seed!r} must be an integer")
        iterations = DEFAULT_ITERATIONS if num_iterations is None else num_iterations
        if not isinstance(periodic, bool):
            raise ParameterError(f"periodic={periodic!r} must be True or False")
        if periodic and method == "reference":
            raise ParameterError(
                "periodic=True needs method='fast' (the reference algorithm has no circular mode)"
            )
        if method == "reference" and (mel.shape[-1] - 1) * self.params.hop_length <= (
            self.params.n_fft // 2
        ):
            raise ParameterError(
                f"mel with {mel.shape[-1]} frames is too short for method='reference' (torch.stft "
                f"reflect-pads {self.params.n_fft // 2} samples); use at least "
                f"{self.params.n_fft // 2 // self.params.hop_length + 2} frames or method='fast'"
            )
        length = self.params.samples_for_width(mel.shape[-1], periodic=periodic)
        if length == 0:
            raise ParameterError(
                "mel with 1 frame decodes to no samples ((frames − 1) · hop_length); use at "
                "least 2 frames, or periodic=True"
            )
        mel = mel.to(self.device, torch.float32)
        if method == "reference":
            return _fit_samples(self._reference_mel_to_waveform(mel, iterations, seed), length)
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
        params = self.params
        inverse_mel = torchaudio.transforms.InverseMelScale(
            n_stft=params.n_fft // 2 + 1,
            n_mels=params.num_frequencies,
            sample_rate=params.sample_rate,
            f_min=float(params.min_frequency_hz),
            f_max=float(params.max_frequency_hz),
            norm=params.mel_scale_norm,
            mel_scale=params.mel_scale_type,
        ).to(self.device)
        griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=params.n_fft,
            n_iter=num_iterations,
            win_length=params.win_length,
            hop_length=params.hop_length,
            window_fn=torch.hann_window,
            power=1.0,
            momentum=0.99,
            length=None,
            rand_init=True,
        ).to(self.device)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            linear = inverse_mel(mel)
            waveform = griffin_lim(linear)
        # Riffusion's output has (frames - 1) * hop samples; pad or cut to the library's frame
        # convention so that lengths agree across methods.
        missing = params.samples_for_width(mel.shape[-1]) - waveform.shape[-1]
        return torch.nn.functional.pad(waveform, (0, missing))

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
                fine = _InverseOperators.build(self.params, band, self._zoom // 2, self.device)
            self._inverse = (coarse, fine)
        return self._inverse

    def _fast_mel_to_waveform(
        self, mel: torch.Tensor, num_iterations: int, seed: int, periodic: bool = False
    ) -> torch.Tensor:
        """``(batch, n_mels, frames)`` → ``(batch, params.samples_for_width(frames))``."""
        coarse, fine = self._get_inverse()
        params = self.params
        frames = mel.shape[-1]
        # The one place the output length comes from (the library's frame convention).
        length = params.samples_for_width(frames)
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
        waveform = coarse.output.synthesize(spectrum, length=length, periodic=periodic)
        if fine is None or fine_iterations == 0:
            return waveform
        fine_magnitudes = torch.relu(torch.matmul(mel_t, fine.mel_to_linear))
        rebuilt = fine.output.analyze(waveform, frames, periodic=periodic)
        spectrum = _with_magnitudes(rebuilt, fine_magnitudes)
        spectrum = fine.internal.griffin_lim(
            fine_magnitudes,
            spectrum,
            fine_iterations,
            momentum=MOMENTUM,
            length=-(-length * fine.internal.hop // fine.output.hop),
            periodic=periodic,
        )
        return fine.output.synthesize(spectrum, length=length, periodic=periodic)
