"""riffusion.phase pinned down value by value (issue 11, part 2: mutation testing).

Hand-computed small cases for the helpers (lobe peaks, smooth sizes, the framing grid's
overlap-add, crop, wrap and window envelope), torch's own STFT/ISTFT as the oracle of the grid's
analysis and synthesis, analytic identities for the phase-gradient integration, golden values
for ``gradient_phase`` and ``griffin_lim`` on tiny inputs, and every input the public functions
refuse (by its type, named value and key phrase). Each test is tiny and fast; see docs/testing.md
for the mutation score.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio

from riffusion import SpectrogramParams
from riffusion.phase import (
    SIGN_CHOICE_SHARE,
    _FrameGrid,
    _integrate_phase,
    _InverseOperators,
    _lobe_peaks,
    _MelBands,
    _single_intra_op_thread,
    _smooth_at_least,
    _with_magnitudes,
    gradient_phase,
    griffin_lim,
    reference_mel_to_waveform,
)
from riffusion.spectrogram import SpectrogramConverter
from tests.errors import assert_refused

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics

CPU = torch.device("cpu")


def _close(actual: torch.Tensor, expected, atol: float = 1e-5) -> None:
    expected = torch.as_tensor(expected, dtype=actual.dtype)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=atol)


def _close_angles(actual: torch.Tensor, expected, atol: float = 1e-5) -> None:
    """Phases equal modulo 2π (gradient_phase returns them unreduced, summed in any order)."""
    expected = torch.as_tensor(expected, dtype=torch.float64)
    turns = torch.remainder(actual.double() - expected + math.pi, 2 * math.pi) - math.pi
    torch.testing.assert_close(turns, torch.zeros_like(turns), rtol=0, atol=atol)


# ----------------------------------------------------------------------------- _lobe_peaks
@pytest.mark.parametrize(
    ("magnitudes", "peaks"),
    [
        # valley at 3 (0 < 2 and 0 <= 5); the second lobe's peak is the first of the two 5s
        ([1.0, 3.0, 2.0, 0.0, 5.0, 5.0, 1.0], [1, 1, 1, 4, 4, 4, 4]),
        # a flat valley: only its first bin is a minimum (strict on the left, not the right)
        ([3.0, 1.0, 1.0, 3.0], [0, 3, 3, 3]),
        # three bins: the middle one is a valley
        ([0.25, 0.125, 0.5], [0, 2, 2]),
        # two bins: no interior, one lobe
        ([0.25, 0.5], [1, 1]),
        # all quiet (below 1): every lobe still finds its peak
        ([0.5, 0.25, 0.375, 0.125, 0.0625], [0, 2, 2, 2, 2]),
        # all equal: one lobe, the lowest index wins
        ([0.0, 0.0, 0.0], [0, 0, 0]),
    ],
)
def test_lobe_peaks_hand_computed(magnitudes, peaks):
    result = _lobe_peaks(torch.tensor([magnitudes]))
    assert result.dtype == torch.int64
    assert result.tolist() == [peaks]


def test_lobe_peaks_rows_are_independent():
    rows = torch.tensor([[1.0, 3.0, 2.0, 0.0, 5.0], [4.0, 1.0, 2.0, 3.0, 0.5]])
    assert _lobe_peaks(rows).tolist() == [[1, 1, 1, 4, 4], [0, 3, 3, 3, 3]]


# ------------------------------------------------------------------------ _smooth_at_least
@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        (0, 10, 1),
        (1, 10, 1),
        (7, 100, 8),
        (11, 100, 12),
        (13, 100, 15),
        (14, 100, 15),
        (23, 100, 24),
        (25, 100, 25),
        (26, 100, 27),
        (31, 100, 32),
        (49, 100, 50),
        (201, 441, 216),
        (13, 14, 14),  # none of 13, 14 is 5-smooth: the limit
        (16, 17, 16),  # the answer just below the limit
        (3**40, 3**40 + 1, 3**40),  # exact integer arithmetic beyond float precision
        (11, 11, 11),
        (12, 11, 11),  # empty range: the limit
    ],
)
def test_smooth_at_least(value, limit, expected):
    assert _smooth_at_least(value, limit) == expected


# ------------------------------------------------------------------------------ _FrameGrid
def test_overlap_add_when_the_hop_divides_the_window():
    grid = _FrameGrid(4, 4, 2, 3, CPU)
    frames = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]]])
    assert grid._overlap_add(frames).tolist() == [[1.0, 2.0, 13.0, 24.0, 30.0, 40.0]]
    three = torch.arange(1.0, 13.0).reshape(1, 3, 4)
    # [1 2 3 4] + [5 6 7 8] at 2 + [9 10 11 12] at 4
    assert grid._overlap_add(three).tolist() == [[1.0, 2.0, 8.0, 10.0, 16.0, 18.0, 11.0, 12.0]]


def test_overlap_add_when_it_does_not():
    grid = _FrameGrid(4, 3, 2, 3, CPU)
    frames = torch.tensor([[[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]], [[1.0, 1.0, 1.0]] * 2])
    assert grid._overlap_add(frames).tolist() == [
        [1.0, 2.0, 13.0, 20.0, 30.0],
        [1.0, 1.0, 2.0, 1.0, 1.0],
    ]


def test_crop_starts_half_a_window_in_and_pads_with_zeros():
    grid = _FrameGrid(4, 4, 2, 3, CPU)
    buffer = torch.arange(1.0, 7.0)[None]
    assert grid._crop(buffer, 3).tolist() == [[3.0, 4.0, 5.0]]
    assert grid._crop(buffer, 4).tolist() == [[3.0, 4.0, 5.0, 6.0]]
    assert grid._crop(buffer, 6).tolist() == [[3.0, 4.0, 5.0, 6.0, 0.0, 0.0]]
    assert grid._place(buffer, 5, False).tolist() == [[3.0, 4.0, 5.0, 6.0, 0.0]]
    # padding depends on the samples, not on how many rows there are
    rows = torch.arange(1.0, 7.0).expand(8, 6)
    assert torch.equal(grid._crop(rows, 6), torch.tensor([[3.0, 4.0, 5.0, 6.0, 0.0, 0.0]] * 8))


def test_wrap_folds_onto_the_circle():
    grid = _FrameGrid(4, 4, 2, 3, CPU)
    buffer = torch.arange(1.0, 7.0)[None]
    # sample j goes to (j - 2) mod 3: [3 + 6, 1 + 4, 2 + 5]
    assert grid._wrap(buffer, 3).tolist() == [[9.0, 5.0, 7.0]]
    # (j - 2) mod 4: [3, 4, 1 + 5, 2 + 6]
    assert grid._wrap(buffer, 4).tolist() == [[3.0, 4.0, 6.0, 8.0]]
    assert grid._place(buffer, 4, True).tolist() == [[3.0, 4.0, 6.0, 8.0]]
    odd = _FrameGrid(4, 3, 1, 3, CPU)  # win // 2 = 1: sample j goes to (j - 1) mod 5
    assert odd._wrap(torch.arange(1.0, 6.0)[None], 5).tolist() == [[2.0, 3.0, 4.0, 5.0, 1.0]]


def test_inverse_envelope_hand_computed():
    grid = _FrameGrid(4, 4, 2, 3, CPU)
    # hann(4) = [0, .5, 1, .5]; squares [0, .25, 1, .25]; three frames at hop 2 overlap-add to
    # [0, .25, 1, .5, 1, .5, 1, .25]; cropped from 2: [1, .5, 1, .5, 1, .25].
    _close(grid._inverse_envelope(3, 6, False), [1.0, 2.0, 1.0, 2.0, 1.0, 4.0])
    # one frame cropped to 4 samples: [1, .25, 0, 0]; no energy → 0, not infinity
    _close(grid._inverse_envelope(1, 4, False), [1.0, 4.0, 0.0, 0.0])
    # circular: [0, .25, 1, .5, 1, .5, 1, .25] at (j - 2) mod 6
    _close(grid._inverse_envelope(3, 6, True), [1.0, 2.0, 1.0, 2.0, 1.0, 2.0])
    # the cache holds one key and gives the right one back after a change
    _close(grid._inverse_envelope(3, 6, False), [1.0, 2.0, 1.0, 2.0, 1.0, 4.0])
    assert list(grid._inverse_envelopes) == [(3, 6, False)]


def test_inverse_envelope_zeroes_only_the_negligible_samples():
    grid = _FrameGrid(8, 8, 8, 5, CPU)  # no overlap: hann² alone, with its zero and tiny ends
    envelope = torch.hann_window(8) ** 2
    inverse = grid._inverse_envelope(2, 16, True)
    expected = torch.where(envelope > 1e-6, 1 / envelope, 0.0).roll(-4).repeat(2)
    _close(inverse, expected)


def _stft(waveform: torch.Tensor, win: int, hop: int, mode: str = "reflect") -> torch.Tensor:
    window = torch.hann_window(win)
    spectrum = torch.stft(
        waveform, win, hop, window=window, center=True, pad_mode=mode, return_complex=True
    )
    return spectrum.transpose(-1, -2)


def test_analyze_is_torch_stft():
    grid = _FrameGrid(8, 8, 2, 5, CPU)
    waveform = torch.sin(torch.arange(20.0) * 0.7)[None] + 0.1 * torch.arange(20.0)[None]
    _close(grid.analyze(waveform, 11), _stft(waveform, 8, 2), atol=1e-5)
    _close(grid.analyze(waveform, 7), _stft(waveform, 8, 2)[:, :7], atol=1e-5)
    # shorter than half a window: zero padding (reflection needs more samples)
    short = torch.tensor([[1.0, -2.0, 3.0, 0.5]])
    _close(grid.analyze(short, 3), _stft(short, 8, 2, mode="constant"), atol=1e-6)
    # only the first `bins` bins are kept
    narrow = _FrameGrid(8, 8, 2, 3, CPU)
    _close(narrow.analyze(waveform, 11), _stft(waveform, 8, 2)[..., :3], atol=1e-5)


def test_analyze_periodic_pads_circularly():
    grid = _FrameGrid(8, 8, 2, 5, CPU)
    waveform = torch.cos(torch.arange(12.0) * 1.3)[None]
    looped = torch.cat([waveform[:, -4:], waveform, waveform[:, :4]], dim=-1)
    expected = torch.stft(
        looped, 8, 2, window=torch.hann_window(8), center=False, return_complex=True
    ).transpose(-1, -2)
    _close(grid.analyze(waveform, 6, periodic=True), expected[:, :6], atol=1e-5)


def _random_spectrum(batch: int, frames: int, bins: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    parts = torch.randn(batch, frames, bins, 2, generator=generator)
    return torch.view_as_complex(parts)


def test_synthesize_is_torch_istft():
    grid = _FrameGrid(8, 8, 2, 5, CPU)
    spectrum = _random_spectrum(2, 6, 5)
    window = torch.hann_window(8)
    for length in (None, 10, 9):
        expected = torch.istft(
            spectrum.transpose(-1, -2), 8, 2, window=window, center=True, length=length or 12
        )
        _close(grid.synthesize(spectrum, length=length), expected, atol=1e-5)


def _circular_synthesis(spectrum, fft_size, win, hop, length):
    window = torch.hann_window(win, dtype=torch.float64)
    frames = torch.fft.irfft(spectrum.to(torch.complex128), n=fft_size)[..., :win] * window
    out = torch.zeros(spectrum.shape[0], length, dtype=torch.float64)
    envelope = torch.zeros(length, dtype=torch.float64)
    for t in range(spectrum.shape[-2]):
        for n in range(win):
            at = (t * hop + n - win // 2) % length
            out[:, at] += frames[:, t, n]
            envelope[at] += window[n] ** 2
    return (out / envelope).float()


def test_synthesize_periodic_is_circular_overlap_add():
    grid = _FrameGrid(12, 8, 2, 7, CPU)  # a DFT longer than the window (zero padding)
    spectrum = _random_spectrum(2, 5, 7, seed=1)
    _close(
        grid.synthesize(spectrum, periodic=True),
        _circular_synthesis(spectrum, 12, 8, 2, 10),
        atol=1e-5,
    )


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize(("fft_size", "win", "hop"), [(8, 8, 2), (12, 8, 2), (9, 6, 3)])
def test_analysis_then_synthesis_is_the_identity(fft_size, win, hop, periodic):
    grid = _FrameGrid(fft_size, win, hop, fft_size // 2 + 1, CPU)
    waveform = torch.randn(2, 8 * hop, generator=torch.Generator().manual_seed(fft_size))
    spectrum = grid.analyze(waveform, 8, periodic=periodic)
    _close(grid.synthesize(spectrum, length=8 * hop, periodic=periodic), waveform, atol=1e-5)


def _reference_fast_griffin_lim(magnitudes, spectrum, iterations, momentum, win, hop, length):
    """The textbook loop with torch.istft/torch.stft: the oracle of _FrameGrid.griffin_lim."""
    window = torch.hann_window(win)
    previous = None
    for _ in range(iterations):
        waveform = torch.istft(
            spectrum.transpose(-1, -2), win, hop, window=window, center=True, length=length
        )
        rebuilt = _stft(waveform, win, hop)
        target = rebuilt if previous is None else rebuilt - previous * momentum / (1 + momentum)
        previous = rebuilt
        spectrum = magnitudes * target / target.abs().clamp_min(1e-15)
    return spectrum


@pytest.mark.parametrize(("iterations", "momentum"), [(0, 0.5), (1, 0.5), (3, 0.0), (3, 0.5)])
def test_grid_griffin_lim_is_the_fast_griffin_lim_loop(iterations, momentum):
    grid = _FrameGrid(8, 8, 2, 5, CPU)
    start = _random_spectrum(1, 6, 5, seed=2)
    magnitudes = start.abs() + 0.5
    start = _with_magnitudes(start, magnitudes)
    ours = grid.griffin_lim(magnitudes, start, iterations, momentum, length=10)
    expected = _reference_fast_griffin_lim(magnitudes, start, iterations, momentum, 8, 2, 10)
    _close(ours, expected, atol=1e-4)
    _close(ours.abs(), magnitudes, atol=1e-5)


def test_grid_griffin_lim_periodic_uses_circular_framing():
    grid = _FrameGrid(8, 8, 2, 5, CPU)
    start = _random_spectrum(1, 6, 5, seed=3)
    magnitudes = start.abs()
    ours = grid.griffin_lim(magnitudes, start, 1, 0.5, periodic=True)
    waveform = _circular_synthesis(start, 8, 8, 2, 12)
    expected = _with_magnitudes(grid.analyze(waveform, 6, periodic=True), magnitudes)
    _close(ours, expected, atol=1e-5)


def test_with_magnitudes_hand_computed():
    spectrum = torch.tensor([3 + 4j, 0j, -1j, 0.3 + 0.4j, -0.6 + 0.8j], dtype=torch.complex64)
    magnitudes = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.5])
    result = _with_magnitudes(spectrum, magnitudes)
    _close(torch.view_as_real(result), [[6, 8], [0, 0], [0, -2], [0.6, 0.8], [-0.3, 0.4]])


# -------------------------------------------------------------------------- gradient_phase
def _start_phases(bins: int, seed: int, *, periodic: bool = False) -> torch.Tensor:
    """The integration constants: uniform for a loop, 0 or π for a one-shot clip."""
    uniform = torch.rand(bins, generator=torch.Generator().manual_seed(seed))
    return uniform * (2 * math.pi) if periodic else torch.where(uniform < 0.5, 0.0, math.pi)


def test_a_flat_stationary_spectrum_advances_every_bin_at_its_frequency():
    # Constant magnitudes: no gradient; the first frame is one lobe whose peak is bin 0, so
    # every bin starts at bin 0's constant; then bin k advances 2π · k · bin_hz · hop a frame.
    bins, frames, bin_hz, hop_s = 6, 4, 0.125, 2.0
    magnitudes = torch.full((1, frames, bins), 0.5)
    phase = gradient_phase(magnitudes, bin_hz=bin_hz, hop_s=hop_s, window_s=8.0, seed=5)
    advance = 2 * math.pi * bin_hz * hop_s * torch.arange(bins)
    expected = _start_phases(bins, 5)[0] + torch.arange(frames)[:, None] * advance
    _close_angles(phase[0], expected, atol=1e-5)


def test_a_flat_stationary_loop_goes_round_twice_from_the_integration_constants():
    # Periodic: every bin continues from the last frame (no onset), and the second pass
    # starts where the first ended: frame t is (frames + t + 1) steps from the constants.
    bins, frames, bin_hz, hop_s = 5, 3, 0.125, 1.0
    magnitudes = torch.full((2, frames, bins), 0.25)
    phase = gradient_phase(
        magnitudes, bin_hz=bin_hz, hop_s=hop_s, window_s=8.0, seed=2, periodic=True
    )
    advance = 2 * math.pi * bin_hz * hop_s * torch.arange(bins)
    steps = frames + 1 + torch.arange(frames)[:, None]
    expected = _start_phases(bins, 2, periodic=True) + steps * advance
    _close_angles(phase[0], expected, atol=1e-5)
    _close_angles(phase[1], expected, atol=1e-5)


def test_default_seed_and_determinism():
    magnitudes = _golden_magnitudes()
    kwargs = {"bin_hz": 1 / 12, "hop_s": 3.0, "window_s": 12.0}
    default = gradient_phase(magnitudes, **kwargs)
    assert torch.equal(default, gradient_phase(magnitudes, seed=0, tolerance=1e-4, **kwargs))
    # every lobe of these first frames is heavy enough to have its sign chosen, so only the
    # heaviest lobe's drawn sign matters: seeds 0 and 1 draw the same one, seed 2 the other
    assert torch.equal(default, gradient_phase(magnitudes, seed=1, **kwargs))
    assert not torch.equal(default, gradient_phase(magnitudes, seed=2, **kwargs))
    # a loop draws every constant uniformly: there seeds 0 and 1 differ
    looped = gradient_phase(magnitudes, periodic=True, **kwargs)
    assert torch.equal(looped, gradient_phase(magnitudes, seed=0, periodic=True, **kwargs))
    assert not torch.equal(looped, gradient_phase(magnitudes, seed=1, periodic=True, **kwargs))
    # a batch decodes like its items (the same integration constants for every item)
    single = gradient_phase(magnitudes[1:], **kwargs)
    _close(default[1:], single, atol=1e-6)
    # each item's own peak sets its floor and its quiet threshold: a quiet item next to a loud
    # one gets the phase it gets alone
    quiet = magnitudes[1:] * 1e-3
    together = gradient_phase(torch.cat([magnitudes[:1], quiet]), **kwargs)
    _close(together[1:], gradient_phase(quiet, **kwargs), atol=1e-6)


def test_tolerance_is_relative_to_the_peak_and_exclusive():
    kwargs = {"bin_hz": 0.25, "hop_s": 1.0, "window_s": 4.0, "seed": 3}

    def phase(magnitudes, tolerance):
        return gradient_phase(magnitudes, tolerance=tolerance, **kwargs)

    # peak 1: a bin at exactly tolerance × peak is quiet (seeded from its lobe's peak, bin 2),
    # as with a larger tolerance, unlike with a smaller one
    at_threshold = torch.tensor([[[1.0, 1e-4, 0.5], [1.0, 1e-4, 0.5]]])
    quiet = phase(at_threshold, 1e-4)
    assert torch.equal(quiet, phase(at_threshold, 2e-4))
    assert not torch.equal(quiet, phase(at_threshold, 0.5e-4))
    # peak 0.5: 1e-4 is above 1e-4 × 0.5, so loud (it continues its track)
    above = torch.tensor([[[0.5, 1e-4, 0.25], [0.5, 1e-4, 0.25]]])
    loud = gradient_phase(above, **kwargs)
    assert torch.equal(loud, phase(above, 1e-5))
    assert not torch.equal(loud, phase(above, 1e-3))


def _golden_magnitudes() -> torch.Tensor:
    """(2, 5, 7) magnitudes: peak 0.8 (< 1), exact zeros, a quiet bin (1e-6 < 1e-4 · peak) and
    a bin exactly twice as loud as in the frame before (0.2 → 0.4)."""
    k = torch.arange(2 * 5 * 7, dtype=torch.float64).reshape(2, 5, 7)
    magnitudes = ((k * 7 + 3) % 11) / 12.5
    magnitudes[0, 0, 2], magnitudes[0, 1, 2] = 0.2, 0.4
    magnitudes[1, 2, 4] = 1e-6
    return magnitudes.float()


GOLDEN_ONE_SHOT = [
    [3.14159, 3.14159, 3.14159, 0, 0, 0, 0],
    [3.14159, 4.55341, 6.02733, 4.90007, 6.59342, 7.48742, 12.8591],
    [3.14159, 6.23297, 8.76982, 9.60251, 13.3014, 9.95303, 13.5062],
    [3.14159, 8.11401, 11.5448, 16.9166, 20.0213, 12.473, 6.64182],
    [3.14159, 10.1096, 9.29807, 20.8161, 31.7215, 20.6372, 16.0666],
    [0, 3.14159, 3.14159, 3.14159, 0, 0, 0],
    [9.90495, 10.1295, 6.59342, 7.48742, 10.4399, 8.29066, 9.42478],
    [9.90495, 17.1331, 10.1598, 9.11049, 19.0381, 19.2627, 18.8496],
    [9.90495, 15.2767, 13.7381, 10.788, 7.37597, 30.2504, 28.2743],
    [9.90495, 11.3913, 22.2967, 15.8106, 13.2926, 12.0181, 37.6991],
]
GOLDEN_PERIODIC = [
    [12.3011, 11.9455, 4.68254, 62.4297, 56.8335, 38.1188, 35.5675],
    [12.3011, 13.3574, 7.56827, 67.3298, 63.4269, 45.6062, 50.9779],
    [12.3011, 15.0369, 10.3108, 72.0322, 70.1349, 48.0718, 70.3397],
    [12.3011, 16.918, 13.0858, 18.4575, 76.8548, 50.5918, 44.7606],
    [12.3011, 18.9135, 10.839, 88.659, 88.555, 58.7561, 54.1854],
    [25.1847, 46.2596, 40.6634, 25.324, 25.1088, 26.2212, 57.8498],
    [53.023, 53.2475, 44.1152, 29.6698, 32.6223, 34.5119, 67.2746],
    [53.023, 60.2511, 47.6816, 31.2929, 45.2594, 45.4839, 76.6994],
    [53.023, 58.3947, 51.2599, 32.9704, 29.5584, 56.4716, 86.1242],
    [53.023, 59.9225, 59.8186, 37.993, 35.475, 35.3545, 95.5489],
]


def test_gradient_phase_two_frames_golden_values():
    # two frames: the time derivative is zero at the first (the reflect-padded frame is even
    # about its centre: one lobe, every bin at the constant 0) and one-sided at the last
    magnitudes = torch.tensor([[[0.25, 0.5, 0.125, 0.0], [0.5, 0.25, 0.0, 0.0625]]])
    phase = gradient_phase(magnitudes, bin_hz=0.25, hop_s=1.0, window_s=4.0, seed=1)
    expected = [
        [0.0, 0.0, 0.0, 0.0],
        [0.0, -4.209814, 4.356874, 4.712389],
    ]
    _close_angles(phase[0], expected, atol=1e-5)


@pytest.mark.parametrize(
    ("periodic", "golden"), [(False, GOLDEN_ONE_SHOT), (True, GOLDEN_PERIODIC)]
)
def test_gradient_phase_golden_values(periodic, golden):
    phase = gradient_phase(
        _golden_magnitudes(), bin_hz=1 / 12, hop_s=3.0, window_s=12.0, seed=7, periodic=periodic
    )
    assert phase.dtype == torch.float32 and phase.shape == (2, 5, 7)
    _close_angles(phase.reshape(10, 7), golden, atol=1e-4)


# Three lobes in one frame: weights (2 · summed magnitudes) 2.0, 0.6 and 0.1; the last is under
# SIGN_CHOICE_SHARE of the heaviest (though not of the second). Drawn signs (seed → bins 1, 4,
# 7; + is phase 0): seed 3 → +, +, −; seed 0 → −, +, −; seed 8 → −, −, +.
@pytest.mark.parametrize(
    ("seed", "signs"),
    [
        (3, (0.0, math.pi, math.pi)),  # 1 and 4 agree: 4 flips; 7 keeps its draw
        (0, (math.pi, 0.0, math.pi)),  # 1 and 4 already cancel; 7 keeps − (the sum is −1.4)
        (8, (math.pi, 0.0, 0.0)),  # 4 flips; 7 keeps +
    ],
)
def test_first_frame_lobes_take_signs_that_keep_the_first_sample_small(seed, signs):
    magnitudes = torch.tensor([[[0.0, 1.0, 0.0, 0.0, 0.3, 0.0, 0.0, 0.05, 0.0]]])
    assert SIGN_CHOICE_SHARE == 0.1
    kwargs = {"bin_hz": 1.0, "hop_s": 1.0, "window_s": 1.0, "seed": seed}
    phase = gradient_phase(magnitudes, **kwargs)
    first, second, third = signs
    _close_angles(phase[0, 0], [first] * 2 + [second] * 3 + [third] * 4, atol=1e-6)


@pytest.mark.parametrize(
    ("other", "dc_phase", "other_phase"),
    [
        (0.6, math.pi, 0.0),  # 2 · 0.6 = 1.2 > 1.0: the lobe at bins 1-2 keeps its sign, DC flips
        (0.45, 0.0, math.pi),  # 2 · 0.45 = 0.9 < 1.0: DC keeps its sign, the other lobe flips
    ],
)
def test_the_dc_bin_weighs_half_as_much_as_the_others_at_the_first_sample(
    other, dc_phase, other_phase
):
    # The centre sample is X_0 + 2 Σ X_k. Seed 3 draws + at bins 0, 2 and 3; the heavier of the
    # first two lobes keeps it, the lighter one flips; the silent lobe from bin 3 keeps its draw.
    magnitudes = torch.tensor([[[1.0, 0.0, other, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]])
    phase = gradient_phase(magnitudes, bin_hz=1.0, hop_s=1.0, window_s=1.0, seed=3)
    _close_angles(phase[0, 0], [dc_phase] + [other_phase] * 2 + [0.0] * 6, atol=1e-6)


def test_lobes_that_cancel_exactly_leave_the_next_lobe_its_drawn_sign():
    # weights 2, 2 and 0.6; seed 0 draws −, +, −: the first two cancel (sum 0), and at a sum of
    # exactly 0 neither sign is closer, so the third keeps its draw
    magnitudes = torch.tensor([[[0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.3, 0.0]]])
    phase = gradient_phase(magnitudes, bin_hz=1.0, hop_s=1.0, window_s=1.0, seed=0)
    _close_angles(phase[0, 0], [math.pi] * 2 + [0.0] * 3 + [math.pi] * 4, atol=1e-6)


def test_a_lobe_at_exactly_the_share_of_the_heaviest_has_its_sign_chosen():
    # weights 10, 4 and exactly 1 = 0.1 · 10. Seed 0 draws −, +, −: the sum is −6 after two
    # lobes, so the third is chosen + (drawn −).
    magnitudes = torch.tensor([[[0.0, 5.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.5, 0.0]]])
    phase = gradient_phase(magnitudes, bin_hz=1.0, hop_s=1.0, window_s=1.0, seed=0)
    _close_angles(phase[0, 0], [math.pi] * 2 + [0.0] * 7, atol=1e-6)


# ----------------------------------------------------------------------------- griffin_lim
def _gl_magnitudes() -> torch.Tensor:
    k = torch.arange(25, dtype=torch.float64).reshape(5, 5)
    return (((k * 5 + 2) % 7) / 4).float()


@pytest.mark.parametrize(
    ("options", "golden"),
    [
        (
            {"num_iterations": 0},
            [-0.31693, -0.396592, 0.094717, -0.16133, 0.487865, -0.0973477, 0.374655, -0.246664],
        ),
        (
            {"num_iterations": 3, "momentum": 0.5},
            [-0.525754, -0.643527, 0.375803, -0.118699, 0.820071, 0.355682, 0.210758, -0.78094],
        ),
        (
            {"num_iterations": 3, "momentum": 0.5, "periodic": True},
            [
                0.435789,
                0.414758,
                -0.613368,
                -0.239656,
                0.728122,
                0.38473,
                -0.389383,
                0.501089,
                -0.231164,
                0.93735,
            ],
        ),
        (
            {"num_iterations": 0, "init": "random", "seed": 3},
            [
                0.11885,
                -0.183246,
                -0.0951416,
                0.0854524,
                -0.110508,
                -0.0550705,
                -0.430426,
                -0.102075,
            ],
        ),
        (
            {"num_iterations": 2, "momentum": 0.0, "periodic": True, "init": "random"},
            [
                -0.242908,
                -0.0933448,
                -0.589508,
                0.527012,
                0.571041,
                0.338837,
                -0.330779,
                0.24947,
                0.770127,
                -0.74184,
            ],
        ),
    ],
)
def test_griffin_lim_golden_values(options, golden):
    waveform = griffin_lim(_gl_magnitudes(), n_fft=8, hop_length=2, win_length=6, **options)
    assert waveform.dtype == torch.float32
    _close(waveform, golden, atol=1e-5)


def test_griffin_lim_defaults():
    magnitudes = _gl_magnitudes()
    explicit = griffin_lim(
        magnitudes,
        n_fft=8,
        hop_length=2,
        win_length=8,
        num_iterations=32,
        momentum=0.99,
        length=8,
        periodic=False,
        init="gradient",
        seed=0,
    )
    assert torch.equal(griffin_lim(magnitudes, n_fft=8, hop_length=2), explicit)


def test_griffin_lim_zero_iterations_is_the_phase_gradient_start():
    magnitudes = _gl_magnitudes()
    phase = gradient_phase(
        magnitudes.T[None], bin_hz=1 / 8, hop_s=2.0, window_s=6.0, seed=4, periodic=True
    )
    # window-centre phase → phase of a window starting at the frame start: π k · win / n_fft
    phase = phase - math.pi * torch.arange(5) * 6 / 8
    grid = _FrameGrid(8, 6, 2, 5, CPU)
    expected = grid.synthesize(torch.polar(magnitudes.T[None], phase), length=10, periodic=True)
    ours = griffin_lim(
        magnitudes, n_fft=8, hop_length=2, win_length=6, num_iterations=0, periodic=True, seed=4
    )
    _close(ours, expected[0], atol=1e-6)


def test_griffin_lim_batches_decode_like_items_and_keep_leading_dims():
    items = torch.stack([_gl_magnitudes(), _gl_magnitudes().flip(-1)])
    batch = griffin_lim(items[None], n_fft=8, hop_length=2, num_iterations=2, length=9)
    assert batch.shape == (1, 2, 9)
    for index in range(2):
        alone = griffin_lim(items[index], n_fft=8, hop_length=2, num_iterations=2, length=9)
        _close(batch[0, index], alone, atol=1e-6)


def test_griffin_lim_reconstructs_a_consistent_spectrum():
    # The magnitudes of a real signal: fast Griffin-Lim gets the spectrum back closely.
    n_fft, hop = 64, 16
    t = torch.arange(1024.0)
    signal = torch.sin(2 * math.pi * 0.05 * t) + 0.5 * torch.sin(2 * math.pi * 0.13 * t)
    target = _stft(signal, n_fft, hop).abs().T
    waveform = griffin_lim(target, n_fft=n_fft, hop_length=hop, num_iterations=32)
    rebuilt = _stft(waveform, n_fft, hop).abs().T
    error = torch.linalg.norm(rebuilt - target[:, : rebuilt.shape[-1]]) / torch.linalg.norm(target)
    assert waveform.shape == (64 * hop,)
    assert error < 0.08  # 0.053; random phase at 32 iterations is far worse


def test_griffin_lim_accepts_the_boundary_values():
    one_frame = _gl_magnitudes()[:, :1]
    assert griffin_lim(one_frame, n_fft=8, hop_length=1, periodic=True).shape == (1,)
    assert griffin_lim(one_frame, n_fft=8, hop_length=3, length=1).shape == (1,)
    assert griffin_lim(_gl_magnitudes(), n_fft=8, hop_length=2, length=8, periodic=True).shape == (
        8,
    )
    assert griffin_lim(_gl_magnitudes().double(), n_fft=8, hop_length=2, momentum=0).dtype == (
        torch.float32
    )
    assert griffin_lim(_gl_magnitudes(), n_fft=8, hop_length=2, momentum=0.0).shape == (8,)
    # an odd n_fft: 9 // 2 + 1 = 5 bins, as for n_fft 8
    assert griffin_lim(_gl_magnitudes(), n_fft=9, hop_length=2).shape == (8,)


@pytest.mark.parametrize(
    ("options", "named", "expected"),
    [
        ({"n_fft": 0}, "n_fft=0", "must be a positive integer"),
        ({"n_fft": True}, "n_fft=True", "must be a positive integer"),
        ({"n_fft": 8.0}, "n_fft=8.0", "must be a positive integer"),
        ({"hop_length": 0}, "hop_length=0", "must be a positive integer"),
        ({"hop_length": False}, "hop_length=False", "must be a positive integer"),
        ({"hop_length": 2.5}, "hop_length=2.5", "must be a positive integer"),
        ({"win_length": 0}, "win_length=0", "must be a positive integer"),
        ({"win_length": 9}, "win_length=9", ("at most", "n_fft=8")),
        ({"num_iterations": -1}, "num_iterations=-1", "integer >= 0"),
        ({"num_iterations": True}, "num_iterations=True", "integer >= 0"),
        ({"num_iterations": 2.0}, "num_iterations=2.0", "integer >= 0"),
        ({"momentum": 1.0}, "momentum=1.0", "number in [0, 1)"),
        ({"momentum": -0.1}, "momentum=-0.1", "number in [0, 1)"),
        ({"momentum": "0.5"}, "momentum='0.5'", "number in [0, 1)"),
        ({"init": "zeros"}, "init='zeros'", "'gradient' or 'random'"),
        ({"length": 0}, "length=0", "must be a positive integer"),
        ({"length": True}, "length=True", "must be a positive integer"),
        ({"length": 4.0}, "length=4.0", "must be a positive integer"),
        # 5 frames at hop 2 span (5 - 1) · 2 = 8 samples, looped or not
        ({"length": 7}, "length=7", ("at least", "hop_length = 8", "5 frames")),
        ({"length": 7, "periodic": True}, "length=7", ("at least", "hop_length = 8", "5 frames")),
    ],
)
def test_griffin_lim_refuses_bad_settings(options, named, expected):
    arguments = {"n_fft": 8, "hop_length": 2, **options}
    assert_refused(griffin_lim, _gl_magnitudes(), **arguments, named=named, phrase=expected)


BAD_VALUES = ("have frames", "finite and non-negative")
SHAPE = "tensor of shape (..., n_fft // 2 + 1, frames)"


@pytest.mark.parametrize(
    ("magnitudes", "named", "expected"),
    [
        ([[1.0]] * 5, "magnitudes", SHAPE),
        (torch.ones(5), "magnitudes", SHAPE),
        # n_fft 8 has 8 // 2 + 1 = 5 bins
        (torch.ones(4, 3), "magnitudes", ("4 frequency bins", "n_fft=8", "needs 5")),
        (torch.ones(5, 0), "magnitudes", BAD_VALUES),
        (torch.full((5, 3), math.nan), "magnitudes", BAD_VALUES),
        (torch.full((5, 3), math.inf), "magnitudes", BAD_VALUES),
        (-torch.ones(5, 3), "magnitudes", BAD_VALUES),
        (torch.ones(5, 1), "length=0", "must be a positive integer"),  # one frame, one-shot
    ],
)
def test_griffin_lim_refuses_bad_magnitudes(magnitudes, named, expected):
    assert_refused(griffin_lim, magnitudes, n_fft=8, hop_length=2, named=named, phrase=expected)


# --------------------------------------------------------------- operators and reference
def test_inverse_operators_of_a_small_converter():
    # The mel range ends just above 3 kHz, so the band's last bin is the one at 3 kHz (a range
    # ending at 3 kHz exactly puts that bin on the top filter's foot, with no weight).
    params = SpectrogramParams(sample_rate=8000, num_frequencies=32, max_frequency_hz=3001)
    converter = SpectrogramConverter(params)
    band = converter._filterbank[: converter.num_bins]
    assert (params.n_fft, params.win_length, params.hop_length, band.shape) == (
        3200,
        800,
        80,
        (1201, 32),
    )
    coarse = _InverseOperators.build(params, band, 4, CPU)
    # the 800-point grid (10 Hz), 301 bins; Griffin-Lim at the smallest 5-smooth rate holding
    # them: common unit 80 samples = 10 grid points, ceil(2 · 301 / 10) = 61 → 64 units
    assert coarse.bin_hz == 10.0
    output, internal = coarse.output, coarse.internal
    assert (output.fft_size, output.win, output.hop, output.bins) == (800, 800, 80, 301)
    assert (internal.fft_size, internal.win, internal.hop, internal.bins) == (640, 640, 64, 301)
    assert torch.equal(coarse.centre_shift, (math.pi * torch.arange(301.0).double()).float())
    oracle = torch.linalg.pinv(band.double())[:, ::4][:, :301]
    assert coarse.mel_to_linear.shape == (32, 301) and coarse.mel_to_linear.dtype == torch.float32
    _close(coarse.mel_to_linear, oracle.float(), atol=1e-7)
    fine = _InverseOperators.build(params, band, 2, CPU)
    assert fine.bin_hz == 5.0
    assert (fine.output.fft_size, fine.output.win, fine.output.hop, fine.output.bins) == (
        1600,
        800,
        80,
        601,
    )
    assert (fine.internal.fft_size, fine.internal.win, fine.internal.hop) == (1280, 640, 64)
    shift = (math.pi * torch.arange(601, dtype=torch.float64) * 800 / 1600).float()
    assert torch.equal(fine.centre_shift, shift)
    _close(fine.mel_to_linear, torch.linalg.pinv(band.double())[:, ::2][:, :601].float(), atol=1e-7)


def test_inverse_operators_when_the_hop_does_not_divide_the_window():
    # DFT 100, window 90, hop 60: the common unit is gcd(100, 90, 60) = 10 samples (not the hop
    # 60, not gcd(90, 60) = 30, not gcd(100, 60) = 20); 21 bins need ceil(42 / 10) = 5 units.
    params = SpectrogramParams(
        sample_rate=1000,
        step_size_ms=60.0,
        window_duration_ms=90.0,
        padded_duration_ms=100.0,
        num_frequencies=8,
        max_frequency_hz=400,
    )
    assert (params.n_fft, params.win_length, params.hop_length) == (100, 90, 60)
    band = torch.rand(21, 8, generator=torch.Generator().manual_seed(0))
    operators = _InverseOperators.build(params, band, 1, CPU)
    internal = operators.internal
    assert (internal.fft_size, internal.win, internal.hop, internal.bins) == (50, 45, 30, 21)
    assert operators.bin_hz == 10.0
    # π k · win / grid computed in float64, then rounded once to float32
    shift = (math.pi * torch.arange(21, dtype=torch.float64) * 90 / 100).float()
    assert torch.equal(operators.centre_shift, shift)


def test_inverse_operators_fall_back_to_the_full_rate():
    # 9 kHz, hop 90, window 900: common unit 90 samples = 10 points; 451 bins need 91 units,
    # more than the 90 there are: Griffin-Lim runs at the full rate.
    params = SpectrogramParams(
        sample_rate=9000, num_frequencies=16, max_frequency_hz=4400, padded_duration_ms=100.0
    )
    band = torch.rand(451, 16, generator=torch.Generator().manual_seed(0))
    operators = _InverseOperators.build(params, band, 1, CPU)
    internal = operators.internal
    assert (internal.fft_size, internal.win, internal.hop, internal.bins) == (900, 900, 90, 451)


# n_fft 1600 > win_length 800, hop 80, Slaney-normalised mel bands: every argument matters
_SMALL_REFERENCE = SpectrogramParams(
    sample_rate=8000,
    num_frequencies=16,
    max_frequency_hz=3000,
    padded_duration_ms=200.0,
    min_frequency_hz=100.0,
    mel_scale_norm="slaney",
    mel_scale_type="slaney",
)


def test_reference_decoder_is_torchaudio_inverse_mel_then_griffin_lim():
    params = _SMALL_REFERENCE
    mel = torch.rand(1, 16, 12, generator=torch.Generator().manual_seed(1)) * 100
    ours = reference_mel_to_waveform(mel, params, num_iterations=3, seed=11)
    inverse_mel = torchaudio.transforms.InverseMelScale(
        n_stft=params.n_fft // 2 + 1,
        n_mels=16,
        sample_rate=8000,
        f_min=100.0,
        f_max=3000.0,
        norm="slaney",
        mel_scale="slaney",
    )
    torch.manual_seed(11)
    linear = inverse_mel(mel)
    expected = torchaudio.functional.griffinlim(
        linear,
        torch.hann_window(params.win_length),
        params.n_fft,
        params.hop_length,
        params.win_length,
        1.0,
        3,
        0.99,
        None,
        True,
    )
    assert ours.shape == (1, params.samples_for_width(12)) == (1, 880)
    _close(ours[:, : expected.shape[-1]], expected, atol=1e-4)
    assert torch.equal(ours[:, expected.shape[-1] :], torch.zeros(1, 880 - expected.shape[-1]))


def test_reference_decoder_defaults_and_global_random_state():
    params = _SMALL_REFERENCE
    mel = torch.rand(16, 12, generator=torch.Generator().manual_seed(2)) * 100
    torch.manual_seed(123)
    state = torch.get_rng_state()
    default = reference_mel_to_waveform(mel, params)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
    explicit = reference_mel_to_waveform(mel, params, num_iterations=32, seed=0, device="cpu")
    assert torch.equal(default, explicit)
    assert not torch.equal(default, reference_mel_to_waveform(mel, params, seed=1))


# --------------------------------------------------------------------------------- threads
def test_single_intra_op_thread_sets_one_and_restores():
    original = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with _single_intra_op_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), _single_intra_op_thread():
            raise RuntimeError
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        with _single_intra_op_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(original)


# ----------------------------------------------------------------- _integrate_phase (the scan)
def _integrate_frame_by_frame(current, step_time, continues, anchor, offset, periodic):
    """The recurrence as written: frame t from frame t − 1, one frame at a time (float64)."""
    phase = torch.empty(step_time.shape, dtype=torch.float64)
    current = current.double()
    for _ in range(2 if periodic else 1):
        for t in range(step_time.shape[1]):
            candidate = current + step_time[:, t].double()
            seeded = candidate.gather(-1, anchor[:, t]) + offset[:, t].double()
            current = torch.where(continues[:, t], candidate, seeded)
            phase[:, t] = current
    return phase


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("frames", [1, 2, 5, 8, 37])
def test_the_scan_integrates_the_same_recurrence_as_a_loop_over_frames(frames, periodic):
    generator = torch.Generator().manual_seed(frames)
    batch, bins = 2, 9
    current = torch.rand(batch, bins, generator=generator) * 6.0
    # Steps of a 10 kHz partial at a 10 ms hop (~630 rad a frame): the loop's unreduced sums
    # grow to 2e4 rad, where the float64 reference still resolves 1e-11 rad.
    step_time = torch.rand(batch, frames, bins, generator=generator) * 630.0
    continues = torch.rand(batch, frames, bins, generator=generator) < 0.6
    anchor = torch.randint(0, bins, (batch, frames, bins), generator=generator)
    offset = torch.randn(batch, frames, bins, generator=generator)
    phase = _integrate_phase(current, step_time, continues, anchor, offset, periodic=periodic)
    expected = _integrate_frame_by_frame(current, step_time, continues, anchor, offset, periodic)
    assert phase.dtype == torch.float32 and phase.shape == (batch, frames, bins)
    # Each of the ≤ 2·frames additions of the scan rounds at most 2π · 2^⌈log2 frames⌉ · 2⁻²⁴
    # (its partial sums are reduced modulo 2π first): ≤ 3e-3 rad at 37 frames.
    _close_angles(phase, expected, atol=3e-3)


def test_the_scan_follows_an_anchor_chain_across_frames():
    # Bin 1 continues; bin 0 takes bin 1's stepped phase in frame 1, bin 2 takes bin 0's in
    # frame 2: the value travels 1 → 0 → 2 with every offset on the way.
    current = torch.tensor([[0.0, 1.0, 2.0]])
    step_time = torch.tensor([[[0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3]]])
    continues = torch.tensor([[[True, True, True], [False, True, True], [True, True, False]]])
    anchor = torch.tensor([[[0, 1, 2], [1, 1, 2], [0, 1, 0]]])
    offset = torch.tensor([[[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, -0.25]]])
    phase = _integrate_phase(current, step_time, continues, anchor, offset, periodic=False)
    frame0 = [0.1, 1.2, 2.3]
    frame1 = [1.2 + 0.2 + 0.5, 1.4, 2.6]  # bin 0 from bin 1's stepped phase plus 0.5
    frame2 = [1.9 + 0.1, 1.6, 1.9 + 0.1 - 0.25]  # bin 2 from bin 0's stepped phase
    _close_angles(phase[0], [frame0, frame1, frame2], atol=1e-5)


# -------------------------------------------------------------------------------- _MelBands
def _bands_filterbank() -> torch.Tensor:
    # 6 bins, 3 bands; bin 0 in no band, every other bin in one or two.
    return torch.tensor(
        [
            [0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 0.25, 0.75],
            [0.0, 0.0, 1.0],
        ],
        dtype=torch.float64,
    )


def test_mel_bands_map_like_the_dense_filterbank():
    filterbank = _bands_filterbank()
    bands = _MelBands(filterbank, CPU)
    magnitudes = torch.rand(2, 4, 6, generator=torch.Generator().manual_seed(1))
    _close(bands.to_mel(magnitudes), magnitudes @ filterbank.float())
    per_band = torch.tensor([[[2.0, 4.0, 8.0]]])
    # Each bin's weighted mean of its bands; bin 0 (no band) gets 1.
    expected = [[[1.0, 2.0, 3.0, 4.0, (0.25 * 4 + 0.75 * 8) / 1.0, 8.0]]]
    _close(bands.spread(per_band), expected)


def test_mel_projection_matches_single_band_bins_and_keeps_the_phase():
    bands = _MelBands(_bands_filterbank(), CPU)
    spectrum = torch.polar(
        torch.tensor([[[3.0, 1.0, 2.0, 2.0, 0.0, 1.0]]]),
        torch.tensor([[[0.1, 0.2, -0.3, 0.4, 0.5, -0.6]]]),
    )
    before = spectrum.clone()
    mel_t = torch.tensor([[[4.0, 3.0, 0.5]]])
    # Current mel: [1 + 1, 1 + 2, 0 + 1] = [2, 3, 1] → ratios [2, 1, 0.5].
    result = bands.project_(spectrum, mel_t)
    assert result is spectrum  # in place
    gains = [1.0, 2.0, 1.5, 1.0, 0.25 * 1 + 0.75 * 0.5, 0.5]
    _close(result.abs(), before.abs() * torch.tensor(gains), atol=1e-6)
    _close(torch.angle(result[..., 1:4]), torch.angle(before[..., 1:4]), atol=1e-6)
    assert result[0, 0, 4] == 0  # a silent bin stays silent


def test_mel_projection_bounds_the_gain_and_floors_silent_bands():
    bands = _MelBands(_bands_filterbank(), CPU)
    spectrum = torch.tensor([[[0, 1e-3, 0, 0, 0, 1.0]]], dtype=torch.complex64)
    mel_t = torch.tensor([[[1e3, 0.0, 1.0]]])
    result = bands.project_(spectrum.clone(), mel_t)
    # Band 0 wants 1e3 / 1e-3: the gain stops at MAX_GAIN; band 1 has no energy and a floored
    # current value (no division by zero, no NaN).
    assert torch.isfinite(torch.view_as_real(result)).all()
    assert result[0, 0, 1].real == pytest.approx(1e-3 * _MelBands.MAX_GAIN, rel=1e-6)
    assert result[0, 0, 5].real == pytest.approx(1.0, rel=1e-6)


def test_mel_projection_brings_the_mel_magnitudes_closer():
    converter = SpectrogramConverter(SpectrogramParams(num_frequencies=64))
    _, fine = converter._get_inverse()
    generator = torch.Generator().manual_seed(3)
    bins = fine.internal.bins
    target = torch.rand(1, 5, bins, generator=generator) ** 4
    mel_t = fine.bands.to_mel(target)
    start = target * (0.5 + torch.rand(1, 5, bins, generator=generator))
    spectrum = torch.polar(start, torch.rand(1, 5, bins, generator=generator) * 6)
    before = torch.linalg.vector_norm(fine.bands.to_mel(start) - mel_t)
    projected = fine.bands.project_(spectrum, mel_t).abs()
    after = torch.linalg.vector_norm(fine.bands.to_mel(projected) - mel_t)
    assert after < 0.5 * before
