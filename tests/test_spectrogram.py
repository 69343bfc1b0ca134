"""Unit tests of riffusion.spectrogram: shapes, batching, both methods of both directions,
quality bounds on synthetic music-like signals, determinism and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchaudio

from riffusion.errors import ParameterError
from riffusion.image import image_to_mel, mel_to_image
from riffusion.params import SpectrogramParams
from riffusion.spectrogram import (
    INT16_SCALE,
    SpectrogramConverter,
    band_limit,
    gradient_phase,
    mel_filterbank,
    num_frames,
    spectral_convergence,
)
from tests.conftest import harmonic_tone, music_like
from tests.tolerances import (
    FLOAT32_EPS,
    assert_images_match,
    assert_mel_matches_reference,
    torchaudio_filterbank_float64,
)

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics

SR = 44100
PARAMS = SpectrogramParams()


@pytest.fixture(scope="module")
def converter() -> SpectrogramConverter:
    return SpectrogramConverter(PARAMS)


def _chords(seconds: float) -> np.ndarray:
    """Four three-note chords with a second harmonic, abrupt changes."""
    time = np.arange(int(seconds * SR)) / SR
    signal = np.zeros_like(time)
    for index, root in enumerate((220.0, 261.63, 196.0, 246.94)):
        part = (time >= index * seconds / 4) & (time < (index + 1) * seconds / 4)
        for ratio in (1.0, 1.26, 1.5):
            signal[part] += np.sin(2 * np.pi * root * ratio * time[part])
            signal[part] += 0.3 * np.sin(4 * np.pi * root * ratio * time[part])
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)


def _bursts(seconds: float, seed: int = 0) -> np.ndarray:
    """Decaying noise bursts every 200 ms over a gated 55 Hz bass."""
    rng = np.random.default_rng(seed)
    total = int(seconds * SR)
    signal = np.zeros(total)
    length = int(0.08 * SR)
    for start in range(int(0.05 * SR), total - length, int(0.2 * SR)):
        decay = np.exp(-np.arange(length) / (0.02 * SR))
        signal[start : start + length] += rng.standard_normal(length) * decay
    time = np.arange(total) / SR
    signal += 0.3 * np.sin(2 * np.pi * 55 * time) * (np.sin(2 * np.pi * 2 * time) > 0)
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)


def _image_mel(signal: np.ndarray, converter: SpectrogramConverter) -> torch.Tensor:
    """The mel magnitudes a Riffusion image of ``signal`` decodes to (8-bit, max 30e6)."""
    mel = converter.waveform_to_mel(torch.from_numpy(signal)[None] * INT16_SCALE)
    return image_to_mel(mel_to_image(mel, PARAMS), PARAMS)


# ---------------------------------------------------------------------------------- helpers
def test_num_frames_and_band_limit() -> None:
    # Riffusion's convention: centred frames, the last one kept.
    assert num_frames(225792, PARAMS) == 513
    assert num_frames(225351, PARAMS) == 512
    assert num_frames(440, PARAMS) == 1
    filterbank = mel_filterbank(PARAMS)
    assert filterbank.shape == (PARAMS.n_fft // 2 + 1, 512)
    # 10 kHz at 2.5 Hz per bin: bins 0..3999 carry weight; bin 4000 is exactly 10 kHz, the top
    # filter's upper foot (weight 0), and none above has any.
    assert band_limit(filterbank) == 4000
    assert filterbank[3999].any() and not filterbank[4000:].any()


def test_filterbank_matches_torchaudio_and_is_cached(converter: SpectrogramConverter) -> None:
    # torchaudio's formulas evaluated in float64 are ours to float64 rounding (their bin
    # frequencies come from a linspace computed from the other end: ~2e-12 Hz apart at 22 kHz,
    # over the narrowest band's 3.7 Hz half-width, ~1e-12); the float32 filterbank is that
    # rounded once, so it is exactly the float64 one cast.
    exact = torchaudio_filterbank_float64(PARAMS)
    ours = mel_filterbank(PARAMS, dtype=torch.float64)
    torch.testing.assert_close(ours, exact, rtol=0, atol=1e-11)
    assert torch.equal(converter._filterbank, ours.float())
    # torchaudio's own float32 evaluation (Riffusion's) rounds bin and corner frequencies to
    # float32, an error of up to ulp(22050 Hz) = 2e-3 Hz, which over the narrowest half-width
    # (3.7 Hz) moves a weight by up to 5.3e-4; measured 4.9e-5.
    float32 = torchaudio.functional.melscale_fbanks(
        PARAMS.n_fft // 2 + 1, 0.0, 10000.0, 512, SR, None, "htk"
    )
    bound = float(np.spacing(np.float32(SR / 2))) / 3.7
    torch.testing.assert_close(converter._filterbank, float32, rtol=0, atol=bound)
    before = converter._filterbank
    converter.waveform_to_mel(torch.zeros(1, 4410))
    assert converter._filterbank is before
    operators = converter._get_inverse()
    assert converter._get_inverse() is operators


def test_gradient_phase_recovers_a_sinusoid_phase_advance() -> None:
    # A steady 1005 Hz tone (Gaussian-shaped peak between bins 100 and 101): the phase of its
    # bins advances by 2π·f·hop per frame.
    lam = 0.25645 * 0.1**2
    freqs = torch.arange(201) * 10.0
    peak = torch.exp(-math.pi * lam * (freqs - 1005.0) ** 2)
    magnitudes = peak.expand(1, 20, 201).contiguous()
    phase = gradient_phase(magnitudes, bin_hz=10.0, hop_s=0.01, window_s=0.1, seed=3)
    advance = phase[0, 2:, 100:102] - phase[0, 1:-1, 100:102]
    expected = 2 * math.pi * 1005.0 * 0.01
    error = torch.polar(torch.ones_like(advance), advance - expected) - 1
    assert float(error.abs().max()) < 1e-2


# ---------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("shape", [(4410,), (1, 4410), (2, 4410), (2, 2, 4410)])
def test_forward_shapes(converter: SpectrogramConverter, shape: tuple[int, ...]) -> None:
    mel = converter.waveform_to_mel(torch.randn(shape))
    assert mel.shape == (*shape[:-1], 512, 11)  # 4410 // 441 + 1
    assert mel.dtype == torch.float32


def test_forward_batch_equals_items(converter: SpectrogramConverter) -> None:
    batch = torch.from_numpy(np.stack([music_like(0.5, seed=s) for s in range(3)])) * INT16_SCALE
    together = converter.waveform_to_mel(batch)
    for index in range(3):
        assert torch.equal(together[index], converter.waveform_to_mel(batch[index]))


@pytest.mark.parametrize(
    "make", [lambda: music_like(1.0, seed=1), lambda: _chords(1.0), lambda: _bursts(1.0)]
)
def test_forward_fast_matches_reference(converter: SpectrogramConverter, make) -> None:
    waveform = torch.from_numpy(make())[None] * INT16_SCALE
    fast = converter.waveform_to_mel(waveform)
    reference = converter.waveform_to_mel(waveform, method="reference")
    assert_mel_matches_reference(fast, reference)
    assert_images_match(mel_to_image(fast, PARAMS), mel_to_image(reference, PARAMS))


def test_forward_in_float64_is_float32_without_its_rounding(converter: SpectrogramConverter):
    waveform = torch.from_numpy(music_like(1.0, seed=1))[None] * INT16_SCALE
    exact = converter.waveform_to_mel(waveform, dtype=torch.float64)
    assert exact.dtype == torch.float64 and exact.shape == (1, 512, 101)
    rounded = converter.waveform_to_mel(waveform)
    # float32's error: the FFT's (unit roundoff · log2 n of the peak) plus the band's sum (one
    # roundoff per term, at most 53 bins in a band at these parameters); measured 2.3e-7.
    bound = FLOAT32_EPS / 2 * (math.log2(PARAMS.n_fft) + 53) * float(exact.max())
    torch.testing.assert_close(rounded.double(), exact, rtol=0, atol=bound)
    # The float64 picture is the float32 one, within float32's rounding.
    assert_images_match(mel_to_image(rounded, PARAMS), mel_to_image(exact, PARAMS))
    with pytest.raises(ParameterError, match="method='fast'") as error:
        converter.waveform_to_mel(waveform, method="reference", dtype=torch.float64)
    assert "float64" in str(error.value)
    with pytest.raises(ParameterError, match="must be torch.float32 or torch.float64"):
        converter.waveform_to_mel(waveform, dtype=torch.float16)


def test_reference_forward_is_torchaudio(converter: SpectrogramConverter) -> None:
    waveform = torch.from_numpy(music_like(0.3, seed=2))[None] * INT16_SCALE
    spectrogram = torchaudio.transforms.Spectrogram(
        n_fft=PARAMS.n_fft, win_length=PARAMS.win_length, hop_length=PARAMS.hop_length, power=1.0
    )
    mel_scale = torchaudio.transforms.MelScale(
        n_mels=512, sample_rate=SR, f_min=0.0, f_max=10000.0, n_stft=PARAMS.n_fft // 2 + 1
    )
    expected = mel_scale(spectrogram(waveform))
    # torchaudio's centred STFT keeps every frame: n // hop + 1, as Riffusion's images do.
    assert expected.shape[-1] == num_frames(waveform.shape[-1], PARAMS) == 0.3 * 100 + 1
    assert torch.equal(converter.waveform_to_mel(waveform, method="reference"), expected)


def test_forward_short_audio_is_padded(converter: SpectrogramConverter) -> None:
    assert converter.waveform_to_mel(torch.randn(441)).shape == (512, 2)
    with pytest.raises(ParameterError, match="shorter than one hop"):
        converter.waveform_to_mel(torch.randn(440))


def test_forward_other_params_use_the_general_path() -> None:
    # n_fft = 11025 is not a multiple of the 4410-sample window.
    params = SpectrogramParams(padded_duration_ms=250.0, num_frequencies=128)
    converter = SpectrogramConverter(params)
    waveform = torch.from_numpy(music_like(0.5, seed=3))[None] * INT16_SCALE
    fast = converter.waveform_to_mel(waveform)
    reference = converter.waveform_to_mel(waveform, method="reference")
    assert_mel_matches_reference(fast, reference)


# ---------------------------------------------------------------------------------- inverse
@pytest.mark.parametrize("method", ["fast", "reference"])
def test_inverse_shapes(converter: SpectrogramConverter, method: str) -> None:
    mel = torch.rand(2, 512, 24) * 1e5
    waveform = converter.mel_to_waveform(mel, method=method, num_iterations=2)
    # Riffusion's convention: (frames − 1)·hop samples.
    assert waveform.shape == (2, 23 * 441)
    assert waveform.dtype == torch.float32
    assert converter.mel_to_waveform(mel[0], method=method, num_iterations=2).shape == (23 * 441,)
    # Two columns are one hop; a single column is a whole period only when periodic.
    assert converter.mel_to_waveform(mel[0, :, :2], num_iterations=2).shape == (441,)
    assert converter.mel_to_waveform(mel[0, :, :1], num_iterations=2, periodic=True).shape == (
        441,
    )
    with pytest.raises(ParameterError, match="1 frame"):
        converter.mel_to_waveform(mel[0, :, :1], num_iterations=2)


def test_inverse_batch_equals_items(converter: SpectrogramConverter) -> None:
    mel = torch.stack([_image_mel(music_like(0.5, seed=s), converter) for s in range(2)])
    together = converter.mel_to_waveform(mel, num_iterations=4, seed=5)
    for index in range(2):
        alone = converter.mel_to_waveform(mel[index], num_iterations=4, seed=5)
        torch.testing.assert_close(together[index], alone, rtol=0, atol=1e-3 * alone.abs().max())


def test_inverse_keeps_the_level(converter: SpectrogramConverter) -> None:
    # Magnitudes straight from audio (not an 8-bit image) decode at the audio's own scale.
    waveform = torch.from_numpy(harmonic_tone(330.0, 1.0)) * 0.5 * INT16_SCALE
    decoded = converter.mel_to_waveform(converter.waveform_to_mel(waveform))
    ratio = float(
        decoded[4410:-4410].pow(2).mean().sqrt() / waveform[4410:-4410].pow(2).mean().sqrt()
    )
    assert 0.9 < ratio < 1.1


# Spectral convergence of the default "fast" inverse (40 iterations: 32 on the coarse grid, 8
# on the fine one, 6 of those towards the mel magnitudes) on 2 s synthetic signals through an
# 8-bit image (201 columns, decoded to 200 hops = 88,200 samples under Riffusion's frame
# convention), measured on 2 cores: music_like 0.0610, chords 0.0375, bursts 0.0474 (the
# decoder before issue 25: 0.0653, 0.0440, 0.0638); the reference method reaches 0.0605,
# 0.0760 and 0.0721 on the same images. Bounds: the fast method's value plus 5 %; the
# convergence is deterministic on one machine and moves by ~1e-4 across FFT kernels.
@pytest.mark.parametrize(
    ("make", "bound"),
    [
        (lambda: music_like(2.0, seed=4), 0.064),
        (lambda: _chords(2.0), 0.0394),
        (lambda: _bursts(2.0), 0.0498),
    ],
    ids=["music_like", "chords", "bursts"],
)
def test_fast_inverse_quality(converter: SpectrogramConverter, make, bound: float) -> None:
    mel = _image_mel(make(), converter)
    decoded = converter.mel_to_waveform(mel)
    convergence = spectral_convergence(mel, converter.waveform_to_mel(decoded))
    assert convergence < bound


def test_more_iterations_are_more_faithful(converter: SpectrogramConverter) -> None:
    mel = _image_mel(music_like(1.0, seed=6), converter)
    results = [
        spectral_convergence(
            mel, converter.waveform_to_mel(converter.mel_to_waveform(mel, num_iterations=n))
        )
        for n in (1, 8, 64)
    ]
    assert results[0] > results[1] > results[2]


def test_reference_inverse_is_torchaudio(converter: SpectrogramConverter) -> None:
    mel = _image_mel(music_like(0.3, seed=7), converter)
    inverse_mel = torchaudio.transforms.InverseMelScale(
        n_stft=PARAMS.n_fft // 2 + 1, n_mels=512, sample_rate=SR, f_min=0.0, f_max=10000.0
    )
    griffin_lim = torchaudio.transforms.GriffinLim(
        n_fft=PARAMS.n_fft,
        n_iter=3,
        win_length=PARAMS.win_length,
        hop_length=PARAMS.hop_length,
        power=1.0,
        momentum=0.99,
    )
    torch.manual_seed(11)
    expected = griffin_lim(inverse_mel(mel))
    got = converter.mel_to_waveform(mel, method="reference", num_iterations=3, seed=11)
    # Exactly torchaudio's (and Riffusion's) output, (frames − 1)·hop samples long.
    assert got.shape[-1] == expected.shape[-1] == (mel.shape[-1] - 1) * PARAMS.hop_length
    assert torch.equal(got, expected)


@pytest.mark.parametrize("method", ["fast", "reference"])
def test_inverse_is_deterministic_per_seed(converter: SpectrogramConverter, method: str) -> None:
    mel = _image_mel(music_like(0.3, seed=8), converter)
    first = converter.mel_to_waveform(mel, method=method, num_iterations=2, seed=1)
    again = converter.mel_to_waveform(mel, method=method, num_iterations=2, seed=1)
    other = converter.mel_to_waveform(mel, method=method, num_iterations=2, seed=2)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_inverse_other_params() -> None:
    # No integer zero-padding factor: Griffin-Lim on the n_fft grid; still faithful.
    params = SpectrogramParams(padded_duration_ms=250.0, num_frequencies=128)
    converter = SpectrogramConverter(params)
    waveform = torch.from_numpy(music_like(0.5, seed=9))[None] * INT16_SCALE
    mel = converter.waveform_to_mel(waveform)
    decoded = converter.mel_to_waveform(mel)
    assert decoded.shape == (1, (mel.shape[-1] - 1) * params.hop_length)
    assert decoded.shape[-1] == waveform.shape[-1] // params.hop_length * params.hop_length
    assert spectral_convergence(mel, converter.waveform_to_mel(decoded)) < 0.15


# ---------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "slow"}, "method='slow'"),
        ({"num_iterations": -1}, "num_iterations=-1"),
        ({"num_iterations": 1.5}, "num_iterations=1.5"),
        ({"num_iterations": True}, "num_iterations=True"),
        ({"num_iterations": 0}, "num_iterations=0"),
        ({"seed": "x"}, "seed='x'"),
        ({"method": "reference"}, "4 frames is too short"),
    ],
)
def test_inverse_rejects_bad_arguments(
    converter: SpectrogramConverter, kwargs: dict, match: str
) -> None:
    with pytest.raises(ParameterError, match=match):
        converter.mel_to_waveform(torch.ones(512, 4), **kwargs)


@pytest.mark.parametrize(
    "mel",
    [torch.ones(511, 4), torch.ones(512, 0), -torch.ones(512, 4), torch.full((512, 4), math.nan)],
)
def test_inverse_rejects_bad_mel(converter: SpectrogramConverter, mel: torch.Tensor) -> None:
    with pytest.raises(ParameterError):
        converter.mel_to_waveform(mel)


@pytest.mark.parametrize(
    "waveform",
    [np.zeros(4410), torch.zeros(4410, dtype=torch.int16), torch.zeros(0), torch.zeros(100)],
)
def test_forward_rejects_bad_waveform(converter: SpectrogramConverter, waveform) -> None:
    with pytest.raises(ParameterError):
        converter.waveform_to_mel(waveform)
    with pytest.raises(ParameterError, match="method='x'"):
        converter.waveform_to_mel(torch.zeros(4410), method="x")  # type: ignore[arg-type]


def test_spectral_convergence_checks_shapes() -> None:
    assert spectral_convergence(torch.ones(3, 4), 2 * torch.ones(3, 4)) == 0.0
    with pytest.raises(ParameterError):
        spectral_convergence(torch.ones(3, 4), torch.ones(4, 3))
    with pytest.raises(ParameterError):
        spectral_convergence(torch.zeros(3, 4), torch.ones(3, 4))


def test_periodic_inverse_wraps_around_and_stays_faithful():
    params = SpectrogramParams()
    converter = SpectrogramConverter(params)
    # A whole number of periods in 1 s: the signal itself loops perfectly.
    time = torch.arange(44100) / 44100
    loop = 3000 * (
        torch.sin(2 * torch.pi * 440 * time) + 0.5 * torch.sin(2 * torch.pi * 1320 * time)
    )
    # One period: 100 columns (the 101st frame would be the first again).
    period = params.width_for_samples(44100, periodic=True)
    mel = converter.waveform_to_mel(loop[None])[..., :period]
    plain = converter.mel_to_waveform(mel)[0]
    periodic = converter.mel_to_waveform(mel, periodic=True)[0]
    assert periodic.shape == (100 * 441,)
    assert plain.shape == (99 * 441,)

    def wrap_jump(waveform):
        typical = (waveform[1:] - waveform[:-1]).abs().median()
        return float((waveform[0] - waveform[-1]).abs() / typical)

    assert wrap_jump(plain) > 10
    assert wrap_jump(periodic) < 3
    # Away from the edges both are equally faithful to the magnitudes.
    inner = slice(20, 80)
    for waveform in (plain, periodic):
        rebuilt = converter.waveform_to_mel(waveform[None])
        assert spectral_convergence(mel[..., inner], rebuilt[..., inner]) < 0.1


def test_periodic_needs_the_fast_method():
    converter = SpectrogramConverter()
    with pytest.raises(ParameterError, match="periodic=True needs method='fast'"):
        converter.mel_to_waveform(torch.ones(1, 512, 40), method="reference", periodic=True)
    with pytest.raises(ParameterError, match="periodic='yes'"):
        converter.mel_to_waveform(torch.ones(1, 512, 40), periodic="yes")  # type: ignore[arg-type]


def test_periodic_phase_initialisation_has_no_seam_on_noise():
    # Noise-like magnitudes (what an untrained model draws): the phase integration restarts
    # often, and a one-pass integration leaves a defect where the loop wraps.
    converter = SpectrogramConverter()
    mel = torch.rand(1, 512, 200, generator=torch.Generator().manual_seed(0)) ** 4 * 1e6
    waveform = converter.mel_to_waveform(mel, periodic=True)[0].double()
    local = torch.cat([waveform[-441:].diff(), waveform[:441].diff()])
    jump = (waveform[0] - waveform[-1]).abs() / local.pow(2).mean().sqrt()
    assert jump < 2.5  # measured ≈ 0.9; interior positions range up to ≈ 3.4
