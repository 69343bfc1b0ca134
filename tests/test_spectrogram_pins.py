"""Pins for riffusion.spectrogram: exact values of the helpers, the forward transform's padding
and frame blocks against torchaudio, the reference inverse against torchaudio on small
parameters, the fast inverse's wiring, and every input this module refuses (by its type, named
value and key phrase, with every number the message computes). Decoder output itself is pinned
in tests/test_phase.py and tests/test_decoder_quality.py, the registry and the dispatch of
decoders by name in tests/test_decoders.py; here only what spectrogram.py decides."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchaudio

from riffusion.limits import MAX_DECODE_BYTES
from riffusion.params import SpectrogramParams
from riffusion.spectrogram import (
    DEFAULT_ITERATIONS,
    FAST_DEFAULT_ITERATIONS,
    INT16_SCALE,
    SpectrogramConverter,
    _fit_samples,
    band_limit,
    check_decode_memory,
    decoded_length,
    inverse_bytes_per_frame,
    mel_filterbank,
    num_frames,
    spectral_convergence,
)
from tests.conftest import music_like
from tests.errors import assert_refused
from tests.tolerances import assert_mel_matches_reference, torchaudio_filterbank_float64

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics

# Small parameters keep torchaudio's reference inverse fast: n_fft 800, window 400 (a zero-
# padding factor of 2, so the fast inverse has its fine grid), hop 80, 64 mel bands to 3 kHz.
SMALL = SpectrogramParams(
    sample_rate=8000,
    num_frequencies=64,
    padded_duration_ms=100.0,
    window_duration_ms=50.0,
    max_frequency_hz=3000.0,
)
# Slaney's mel scale and area normalisation, a floor above 0 Hz: every filterbank argument
# differs from its default.
SLANEY = SpectrogramParams(
    sample_rate=22050,
    num_frequencies=80,
    min_frequency_hz=60.0,
    max_frequency_hz=7000.0,
    mel_scale_norm="slaney",
    mel_scale_type="slaney",
)
# n_fft = 11025 (odd) with a 4410-sample window: no integer zero-padding factor.
ODD = SpectrogramParams(padded_duration_ms=250.0, num_frequencies=128)


def _torchaudio_mel(params: SpectrogramParams, waveform: torch.Tensor) -> torch.Tensor:
    spectrogram = torchaudio.transforms.Spectrogram(
        n_fft=params.n_fft,
        win_length=params.win_length,
        hop_length=params.hop_length,
        power=1.0,
    )
    mel_scale = torchaudio.transforms.MelScale(
        n_mels=params.num_frequencies,
        sample_rate=params.sample_rate,
        f_min=params.min_frequency_hz,
        f_max=params.max_frequency_hz,
        n_stft=params.n_fft // 2 + 1,
        norm=params.mel_scale_norm,
        mel_scale=params.mel_scale_type,
    )
    return mel_scale(spectrogram(waveform))


def _assert_same_mel(mel: torch.Tensor, expected: torch.Tensor, method: str) -> None:
    """The reference is torchaudio itself (the same code in the same process: equal); the fast
    path has its own filterbank rounding and sums (tests/tolerances.py)."""
    if method == "reference":
        assert torch.equal(mel, expected)
    else:
        assert_mel_matches_reference(mel, expected)


# --------------------------------------------------------------------------------- helpers
def test_fit_samples_crops_and_zero_pads_the_last_axis():
    waveform = torch.arange(1.0, 7.0).reshape(2, 3)
    assert torch.equal(_fit_samples(waveform, 2), torch.tensor([[1.0, 2.0], [4.0, 5.0]]))
    assert torch.equal(_fit_samples(waveform, 3), waveform)
    padded = _fit_samples(waveform, 5)
    assert torch.equal(padded, torch.tensor([[1.0, 2.0, 3.0, 0.0, 0.0], [4.0, 5.0, 6.0, 0.0, 0.0]]))
    stacked = _fit_samples(torch.ones(2, 1, 3), 5)
    assert torch.equal(stacked, torch.tensor([[[1.0, 1.0, 1.0, 0.0, 0.0]]] * 2))


def test_num_frames_is_the_params_convention():
    assert [num_frames(n, SMALL) for n in (80, 159, 160, 800)] == [2, 2, 3, 11]


def test_mel_filterbank_arguments():
    # Slaney scale and norm, f_min > 0, another rate: torchaudio's formulas in float64 (the
    # tolerance is float64 rounding of frequencies over the narrowest band, as for Riffusion's
    # parameters in test_spectrogram); the float32 filterbank is the float64 one rounded once.
    expected = torchaudio_filterbank_float64(SLANEY)
    exact = mel_filterbank(SLANEY, dtype=torch.float64)
    torch.testing.assert_close(exact, expected, rtol=0, atol=1e-11)
    assert torch.equal(mel_filterbank(SLANEY), exact.float())
    narrow = mel_filterbank(SLANEY, num_freqs=300, dtype=torch.float64)
    assert narrow.shape == (300, 80) and narrow.dtype == torch.float64
    expected_narrow = torchaudio_filterbank_float64(SLANEY, num_freqs=300)
    torch.testing.assert_close(narrow, expected_narrow, rtol=0, atol=1e-11)
    assert mel_filterbank(SMALL, device="cpu").device.type == "cpu"
    # The range's ends are the outer corners exactly: no weight at or beyond them, and none
    # negative (not even -0.0).
    assert (exact >= 0).all() and not torch.signbit(exact).any()
    bins_hz = torch.linspace(0, 11025, exact.shape[0], dtype=torch.float64)
    assert not exact[(bins_hz <= 60.0) | (bins_hz >= 7000.0)].any()
    # At 1 kHz (HTK) the mel round trip lands 2.3e-13 Hz above the range's end: the bin there
    # (2.5 Hz bins: bin 400) would keep a rounding-noise weight without the exact corner.
    top = mel_filterbank(SpectrogramParams(max_frequency_hz=1000), dtype=torch.float64)
    assert top[399].any() and not top[400:].any() and band_limit(top) == 400


def test_band_limit_is_the_last_row_with_any_weight():
    filterbank = torch.zeros(10, 3)
    filterbank[2, 0] = 0.5
    filterbank[6] = torch.tensor([1.0, -1.0, 0.0])  # sums to 0, but it has weight
    assert band_limit(filterbank) == 7
    assert band_limit(torch.zeros(10, 3)) == 1
    filterbank[9, 2] = 1e-30
    assert band_limit(filterbank) == 10


def test_spectral_convergence_values():
    # Each normalised by its maximum: [0.75, 1] and [1, 0.75]; ‖(0.25, 0.25)‖ / ‖(0.75, 1)‖.
    reference, estimate = torch.tensor([3.0, 4.0]), torch.tensor([8.0, 6.0])
    assert spectral_convergence(reference, estimate) == pytest.approx(math.sqrt(2) / 5, abs=1e-15)
    assert spectral_convergence(estimate, reference) == pytest.approx(
        math.sqrt(2) * 0.25 / 1.25, abs=1e-15
    )
    # Gains do not count, however small.
    tiny = spectral_convergence(reference.double() * 1e-6, estimate.double() * 1e-9)
    assert tiny == pytest.approx(math.sqrt(2) / 5, abs=1e-12)
    # An all-zero estimate is as far as can be: 1.
    assert spectral_convergence(reference, torch.zeros(2)) == 1.0
    assert isinstance(spectral_convergence(reference, reference), float)


def test_spectral_convergence_refusals():
    assert_refused(
        spectral_convergence,
        torch.ones(3, 4),
        torch.ones(4, 3),
        named="reference shape (3, 4)",
        mentions="estimate shape (4, 3)",
        phrase="must match",
    )
    assert_refused(
        spectral_convergence,
        torch.zeros(2),
        torch.ones(2),
        phrase=("spectral convergence", "undefined", "all-zero reference"),
    )


# -------------------------------------------------------------------------------- converter
def test_converter_state():
    converter = SpectrogramConverter(SMALL)
    assert converter.params is SMALL and converter.device == torch.device("cpu")
    assert torch.equal(converter._window, torch.hann_window(400))
    assert torch.equal(converter._filterbank, mel_filterbank(SMALL))
    # 3 kHz at 10 Hz per bin: bins 0..299 (bin 300 is the top filter's foot, weight 0).
    assert converter.num_bins == band_limit(converter._filterbank) == 300
    assert torch.equal(converter._band, converter._filterbank[:300])
    assert converter._zoom == 2 and SpectrogramConverter(ODD)._zoom == 0
    assert SpectrogramConverter().params == SpectrogramParams()
    assert SpectrogramConverter(None).params == SpectrogramParams()


def test_inverse_operators_are_built_once_with_a_fine_grid_only_for_even_zoom():
    coarse, fine = SpectrogramConverter(SMALL)._get_inverse()  # zoom 2: 20 Hz and 10 Hz bins
    assert fine is not None and coarse.bin_hz == 20.0 and fine.bin_hz == 10.0
    small = {
        "sample_rate": 8000,
        "num_frequencies": 64,
        "window_duration_ms": 50.0,
        "max_frequency_hz": 3000.0,
    }
    zoom_3 = SpectrogramConverter(SpectrogramParams(padded_duration_ms=150.0, **small))
    assert zoom_3._zoom == 3 and zoom_3._get_inverse()[1] is None
    assert zoom_3._get_inverse() is zoom_3._get_inverse()
    assert zoom_3._get_inverse()[0].bin_hz == 20.0
    no_zoom = SpectrogramConverter(SpectrogramParams(padded_duration_ms=125.0, **small))
    coarse, fine = no_zoom._get_inverse()  # 1000 / 400: the n_fft grid itself, 8 Hz
    assert no_zoom._zoom == 0 and fine is None and coarse.bin_hz == 8.0


def test_converter_refusals():
    assert_refused(
        SpectrogramConverter,
        {},
        named="params",
        phrase=("riffusion.SpectrogramParams or None", "got dict"),
    )
    assert_refused(
        SpectrogramConverter, SMALL, device="nope", named="device='nope'", phrase="'cpu'"
    )
    assert_refused(SpectrogramConverter, SMALL, device=None, named="device=None", phrase="'cpu'")


# ---------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("params", [SMALL, SLANEY, ODD], ids=["small", "slaney", "odd"])
@pytest.mark.parametrize("method", ["fast", "reference"])
def test_forward_is_torchaudio(params, method):
    # 300 frames: three blocks of the fast path (128 + 128 + 44), whole hops, so torchaudio's
    # centred STFT has the same frames (the odd n_fft gets one extra; see below).
    samples = 299 * params.hop_length + 1
    rng = np.random.default_rng(1)
    waveform = torch.from_numpy(rng.standard_normal((2, samples)).astype(np.float32)) * 1000
    mel = SpectrogramConverter(params).waveform_to_mel(waveform, method=method)
    assert mel.shape == (2, params.num_frequencies, 300) and mel.dtype == torch.float32
    _assert_same_mel(mel, _torchaudio_mel(params, waveform), method)


@pytest.mark.parametrize("method", ["fast", "reference"])
def test_forward_odd_fft_gets_its_last_frame(method):
    # With n_fft odd, torch.stft's centred padding spans one sample less than n_fft, so a
    # whole number of hops gives one frame fewer than n // hop + 1: one zero sample completes it.
    samples = 20 * ODD.hop_length
    waveform = torch.from_numpy(music_like(samples / 44100, seed=2))[None] * INT16_SCALE
    assert waveform.shape[-1] == samples
    mel = SpectrogramConverter(ODD).waveform_to_mel(waveform, method=method)
    assert mel.shape == (1, 128, 21)
    padded = torch.nn.functional.pad(waveform, (0, 1))
    _assert_same_mel(mel, _torchaudio_mel(ODD, padded), method)
    # The zero only reaches the frames whose window (± 5512 samples) reaches the end.
    _assert_same_mel(mel[..., :7], _torchaudio_mel(ODD, waveform)[..., :7], method)


@pytest.mark.parametrize("method", ["fast", "reference"])
@pytest.mark.parametrize("samples", [100, 380])
def test_forward_short_audio_is_zero_padded_to_half_a_frame(method, samples):
    # Less than n_fft // 2 + 1 = 401 samples: zero-padded to 401, which the reflect padding
    # needs; the frames are those of the padded signal (at 380 samples the last frame's
    # window reaches into the reflection of the signal itself).
    converter = SpectrogramConverter(SMALL)
    waveform = torch.linspace(-1000.0, 1000.0, samples)
    mel = converter.waveform_to_mel(waveform, method=method)
    frames = samples // 80 + 1
    assert mel.shape == (64, frames)
    padded = torch.nn.functional.pad(waveform, (0, 401 - samples))
    _assert_same_mel(mel, _torchaudio_mel(SMALL, padded)[..., :frames], method)


def test_forward_keeps_the_leading_dimensions():
    converter = SpectrogramConverter(SMALL)
    waveform = torch.rand(2, 3, 800) - 0.5
    mel = converter.waveform_to_mel(waveform)
    assert mel.shape == (2, 3, 64, 11)
    assert torch.equal(mel[1, 2], converter.waveform_to_mel(waveform[1, 2]))
    assert torch.equal(converter.waveform_to_mel(waveform.double()), mel)


@pytest.mark.parametrize(
    ("waveform", "named", "expected"),
    [
        (np.zeros(800), "waveform", ("torch.Tensor", "got ndarray")),
        (torch.zeros(()), "waveform of shape ()", "no samples"),
        (torch.zeros(2, 0), "waveform of shape (2, 0)", "no samples"),
        (torch.zeros(800, dtype=torch.int16), "waveform dtype torch.int16", "floating point"),
        (torch.full((800,), math.inf), "waveform", "NaN or infinite"),
        (torch.full((800,), math.nan), "waveform", "NaN or infinite"),
        # SMALL's hop: 80 samples at 8 kHz
        (
            torch.zeros(79),
            "waveform of 79 samples",
            ("shorter than one hop", "80 samples", "10.0 ms"),
        ),
    ],
)
def test_forward_refuses_bad_waveforms(waveform, named, expected):
    converter = SpectrogramConverter(SMALL)
    assert_refused(converter.waveform_to_mel, waveform, named=named, phrase=expected)


def test_forward_refuses_an_unknown_method_and_one_hop_is_enough():
    converter = SpectrogramConverter(SMALL)
    assert_refused(
        converter.waveform_to_mel,
        torch.zeros(800),
        method="x",
        named="method='x'",
        phrase="'fast' or 'reference'",
    )
    assert converter.waveform_to_mel(torch.zeros(80)).shape == (64, 2)


# ---------------------------------------------------------------------------------- inverse
def test_reference_inverse_is_torchaudio_on_small_params():
    converter = SpectrogramConverter(SMALL)
    rng = np.random.default_rng(3)
    waveform = torch.from_numpy(rng.standard_normal(20 * 80).astype(np.float32)) * 1000
    mel = converter.waveform_to_mel(waveform[None])
    inverse_mel = torchaudio.transforms.InverseMelScale(
        n_stft=401, n_mels=64, sample_rate=8000, f_min=0.0, f_max=3000.0
    )
    griffin_lim = torchaudio.transforms.GriffinLim(
        n_fft=800, n_iter=3, win_length=400, hop_length=80, power=1.0, momentum=0.99
    )
    torch.manual_seed(5)
    expected = griffin_lim(inverse_mel(mel))
    decoded = converter.mel_to_waveform(mel, method="reference", num_iterations=3, seed=5)
    assert decoded.shape == (1, 20 * 80) and torch.equal(decoded, expected[..., : 20 * 80])


def test_reference_inverse_needs_more_frames_than_the_reflect_padding():
    # (frames − 1) · hop must exceed n_fft // 2 = 400: 6 frames are refused, 7 decode.
    converter = SpectrogramConverter(SMALL)
    mel = torch.rand(64, 7) * 1e4
    # n_fft // 2 = 400 samples of padding; 400 // 80 + 2 = 7 frames
    too_short = ("too short", "reflect-pads 400 samples", "at least 7 frames", "method='fast'")
    assert_refused(
        converter.mel_to_waveform,
        mel[:, :6],
        method="reference",
        named="mel with 6 frames",
        mentions="method='reference'",
        phrase=too_short,
    )
    assert converter.mel_to_waveform(mel, method="reference", num_iterations=1).shape == (480,)
    assert_refused(
        converter.mel_to_waveform,
        mel[None, :, :6],
        method="reference",
        named="mel with 6 frames",
        phrase=too_short,
    )


def test_default_iterations_and_seed():
    # None means the method's default number of iterations; seed 0 by default. The defaults
    # are the documented 40 (fast; docs/performance.md) and Riffusion's 32.
    assert (FAST_DEFAULT_ITERATIONS, DEFAULT_ITERATIONS) == (40, 32)
    converter = SpectrogramConverter(SMALL)
    mel = torch.rand(1, 64, 12, generator=torch.Generator().manual_seed(0)) * 1e4
    default = converter.mel_to_waveform(mel)
    explicit = converter.mel_to_waveform(mel, num_iterations=FAST_DEFAULT_ITERATIONS, seed=0)
    assert torch.equal(default, explicit)
    fewer = converter.mel_to_waveform(mel, num_iterations=FAST_DEFAULT_ITERATIONS - 1)
    assert not torch.equal(default, fewer)
    reference = converter.mel_to_waveform(mel, method="reference")
    explicit = converter.mel_to_waveform(
        mel, method="reference", num_iterations=DEFAULT_ITERATIONS, seed=0
    )
    assert torch.equal(reference, explicit)


def test_fast_inverse_lengths_and_leading_dimensions():
    converter = SpectrogramConverter(SMALL)
    mel = torch.rand(2, 3, 64, 10, generator=torch.Generator().manual_seed(1)) * 1e4
    decoded = converter.mel_to_waveform(mel, num_iterations=2)
    assert decoded.shape == (2, 3, 9 * 80) and decoded.dtype == torch.float32
    assert torch.equal(decoded[1, 2], converter.mel_to_waveform(mel[1, 2], num_iterations=2))
    looped = converter.mel_to_waveform(mel, num_iterations=2, periodic=True)
    assert looped.shape == (2, 3, 10 * 80)
    assert not torch.equal(looped[..., : 9 * 80], decoded)
    # float64 magnitudes are decoded as float32.
    assert torch.equal(converter.mel_to_waveform(mel.double(), num_iterations=2), decoded)


BAD_MAGNITUDES = "finite and non-negative"
ONE_FRAME = ("no samples", "at least 2 frames", "periodic=True")


@pytest.mark.parametrize(
    ("mel", "named", "expected"),
    [
        (np.zeros((64, 3)), "mel", ("torch.Tensor", "got ndarray")),
        (torch.ones(64), "mel of shape (64,)", "(..., 64, frames)"),
        (torch.ones(2, 63, 3), "mel of shape (2, 63, 3)", "(..., 64, frames)"),
        (torch.ones(64, 0), "mel of shape (64, 0)", "no frames"),
        (torch.ones(2, 64, 0), "mel of shape (2, 64, 0)", "no frames"),
        (-torch.ones(64, 3), "mel magnitudes", BAD_MAGNITUDES),
        (torch.full((64, 3), math.inf), "mel magnitudes", BAD_MAGNITUDES),
        (torch.full((64, 3), math.nan), "mel magnitudes", BAD_MAGNITUDES),
        (torch.ones(64, 1), "mel with 1 frame", ONE_FRAME),
    ],
)
def test_inverse_refuses_bad_mel(mel, named, expected):
    converter = SpectrogramConverter(SMALL)
    assert_refused(converter.mel_to_waveform, mel, named=named, phrase=expected)


@pytest.mark.parametrize(
    ("kwargs", "named", "expected"),
    [
        ({"num_iterations": 0}, "num_iterations=0", "must be a positive integer"),
        ({"num_iterations": -2}, "num_iterations=-2", "must be a positive integer"),
        ({"num_iterations": 2.0}, "num_iterations=2.0", "must be a positive integer"),
        ({"num_iterations": True}, "num_iterations=True", "must be a positive integer"),
        ({"seed": True}, "seed=True", "must be an integer"),
        ({"seed": 1.0}, "seed=1.0", "must be an integer"),
        ({"seed": "1"}, "seed='1'", "must be an integer"),
        ({"periodic": 1}, "periodic=1", "True or False"),
        ({"periodic": None}, "periodic=None", "True or False"),
        (
            {"method": "reference", "periodic": True},
            "periodic=True",
            ("method='fast'", "circular mode", "method='reference' has none"),
        ),
    ],
)
def test_inverse_refuses_bad_arguments(kwargs, named, expected):
    converter = SpectrogramConverter(SMALL)
    assert_refused(
        converter.mel_to_waveform, torch.ones(64, 8), **kwargs, named=named, phrase=expected
    )


def test_inverse_refuses_a_decode_too_large():
    per_frame = inverse_bytes_per_frame(SMALL, "fast")
    assert per_frame == 20 * 8 * 301 + 16 * 400
    assert inverse_bytes_per_frame(SMALL, "reference") == 8 * 8 * 401
    frames = MAX_DECODE_BYTES // per_frame + 1
    assert_refused(
        SpectrogramConverter(SMALL).mel_to_waveform,
        torch.zeros(64, frames),
        named="mel",
        mentions=(f"({frames} columns", ", 1 channel", "method='fast'"),
        # the estimate, the limit (and where it is set) and the widest mel that fits
        phrase=("about 8.0 GiB", "at most 8 GiB", "MAX_DECODE_BYTES", f" {frames - 1} columns"),
    )
    check_decode_memory(frames - 1, 1, per_frame, "fast")
    # 3 columns × 2 channels × 1/5 of the limit = 6/5 of 8 GiB; 2 columns of 2 channels fit
    assert_refused(
        check_decode_memory,
        3,
        2,
        MAX_DECODE_BYTES // 5,
        "x",
        what="it",
        named="it",
        mentions=("(3 columns", ", 2 channel", "method='x'"),
        phrase=("about 9.6 GiB", "at most 8 GiB", "MAX_DECODE_BYTES", " 2 columns"),
    )


def test_decoded_length():
    assert decoded_length(10, SMALL, periodic=False) == 720
    assert decoded_length(10, SMALL, periodic=True) == 800
    assert decoded_length(1, SMALL, periodic=True) == 80
    assert_refused(
        decoded_length, 1, SMALL, periodic=False, named="mel with 1 frame", phrase=ONE_FRAME
    )


def test_inverse_accepts_one_iteration_and_any_integer_seed():
    converter = SpectrogramConverter(SMALL)
    mel = torch.rand(64, 8, generator=torch.Generator().manual_seed(2)) * 1e4
    assert converter.mel_to_waveform(mel, num_iterations=1, seed=-3).shape == (560,)
    assert converter.mel_to_waveform(mel[:, :1], num_iterations=1, periodic=True).shape == (80,)


# ------------------------------------------------------------------ fast inverse: the wiring
# What spectrogram.py decides in the fast inverse, recorded at the phase module's building
# blocks (their arithmetic is pinned in tests/test_phase.py): the phase-gradient arguments,
# the centre shift applied to the initial phase, the split of the iterations between the
# coarse grid and the fine one (the last 1/FINE_SHARE), every length, and the periodic flag
# reaching every stage.
@pytest.fixture
def stages(monkeypatch):
    """The top-level stage calls of the fast inverse (not those Griffin-Lim makes itself)."""
    import riffusion.spectrogram as spectrogram
    from riffusion import phase

    calls: list[tuple] = []
    inside = [0]
    real_phase = spectrogram.gradient_phase
    real_griffin_lim = phase._FrameGrid.griffin_lim
    real_synthesize = phase._FrameGrid.synthesize
    real_analyze = phase._FrameGrid.analyze

    def record(*call):
        if not inside[0]:
            calls.append(call)

    def gradient_phase(magnitudes, **options):
        result = real_phase(magnitudes, **options)
        record("phase", magnitudes, options, result)
        return result

    def griffin_lim(
        grid, magnitudes, spectrum, iterations, momentum, *, length, periodic, mel=None
    ):
        record("griffin_lim", grid, spectrum, iterations, momentum, length, periodic, mel)
        inside[0] += 1
        try:
            return real_griffin_lim(
                grid,
                magnitudes,
                spectrum,
                iterations,
                momentum,
                length=length,
                periodic=periodic,
                mel=mel,
            )
        finally:
            inside[0] -= 1

    def synthesize(grid, spectrum, *, length=None, periodic=False):
        record("synthesize", grid, length, periodic)
        return real_synthesize(grid, spectrum, length=length, periodic=periodic)

    def analyze(grid, waveform, count, *, periodic=False):
        record("analyze", grid, waveform.shape[-1], count, periodic)
        return real_analyze(grid, waveform, count, periodic=periodic)

    monkeypatch.setattr(spectrogram, "gradient_phase", gradient_phase)
    monkeypatch.setattr(phase._FrameGrid, "griffin_lim", griffin_lim)
    monkeypatch.setattr(phase._FrameGrid, "synthesize", synthesize)
    monkeypatch.setattr(phase._FrameGrid, "analyze", analyze)
    return calls


@pytest.mark.parametrize("periodic", [False, True])
def test_fast_inverse_stages_with_the_fine_grid(stages, periodic):
    from riffusion.phase import FINE_SHARE, MEL_FROM, MOMENTUM

    converter = SpectrogramConverter(SMALL)
    coarse, fine = converter._get_inverse()
    mel = torch.rand(1, 64, 10, generator=torch.Generator().manual_seed(6)) * 1e4
    iterations = 3 * FINE_SHARE + 1
    waveform = converter.mel_to_waveform(mel, num_iterations=iterations, seed=4, periodic=periodic)
    length = SMALL.samples_for_width(10, periodic=periodic)
    assert waveform.shape == (1, length)
    kinds = [call[0] for call in stages]
    assert kinds == ["phase", "griffin_lim", "synthesize", "analyze", "griffin_lim", "synthesize"]
    _, magnitudes, options, phase = stages[0]
    assert options == {
        "bin_hz": coarse.bin_hz,
        "hop_s": 0.01,
        "window_s": 0.05,
        "seed": 4,
        "periodic": periodic,
    }
    expected = torch.relu(mel.transpose(-1, -2) @ coarse.mel_to_linear)
    torch.testing.assert_close(magnitudes, expected, rtol=1e-5, atol=1e-3)
    _, grid, spectrum, count, momentum, internal_length, flag, mel_step = stages[1]
    assert grid is coarse.internal and count == iterations - 3 and momentum == MOMENTUM
    assert torch.equal(spectrum, torch.polar(magnitudes, phase - coarse.centre_shift))
    assert internal_length == math.ceil(length * coarse.internal.hop / coarse.output.hop)
    assert flag is periodic and mel_step is None
    # The signal passes from the coarse grid to the fine one at their common reduced rate.
    assert (fine.internal.win, fine.internal.hop) == (coarse.internal.win, coarse.internal.hop)
    assert stages[2] == ("synthesize", coarse.internal, internal_length, periodic)
    assert stages[3] == ("analyze", fine.internal, internal_length, 10, periodic)
    _, grid, _, count, momentum, fine_length, flag, mel_step = stages[4]
    assert grid is fine.internal and count == 3 and momentum == MOMENTUM
    assert fine_length == internal_length
    assert flag is periodic
    bands, mel_t, start = mel_step
    assert bands is fine.bands and start == MEL_FROM
    assert torch.equal(mel_t, mel.transpose(-1, -2))
    assert stages[5] == ("synthesize", fine.output, length, periodic)


def test_fast_inverse_skips_the_fine_grid_without_fine_iterations(stages):
    from riffusion.phase import FINE_SHARE

    converter = SpectrogramConverter(SMALL)
    mel = torch.rand(64, 10, generator=torch.Generator().manual_seed(7)) * 1e4
    converter.mel_to_waveform(mel, num_iterations=FINE_SHARE - 1)
    assert [call[0] for call in stages] == ["phase", "griffin_lim", "synthesize"]
    assert stages[1][3] == FINE_SHARE - 1


def test_fast_inverse_without_a_fine_grid_runs_every_iteration_on_the_coarse_one(stages):
    converter = SpectrogramConverter(ODD)
    coarse, fine = converter._get_inverse()
    assert fine is None
    mel = torch.rand(128, 6, generator=torch.Generator().manual_seed(8)) * 1e4
    converter.mel_to_waveform(mel, num_iterations=8)
    assert [call[0] for call in stages] == ["phase", "griffin_lim", "synthesize"]
    assert stages[1][1] is coarse.internal and stages[1][3] == 8
    assert stages[2] == ("synthesize", coarse.output, 5 * 441, False)
