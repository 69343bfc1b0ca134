"""Phase recovery: from STFT magnitudes back to a waveform.

The math, with every parameter explicit:

- :func:`gradient_phase`: phase initialisation by integrating the phase gradient the
  magnitudes imply (PGHI-style).
- :func:`griffin_lim`: the fast Griffin-Lim (Perraudin, Balazs & Søndergaard 2013) with
  centred, least-squares framing and an optional circular (loop) mode, for linear magnitudes
  ``(..., n_fft // 2 + 1, frames)`` as :func:`torchaudio.functional.griffinlim` takes them.
- :func:`reference_mel_to_waveform`: Riffusion's torchaudio path (``InverseMelScale`` then
  ``GriffinLim``).

This module sits below :mod:`riffusion.spectrogram` (it imports only the parameters), so the
converter builds on it; the decoders (the built-in ``"fast"`` and ``"reference"``, and any
plug-in) and their registry are :mod:`riffusion.decoders`, above both.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator

import torch
import torchaudio

from riffusion.errors import ParameterError
from riffusion.params import SpectrogramParams

__all__ = [
    "DEFAULT_ITERATIONS",
    "FAST_DEFAULT_ITERATIONS",
    "FINE_SHARE",
    "MEL_FROM",
    "MOMENTUM",
    "SIGN_CHOICE_SHARE",
    "gradient_phase",
    "griffin_lim",
    "reference_mel_to_waveform",
]

DEFAULT_ITERATIONS = 32
"""Griffin-Lim iterations of the ``"reference"`` decoder (Riffusion's) and of
:func:`griffin_lim` when not given."""

FAST_DEFAULT_ITERATIONS = 40
"""Griffin-Lim iterations of the ``"fast"`` decoder when ``num_iterations`` is ``None``: 32 on
the coarse grid and 8 on the fine one. The fewest (in steps of 4) at which the median spectral
convergence over the four corpus clips of the decode bench is no worse than the decoder's
before issue 25 (48 iterations, the fine ones towards fixed magnitudes); at 40 the median over
all 16 bench images and the worst image are lower too (docs/performance.md)."""

MOMENTUM = 0.95
"""Fast Griffin-Lim momentum of the ``"fast"`` inverse (the reference uses 0.99)."""

FINE_SHARE = 5
"""The ``"fast"`` inverse runs ``num_iterations // FINE_SHARE`` of its Griffin-Lim iterations on
the finer (2x padded) grid, the rest on the ``win_length``-point grid."""

MEL_FROM = 2
"""Iterations on the fine grid that project onto the filterbank's minimum-norm magnitudes before
the projection onto the mel magnitudes themselves takes over (:class:`_MelBands`)."""


SIGN_CHOICE_SHARE = 0.1
"""In the first frame of a one-shot clip, :func:`gradient_phase` chooses the sign of every
spectral lobe at least this share as strong as the strongest (so the lobes cannot add up to a
click at the first sample); the quieter lobes keep the sign the seed draws."""

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
    partials); the others (onsets, quiet bins) are integrated along frequency from the peak of
    their spectral lobe (the bins between two local minima of the frame), whose own phase goes
    on from its previous frame (or, in the first frame of a one-shot clip, which has no past,
    starts at its integration constant). Separate partials thus keep separate phases, and an
    onset does not line up every partial of the frame into one click.

    The first frame of a one-shot clip is centred on sample 0 and the encoder reflect-pads
    there, so the frame it analysed is even about its centre: its spectrum is real. So its
    energy is centred (no phase slope along frequency) and each lobe's phase is 0 or π. The
    sign of each lobe at least a tenth as strong as the strongest (:data:`SIGN_CHOICE_SHARE`)
    is chosen, loudest first, to keep the first sample small (so the lobes cannot add up to a
    click there); the quieter lobes keep the sign ``seed`` draws. A uniform random start gave
    the lowest partials phases no waveform can have at that edge: Griffin-Lim, slowest to move
    them, left a smeared first 0.1 s on some seeds, and random signs a click on others
    (issue 9; the history of docs/performance.md).

    Args:
        magnitudes: ``(batch, frames, bins)`` non-negative float32; bin ``k`` is at
            ``k · bin_hz`` Hz, frame ``t`` is centred at ``t · hop_s`` seconds.
        bin_hz: bin spacing in Hz. hop_s: frame hop in seconds. window_s: Hann length in seconds.
        seed: seeds the integration constant (the phase each track starts with) of every bin:
            uniform in ``[0, 2π)`` for a loop, 0 or π (the sign of each quieter lobe of the
            first frame) for a one-shot clip; the result is a deterministic function of
            ``magnitudes`` and ``seed``.
        tolerance: bins quieter than ``tolerance × max`` never continue their phase track
            (they are seeded from their lobe's peak).
        periodic: the frames are one period of a loop: the first frame continues from the last
            (time derivatives taken circularly, and a second pass around the loop starts from
            the first pass's last frame), so the phase has no seam at the wrap.

    Returns:
        ``(batch, frames, bins)`` float32 phase in radians, referenced to the window centre.
    """
    peak, d_freq, d_time = _log_magnitude_gradients(
        magnitudes, bin_hz=bin_hz, hop_s=hop_s, periodic=periodic
    )
    lam = _HANN_GAUSSIAN_RATIO * window_s**2
    step_time, along_freq = _phase_increments(
        d_freq, d_time, bin_hz=bin_hz, hop_s=hop_s, lam=lam, periodic=periodic
    )
    continues = _continuing_bins(magnitudes, peak, tolerance=tolerance, periodic=periodic)
    anchor, offset = _lobe_anchors(magnitudes, along_freq)
    current = _initial_phase(magnitudes, anchor, seed=seed, periodic=periodic)
    return _integrate_phase(current, step_time, continues, anchor, offset, periodic=periodic)


def _log_magnitude_gradients(
    magnitudes: torch.Tensor, *, bin_hz: float, hop_s: float, periodic: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The peak magnitude and the log-magnitude's derivatives along frequency and time.

    Args:
        magnitudes: ``(batch, frames, bins)`` non-negative float32 STFT magnitudes.
        bin_hz: bin spacing in Hz. hop_s: frame hop in seconds.
        periodic: the frames are one period of a loop (time differences taken circularly).

    Returns:
        ``peak``: ``(batch, 1, 1)`` float32, each item's largest magnitude (at least 1e-30);
        ``d_freq``: ``(batch, frames, bins)`` float32 ``∂s/∂f`` in 1/Hz (central differences,
        0 at the first and last bin); ``d_time``: ``(batch, frames, bins)`` float32 ``∂s/∂t``
        in 1/s, where ``s`` is the natural log of the magnitudes floored at ``1e-10 · peak``.
    """
    _, frames, _ = magnitudes.shape
    peak = magnitudes.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-30)
    log_mag = torch.log(torch.maximum(magnitudes, peak * 1e-10))
    d_freq = torch.zeros_like(log_mag)
    d_freq[..., 1:-1] = (log_mag[..., 2:] - log_mag[..., :-2]) / (2 * bin_hz)
    if periodic:
        d_time = (log_mag.roll(-1, dims=1) - log_mag.roll(1, dims=1)) / (2 * hop_s)
    else:
        # Central differences inside. Zero at the first frame: the reflect-padded frame is even
        # about its centre, so its energy is centred there. The last frame's reflection is about
        # the sample before its centre, so it gets a one-sided difference.
        d_time = torch.zeros_like(log_mag)
        d_time[:, 1:-1] = (log_mag[:, 2:] - log_mag[:, :-2]) / (2 * hop_s)
        if frames > 1:
            d_time[:, -1] = (log_mag[:, -1] - log_mag[:, -2]) / hop_s
    return peak, d_freq, d_time


def _phase_increments(
    d_freq: torch.Tensor,
    d_time: torch.Tensor,
    *,
    bin_hz: float,
    hop_s: float,
    lam: float,
    periodic: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The phase steps along time and the phase integral along frequency (PGHI relations).

    Args:
        d_freq: ``(batch, frames, bins)`` float32 ``∂s/∂f`` of the log-magnitude, in 1/Hz.
        d_time: ``(batch, frames, bins)`` float32 ``∂s/∂t`` of the log-magnitude, in 1/s.
        bin_hz: bin spacing in Hz. hop_s: frame hop in seconds.
        lam: the Gaussian window's ``λ`` in s² (``0.25645 · window_s²``).
        periodic: the frames are one period of a loop (frame 0 steps on from the last frame).

    Returns:
        ``step_time``: ``(batch, frames, bins)`` float32 phase advance in radians from the
        previous frame to frame ``t`` (trapezoidal; 0 at the first frame of a one-shot clip);
        ``along_freq``: ``(batch, frames, bins)`` float32 phase in radians integrated along
        frequency from bin 0 (trapezoidal; 0 at bin 0).
    """
    bins = d_freq.shape[-1]
    freqs = torch.arange(bins, device=d_freq.device, dtype=torch.float32) * bin_hz
    omega = d_freq / lam + 2 * math.pi * freqs  # rad/s
    if periodic:
        step_time = 0.5 * hop_s * (omega + omega.roll(1, dims=1))
    else:
        step_time = torch.zeros_like(omega)
        step_time[:, 1:] = 0.5 * hop_s * (omega[:, 1:] + omega[:, :-1])
    psi = -lam * d_time  # rad/Hz
    along_freq = torch.zeros_like(psi)
    along_freq[..., 1:] = torch.cumsum(0.5 * bin_hz * (psi[..., 1:] + psi[..., :-1]), dim=-1)
    return step_time, along_freq


def _continuing_bins(
    magnitudes: torch.Tensor, peak: torch.Tensor, *, tolerance: float, periodic: bool
) -> torch.Tensor:
    """Which bins continue their phase track from the previous frame.

    A bin continues where it is louder than ``tolerance · peak`` and the previous frame was at
    least half as loud (a sustained or decaying partial); never in the first frame of a
    one-shot clip, which has no past.

    Args:
        magnitudes: ``(batch, frames, bins)`` non-negative float32 magnitudes.
        peak: ``(batch, 1, 1)`` float32 largest magnitude of each item.
        tolerance: share of ``peak`` below which a bin never continues.
        periodic: the frames are one period of a loop (frame 0 follows the last frame).

    Returns:
        ``(batch, frames, bins)`` bool.
    """
    loud = magnitudes > tolerance * peak
    if periodic:
        previous = magnitudes.roll(1, dims=1)
    else:
        previous = torch.zeros_like(magnitudes)
        previous[:, 1:] = magnitudes[:, :-1]
    continues = loud & (previous >= 0.5 * magnitudes)
    if not periodic:
        continues[:, 0] = False  # the first frame of a one-shot clip has no past
    return continues


def _lobe_anchors(
    magnitudes: torch.Tensor, along_freq: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The anchor (lobe peak) of every bin and its phase offset from it.

    Bins that do not continue (onsets, quiet bins) take the phase of the peak of their own
    spectral lobe plus the frequency integral from it; a peak that is itself an onset goes on
    from its own previous phase. Chaining every onset bin of a frame from one anchor (the
    nearest continuing bin, or the frame's loudest) lined all partials of an onset up into one
    phase slope: a click at the first sample, and on an acid bass line and a rock ballad
    loudness 2.2 and 1.6 LU under the reference's at equal peak (issue 9).

    Args:
        magnitudes: ``(batch, frames, bins)`` non-negative float32 magnitudes.
        along_freq: ``(batch, frames, bins)`` float32 phase in radians integrated along
            frequency (:func:`_phase_increments`).

    Returns:
        ``anchor``: ``(batch, frames, bins)`` int64 index of each bin's lobe peak;
        ``offset``: ``(batch, frames, bins)`` float32 phase in radians of each bin relative to
        its anchor.
    """
    batch, frames, bins = magnitudes.shape
    anchor = _lobe_peaks(magnitudes.reshape(batch * frames, bins)).reshape(batch, frames, bins)
    # Seeded bins take their anchor's phase plus the frequency integral from the anchor.
    offset = along_freq - along_freq.gather(-1, anchor)
    return anchor, offset


def _initial_phase(
    magnitudes: torch.Tensor, anchor: torch.Tensor, *, seed: int, periodic: bool
) -> torch.Tensor:
    """The integration constants: the phase each bin's track starts from.

    The same draws for every item (a one-shot clip's signs then follow each item's own first
    frame), so a batch decodes like its items: ``bins`` uniform draws from a CPU generator
    seeded with ``seed``.

    Args:
        magnitudes: ``(batch, frames, bins)`` non-negative float32 magnitudes.
        anchor: ``(batch, frames, bins)`` int64 lobe peak of each bin (:func:`_lobe_anchors`).
        seed: seed of the draws.
        periodic: a loop (uniform phases in ``[0, 2π)``) or a one-shot clip (0 or π per lobe
            of the first frame, whose spectrum is real: :func:`_centred_signs`).

    Returns:
        ``(batch, bins)`` float32 phase in radians on ``magnitudes``' device (a loop's is an
        expanded view of one row).
    """
    batch, _, bins = magnitudes.shape
    generator = torch.Generator(device="cpu").manual_seed(seed)
    uniform = torch.rand(bins, generator=generator).to(magnitudes.device)
    if periodic:
        return (uniform * (2 * math.pi)).expand(batch, bins)
    # The first frame's spectrum is real (see gradient_phase): each lobe starts at phase 0 or π.
    signs = _centred_signs(magnitudes[:, 0], anchor[:, 0], torch.where(uniform < 0.5, 1.0, -1.0))
    return torch.where(signs > 0, 0.0, math.pi)


def _integrate_phase(
    current: torch.Tensor,
    step_time: torch.Tensor,
    continues: torch.Tensor,
    anchor: torch.Tensor,
    offset: torch.Tensor,
    *,
    periodic: bool,
) -> torch.Tensor:
    """Integrate the phase along time: continuing bins step on from their own previous phase,
    the others take their anchor's stepped phase plus their offset from it.

    Frame ``t`` is a map of the previous frame's phase, ``φ_t = φ_{t−1}[src_t] + add_t``
    (``src_t[k]`` is ``k`` for a continuing bin, its anchor otherwise). Maps of that form
    compose into one of the same form, so the maps from the start to every frame come from a
    parallel prefix scan (Hillis-Steele: ``log2(frames)`` rounds of gathers over all frames at
    once) rather than a loop over frames: the same recurrence, as a handful of large operations
    that suit a GPU as well as a CPU. Along a run of continuing frames the scan sums the steps:
    the cumulative sum of the recurrence. The steps are reduced modulo 2π first, so after the
    ``log2(frames)`` doublings every partial sum stays below ``2π · frames`` (about 3,200 rad
    at 512 frames, where float32 resolves 2.4e-4 rad); a loop summing unreduced steps reached
    6e4 rad and rounded to 4e-3 rad per step.

    Args:
        current: ``(batch, bins)`` float32 starting phase in radians (:func:`_initial_phase`).
        step_time: ``(batch, frames, bins)`` float32 phase advance in radians per frame.
        continues: ``(batch, frames, bins)`` bool, the bins that continue their track.
        anchor: ``(batch, frames, bins)`` int64 lobe peak of each bin.
        offset: ``(batch, frames, bins)`` float32 phase in radians relative to the anchor.
        periodic: go round the loop twice: the second pass starts from the first pass's last
            frame, so the first frame continues from the last one as every other frame
            continues from its predecessor.

    Returns:
        ``(batch, frames, bins)`` float32 phase in radians (not reduced to one turn),
        referenced to the window centre.
    """
    batch, frames, bins = step_time.shape
    own = torch.arange(bins, device=step_time.device).expand(batch, frames, bins)
    source = torch.where(continues, own, anchor)
    seeded = step_time.gather(-1, anchor).add_(offset)
    shift = torch.remainder(torch.where(continues, step_time, seeded), 2 * math.pi)
    # Round d: frame t's map becomes (its map) ∘ (frame t − d's map), so after the round it
    # maps frame t − 2d's phase (or the start's) to frame t's. Two buffers, swapped.
    next_source, next_shift = torch.empty_like(source), torch.empty_like(shift)
    span = 1
    while span < frames:
        next_source[:, :span] = source[:, :span]
        next_shift[:, :span] = shift[:, :span]
        later = source[:, span:]
        torch.gather(source[:, :-span], -1, later, out=next_source[:, span:])
        torch.gather(shift[:, :-span], -1, later, out=next_shift[:, span:])
        next_shift[:, span:] += shift[:, span:]
        source, next_source = next_source, source
        shift, next_shift = next_shift, shift
        span *= 2
    phase = current[:, None].expand(batch, frames, bins).gather(-1, source).add_(shift)
    if periodic:
        phase = phase[:, -1:].expand(batch, frames, bins).gather(-1, source).add_(shift)
    return phase


@contextlib.contextmanager
def _single_intra_op_thread() -> Iterator[None]:
    """Run the block with one intra-op thread in the calling thread, then restore its count.

    The fast inverse is hundreds of small operations (Griffin-Lim iterations on ~500 × 1000
    bins, each a dozen operations; until issue 25 also a loop over frames for the phase). Split
    over several OpenMP threads, every one of them ends in a barrier; when other processes keep
    the cores busy, each barrier waits for a descheduled thread's next time slice, and the
    decode slowed down 15–60x under two CPU-bound processes (one thread: no barrier, and
    1.0–1.3x at the time; docs/performance.md has today's loaded/idle ratios).

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


def _centred_signs(
    magnitudes: torch.Tensor, peaks: torch.Tensor, drawn: torch.Tensor
) -> torch.Tensor:
    """Signs for the lobes of a real spectrum that keep its centre sample small.

    The centre sample of the frame is ``Σ_k c_k · sign_k · |X_k|`` (``c_0 = 1``, ``c_k = 2``
    for the other one-sided bins), so each lobe weighs its bins' summed magnitudes. Lobes at
    least :data:`SIGN_CHOICE_SHARE` times the heaviest one's weight take, heaviest first, the
    sign that brings the running sum closer to zero (ties keep the drawn sign); the others keep
    ``drawn``. The partial sum of the chosen lobes is then at most the heaviest lobe's weight.

    Args:
        magnitudes: ``(batch, bins)`` non-negative magnitudes of the frame.
        peaks: ``(batch, bins)`` int64 index of each bin's lobe peak (:func:`_lobe_peaks`).
        drawn: ``(bins,)`` float32 random signs (+1 or −1).

    Returns:
        ``(batch, bins)`` float32 signs; entry ``k`` is the sign of the lobe whose peak is
        ``k`` (entries of bins that are not peaks are ``drawn``'s, and unused).
    """
    weights = 2 * magnitudes
    weights[:, 0] = magnitudes[:, 0]
    mass = torch.zeros_like(magnitudes).scatter_add_(-1, peaks, weights)
    signs = drawn.expand_as(magnitudes).clone()
    for item in range(magnitudes.shape[0]):
        order = torch.argsort(mass[item], descending=True, stable=True)
        heaviest = float(mass[item, order[0]])
        running = 0.0
        for lobe, weight in zip(order.tolist(), mass[item, order].tolist(), strict=True):
            if weight <= 0 or weight < SIGN_CHOICE_SHARE * heaviest:
                break
            sign = float(signs[item, lobe])
            if abs(running + sign * weight) > abs(running - sign * weight):
                sign = -sign
                signs[item, lobe] = sign
            running += sign * weight
    return signs


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
        # In place on fresh buffers: each pass over ~500 x 2000 samples allocates nothing.
        frames = torch.fft.irfft(spectrum, n=self.fft_size)[..., : self.win].mul_(self.window)
        buffer = self._overlap_add(frames)
        envelope = self._inverse_envelope(count, length, periodic)
        return self._place(buffer, length, periodic).mul_(envelope)

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
        mel: tuple[_MelBands, torch.Tensor, int] | None = None,
    ) -> torch.Tensor:
        """Fast Griffin-Lim (Perraudin, Balazs & Søndergaard 2013) on this grid.

        Args:
            magnitudes: ``(batch, T, bins)`` target magnitudes.
            spectrum: ``(batch, T, bins)`` complex start, with those magnitudes.
            iterations: projections; momentum: the fast Griffin-Lim momentum in ``[0, 1)``.
            length: samples of the signal on this grid (default ``T · hop``).
            periodic: treat the signal as one period of a loop (circular framing).
            mel: ``(bands, mel_t, start)``: from iteration ``start`` on, project onto the mel
                magnitudes ``mel_t`` (``(batch, T, n_mels)``) through ``bands``
                (:meth:`_MelBands.project`) instead of onto ``magnitudes``.

        Returns:
            the refined complex spectrum (magnitudes ``magnitudes``, or with ``mel`` whose mel
            magnitudes approach ``mel_t``; recovered phase).
        """
        count = magnitudes.shape[-2]
        alpha = momentum / (1 + momentum)
        previous: torch.Tensor | None = None
        for iteration in range(iterations):
            waveform = self.synthesize(spectrum, length=length, periodic=periodic)
            rebuilt = self.analyze(waveform, count, periodic=periodic)
            if previous is None:
                target = rebuilt.clone()
            else:  # rebuilt − α · previous, written over the previous iterate (no allocation)
                target = torch.add(rebuilt, previous, alpha=-alpha, out=previous)
            previous = rebuilt
            if mel is not None and iteration >= mel[2]:
                spectrum = mel[0].project_(target, mel[1])
            else:
                spectrum = _set_magnitudes_(target, magnitudes)
        return spectrum


def _with_magnitudes(spectrum: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
    """``spectrum · magnitudes / |spectrum|``: the phase of ``spectrum`` with ``magnitudes``
    (a new tensor; :func:`_set_magnitudes_` writes over ``spectrum``)."""
    return _set_magnitudes_(spectrum.clone(), magnitudes)


def _set_magnitudes_(spectrum: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
    """Give ``spectrum`` (complex, contiguous) ``magnitudes`` in place, keeping its phase;
    returns it.

    Uses ``rsqrt(re² + im²)`` rather than the complex ``abs`` (a careful, slow ``hypot``); bins
    with zero energy keep magnitude zero. One temporary, the size of ``magnitudes``."""
    parts = torch.view_as_real(spectrum)
    real, imaginary = parts[..., 0], parts[..., 1]
    gain = real.square().addcmul_(imaginary, imaginary).clamp_min_(1e-30).rsqrt_()
    return spectrum.mul_(gain.mul_(magnitudes))


class _MelBands:
    """A mel filterbank on one DFT grid as two sparse matrices (triangular bands overlap
    pairwise: two nonzeros per bin), so that mapping magnitudes to bands and back costs about a
    millisecond instead of two dense products (~500 × 2000 × 512 each, ~10 ms on one core).

    :meth:`project_` is the magnitude step of the fine Griffin-Lim iterations once they have a
    phase: instead of imposing the minimum-norm linear magnitudes (a smooth estimate that
    blurs harmonics the mel bands cannot resolve), it rescales each bin of the current spectrum
    by the weighted mean, over the bands that hold the bin, of (target mel / current mel). What
    the iterate knows beyond the mel bands (sharp partials consistent with its neighbours)
    stays; what the image fixes (each band's magnitude) is matched. Over the decode bench's
    images this gave a lower spectral convergence in 8 fine iterations than the fixed target in
    12 (issue 25; docs/performance.md).
    """

    #: A band's current magnitude is floored at this share of the item's largest target value
    #: (silent bands do not divide by zero), and a bin is scaled by at most this much per step.
    FLOOR = 1e-6
    MAX_GAIN = 4.0

    def __init__(self, filterbank: torch.Tensor, device: torch.device) -> None:
        """``filterbank``: ``(bins, n_mels)`` non-negative weights on this grid's bins, scaled
        so that ``magnitudes @ filterbank`` is the image's mel magnitudes."""
        weights = filterbank.to(torch.float32)
        coverage = weights.sum(dim=1, keepdim=True)
        # Each bin's weighted mean over its bands; bins in no band keep their magnitude.
        spread = torch.where(coverage > 0, weights / coverage.clamp_min(1e-30), 0.0)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": matmul is all we use
            warnings.simplefilter("ignore", UserWarning)
            self.to_bands = weights.T.contiguous().to_sparse_csr().to(device)  # (n_mels, bins)
            self.to_bins = spread.to_sparse_csr().to(device)  # (bins, n_mels)
        self.uncovered = (coverage[:, 0] <= 0).to(device=device, dtype=torch.float32)

    def to_mel(self, magnitudes: torch.Tensor) -> torch.Tensor:
        """``(batch, T, bins)`` → ``(batch, T, n_mels)``: ``magnitudes @ filterbank``."""
        return torch.stack([(self.to_bands @ item.T).T for item in magnitudes])

    def spread(self, per_band: torch.Tensor) -> torch.Tensor:
        """``(batch, T, n_mels)`` → ``(batch, T, bins)``: each bin's weighted mean of the values
        of its bands (1 for a bin in no band)."""
        spread = torch.stack([(self.to_bins @ item.T).T for item in per_band])
        return spread.add_(self.uncovered)

    def project_(self, spectrum: torch.Tensor, mel_t: torch.Tensor) -> torch.Tensor:
        """Scale ``spectrum`` (``(batch, T, bins)`` complex, contiguous) in place towards the
        mel magnitudes ``mel_t`` (``(batch, T, n_mels)``); returns it."""
        parts = torch.view_as_real(spectrum)
        magnitudes = parts[..., 0].square().addcmul_(parts[..., 1], parts[..., 1]).sqrt_()
        floor = mel_t.amax(dim=(-2, -1), keepdim=True) * self.FLOOR
        ratio = mel_t / torch.maximum(self.to_mel(magnitudes), floor)
        return spectrum.mul_(self.spread(ratio.clamp_max_(self.MAX_GAIN)))


class _InverseOperators:
    """What the fast inverse computes once per converter."""

    def __init__(
        self,
        mel_to_linear: torch.Tensor,
        bin_hz: float,
        centre_shift: torch.Tensor,
        internal: _FrameGrid,
        output: _FrameGrid,
        bands: _MelBands,
    ) -> None:
        self.mel_to_linear = mel_to_linear  # (n_mels, bins)
        self.bin_hz = bin_hz
        self.centre_shift = centre_shift  # (bins,)
        self.internal = internal
        self.output = output
        self.bands = bands

    @classmethod
    def build(
        cls,
        params: SpectrogramParams,
        band: torch.Tensor,
        zoom: int,
        device: torch.device,
        *,
        internal_hop: int | None = None,
    ) -> _InverseOperators:
        """The operators on the grid that keeps every ``zoom``-th bin of the ``n_fft`` grid.

        ``internal_hop``: the hop of the reduced-rate grid, in its samples (default: that of
        the lowest rate whose Nyquist bin holds the mel range). The fine grid takes the coarse
        grid's, so both run at one rate and hand a signal over as is; with a bin spacing half
        the coarse grid's its rate is high enough too.
        """
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
        # (When no 5-smooth size up to ``common`` is large enough this is ``common``: the full
        # rate.)
        if internal_hop is None:
            scale = _smooth_at_least(-(-2 * bins // per_unit), common)
        else:
            scale = internal_hop * common // hop
        internal = _FrameGrid(
            scale * per_unit, scale * win // common, scale * hop // common, bins, device
        )
        output = _FrameGrid(grid, win, hop, bins, device)
        shift = math.pi * torch.arange(bins, dtype=torch.float64) * win / grid
        # This grid samples every zoom-th bin of the n_fft grid the mel bands sum over.
        bands = _MelBands(band[::zoom][:bins].double() * zoom, device)
        return cls(
            mel_to_linear.to(device=device, dtype=torch.float32),
            params.sample_rate / grid,
            shift.to(device=device, dtype=torch.float32),
            internal,
            output,
            bands,
        )


def reference_mel_to_waveform(
    mel: torch.Tensor,
    params: SpectrogramParams,
    *,
    num_iterations: int = DEFAULT_ITERATIONS,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Riffusion's decoder: torchaudio ``InverseMelScale`` (least squares), then ``GriffinLim``
    (momentum 0.99, random initial phase drawn from ``seed``).

    Args:
        mel: ``(..., n_mels, frames)`` float32 non-negative mel magnitudes on ``device``.
        params: the spectrogram parameters the magnitudes were made with.
        num_iterations: Griffin-Lim iterations, an int >= 1.
        seed: seed of the random initial phase.
        device: where the transforms run (``mel``'s device).

    Returns:
        ``(..., params.samples_for_width(frames))`` float32 waveform on ``device``.
    """
    device = torch.device(device)
    inverse_mel = torchaudio.transforms.InverseMelScale(
        n_stft=params.n_fft // 2 + 1,
        n_mels=params.num_frequencies,
        sample_rate=params.sample_rate,
        f_min=float(params.min_frequency_hz),
        f_max=float(params.max_frequency_hz),
        norm=params.mel_scale_norm,
        mel_scale=params.mel_scale_type,
    ).to(device)
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
    ).to(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        linear = inverse_mel(mel)
        waveform = griffin_lim(linear)
    # Riffusion's output has (frames - 1) * hop samples; pad or cut to the library's frame
    # convention so that lengths agree across methods.
    missing = params.samples_for_width(mel.shape[-1]) - waveform.shape[-1]
    return torch.nn.functional.pad(waveform, (0, missing))


def griffin_lim(
    magnitudes: torch.Tensor,
    *,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    num_iterations: int = DEFAULT_ITERATIONS,
    momentum: float = 0.99,
    length: int | None = None,
    periodic: bool = False,
    init: str = "gradient",
    seed: int = 0,
) -> torch.Tensor:
    """Waveform whose STFT magnitudes approximate ``magnitudes`` (fast Griffin-Lim).

    Like :func:`torchaudio.functional.griffinlim` (Hann window, centred frames), with the phase
    initialised from the magnitudes (:func:`gradient_phase`) instead of at random, a
    least-squares overlap-add at the edges, and a circular mode for loops.

    Args:
        magnitudes: ``(..., n_fft // 2 + 1, frames)`` non-negative float linear magnitudes
            (not power).
        n_fft: DFT size in samples.
        hop_length: samples between frames.
        win_length: Hann window length in samples, <= ``n_fft`` (default ``n_fft``).
        num_iterations: Griffin-Lim iterations, an int >= 0 (0 returns the initial estimate).
        momentum: fast Griffin-Lim momentum in ``[0, 1)`` (0 is the classic algorithm).
        length: samples of the output, at least ``(frames − 1) · hop_length`` (default:
            that, or ``frames · hop_length`` when ``periodic``).
        periodic: treat the magnitudes as one period of a loop (frames wrap around the ends).
        init: initial phase: ``"gradient"`` (phase-gradient integration) or ``"random"``
            (uniform, drawn from ``seed``).
        seed: seed of the initial phase (integration constants or the random draw).

    Returns:
        ``(..., length)`` float32 waveform on ``magnitudes``' device.

    Example:
        >>> import torch
        >>> n_fft, hop = 512, 128
        >>> tone = torch.sin(2 * torch.pi * 1000 * torch.arange(8000) / 16000)
        >>> spec = torch.stft(tone, n_fft, hop, window=torch.hann_window(n_fft),
        ...                   return_complex=True).abs()
        >>> griffin_lim(spec, n_fft=n_fft, hop_length=hop).shape
        torch.Size([7936])
    """
    win_length = n_fft if win_length is None else win_length
    _check_griffin_lim_settings(n_fft, hop_length, win_length, num_iterations, momentum, init)
    length = _check_griffin_lim_magnitudes(
        magnitudes, n_fft=n_fft, hop_length=hop_length, length=length, periodic=periodic
    )
    bins = n_fft // 2 + 1
    frames = magnitudes.shape[-1]
    leading = magnitudes.shape[:-2]
    target = magnitudes.reshape(-1, bins, frames).transpose(-1, -2).to(torch.float32)
    grid = _FrameGrid(n_fft, win_length, hop_length, bins, target.device)
    spectrum = _griffin_lim_start(
        target, n_fft, hop_length, win_length, init=init, seed=seed, periodic=periodic
    )
    spectrum = grid.griffin_lim(
        target, spectrum, num_iterations, momentum, length=length, periodic=periodic
    )
    waveform = grid.synthesize(spectrum, length=length, periodic=periodic)
    return waveform.reshape(*leading, length)


def _check_griffin_lim_settings(
    n_fft: int,
    hop_length: int,
    win_length: int,
    num_iterations: int,
    momentum: float,
    init: str,
) -> None:
    """Refuse :func:`griffin_lim` settings out of range (``win_length`` already defaulted).

    Args:
        n_fft: DFT size in samples. hop_length: samples between frames.
        win_length: Hann window length in samples. num_iterations: Griffin-Lim iterations.
        momentum: fast Griffin-Lim momentum. init: ``"gradient"`` or ``"random"``.

    Raises:
        ParameterError: naming the first bad setting, in the order of the arguments above.
    """
    for name, value in (("n_fft", n_fft), ("hop_length", hop_length), ("win_length", win_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParameterError(f"{name}={value!r} must be a positive integer")
    if win_length > n_fft:
        raise ParameterError(f"win_length={win_length} must be at most n_fft={n_fft}")
    if (
        isinstance(num_iterations, bool)
        or not isinstance(num_iterations, int)
        or num_iterations < 0
    ):
        raise ParameterError(f"num_iterations={num_iterations!r} must be an integer >= 0")
    if not isinstance(momentum, int | float) or not 0 <= momentum < 1:
        raise ParameterError(f"momentum={momentum!r} must be a number in [0, 1)")
    if init not in ("gradient", "random"):
        raise ParameterError(f"init={init!r} must be 'gradient' or 'random'")


def _check_griffin_lim_magnitudes(
    magnitudes: torch.Tensor, *, n_fft: int, hop_length: int, length: int | None, periodic: bool
) -> int:
    """Refuse :func:`griffin_lim` magnitudes or an output length that do not fit; the length.

    Args:
        magnitudes: ``(..., n_fft // 2 + 1, frames)`` finite non-negative linear magnitudes.
        n_fft: DFT size in samples. hop_length: samples between frames.
        length: samples of the output, or ``None`` for the default.
        periodic: the magnitudes are one period of a loop (the default length is then
            ``frames · hop_length`` rather than ``(frames − 1) · hop_length``).

    Returns:
        the output length in samples, an int >= ``max(1, (frames − 1) · hop_length)``.

    Raises:
        ParameterError: not a tensor of that shape, non-finite or negative values, or a bad
            ``length``.
    """
    if not isinstance(magnitudes, torch.Tensor) or magnitudes.dim() < 2:
        raise ParameterError("magnitudes must be a tensor of shape (..., n_fft // 2 + 1, frames)")
    bins = n_fft // 2 + 1
    if magnitudes.shape[-2] != bins:
        raise ParameterError(
            f"magnitudes have {magnitudes.shape[-2]} frequency bins; n_fft={n_fft} needs {bins}"
        )
    frames = magnitudes.shape[-1]
    if frames < 1 or not torch.isfinite(magnitudes).all() or (magnitudes < 0).any():
        raise ParameterError("magnitudes must have frames and be finite and non-negative")
    if length is None:
        length = frames * hop_length if periodic else (frames - 1) * hop_length
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ParameterError(f"length={length!r} must be a positive integer")
    if length < (frames - 1) * hop_length:
        raise ParameterError(
            f"length={length} must be at least (frames - 1) * hop_length ="
            f" {(frames - 1) * hop_length} for {frames} frames"
        )
    return length


def _griffin_lim_start(
    target: torch.Tensor,
    n_fft: int,
    hop_length: int,
    win_length: int,
    *,
    init: str,
    seed: int,
    periodic: bool,
) -> torch.Tensor:
    """The initial complex spectrum of :func:`griffin_lim`: ``target`` with a starting phase.

    Args:
        target: ``(batch, frames, n_fft // 2 + 1)`` non-negative float32 linear magnitudes.
        n_fft: DFT size in samples. hop_length: samples between frames.
        win_length: Hann window length in samples.
        init: ``"gradient"`` (:func:`gradient_phase`, with the time unit one sample, shifted
            from the window centre to the window start) or ``"random"`` (uniform in
            ``[0, 2π)`` from a CPU generator seeded with ``seed``).
        seed: seed of the initial phase.
        periodic: the frames are one period of a loop.

    Returns:
        ``(batch, frames, n_fft // 2 + 1)`` complex64 spectrum on ``target``'s device, whose
        phase is referenced to the window start.
    """
    if init == "gradient":
        bins = target.shape[-1]
        phase = gradient_phase(
            target,
            bin_hz=1.0 / n_fft,
            hop_s=float(hop_length),
            window_s=float(win_length),
            seed=seed,
            periodic=periodic,
        )
        # Centre-referenced phase → phase of frames whose window starts at the frame start.
        shift = math.pi * torch.arange(bins, dtype=torch.float32, device=target.device)
        phase = phase - shift * win_length / n_fft
    else:
        generator = torch.Generator().manual_seed(seed)
        phase = (torch.rand(target.shape, generator=generator) * 2 * math.pi).to(target.device)
    return torch.polar(target, phase)
