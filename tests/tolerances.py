"""How the tests compare results that pass through CPU-dependent float kernels.

MKL, pocketfft, oneDNN and ATen pick their kernels by the CPU's instruction set (AVX-512, AVX2,
SSE, NEON): the same FFT, matrix product or ``exp`` rounds differently in the last bits from
one machine to another. The tests assert exact equality only where it holds by construction:
integer arithmetic, correctly rounded IEEE operations (``+ - * /``, ``sqrt``, conversions), or
the same code path on the same device with the same settings (a result computed twice in one
process). Anything else is compared with a tolerance derived from the computation, stated
beside it, and tight enough that a sign flip or an off-by-one still fails.

Riffusion compatibility of two spectrogram images (:func:`assert_images_match`): same size,
≥ 99.9 % of the pixels equal and none off by more than one grey level — wherever the pixels
are above the float32 rounding floor (:data:`FLOAT32_FLOOR_LEVEL`).
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio
from PIL import Image

from riffusion.params import SpectrogramParams

FLOAT32_EPS = float(np.finfo(np.float32).eps)
"""2⁻²³: float32's spacing at 1 (its unit roundoff is half of it)."""

STFT_ROUNDING = FLOAT32_EPS / 2 * np.log2(17640)
"""≈ 8.4e-7: the absolute error of a float32 FFT of Riffusion's 17640-point frames, relative to
the frame's largest magnitude (the classic bound: unit roundoff × log2 n). Bins fainter than
this are rounding noise, and two FFT kernels give them unrelated values."""

FLOAT32_FLOOR_LEVEL = 240
"""The faintest grey level two float32 encodings of the same audio must agree on (± 1).

A pixel at level ``L`` holds a magnitude of at least ``r = ((254 − L) / 255)⁴`` of the image's
peak (the encoding is ``255 − 255 · r^¼``, truncated). A magnitude error ``δ`` (relative to the
peak) moves the pixel by ``64 · r^(−¾) · δ`` levels. At level 240, ``r ≥ 9.1e-6`` (−101 dB) and
:data:`STFT_ROUNDING` moves it by at most 0.32 level, so the pixel can only cross one level
boundary; at level 247 the same error is worth 2.3 levels, and at 252 it is 30. Fainter pixels
are only required to stay faint (at least ``FLOAT32_FLOOR_LEVEL − 1``)."""


def _pixels(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image)
    return np.asarray(image).astype(np.int16)


def assert_images_match(
    actual: Image.Image | np.ndarray,
    expected: Image.Image | np.ndarray,
    *,
    floor_level: int | None = FLOAT32_FLOOR_LEVEL,
    min_equal_share: float = 0.999,
) -> None:
    """Riffusion compatibility: same size, ≥ 99.9 % equal, none off by more than one level.

    Args:
        actual: the image under test (PIL or an array of grey levels).
        expected: the image it must match.
        floor_level: pixels fainter than this in ``expected`` (see
            :data:`FLOAT32_FLOOR_LEVEL`) are only required to stay at least
            ``floor_level − 1`` in ``actual``; ``None`` holds every pixel to the rule.
        min_equal_share: the share of compared pixels that must be exactly equal.
    """
    got, want = _pixels(actual), _pixels(expected)
    assert got.shape == want.shape, f"image shape {got.shape} != expected {want.shape}"
    compared = np.ones(want.shape, bool) if floor_level is None else want <= floor_level
    difference = np.abs(got - want)[compared]
    assert difference.size > 0, "no pixel above the rounding floor to compare"
    equal_share = float(np.mean(difference == 0))
    assert equal_share >= min_equal_share, (
        f"only {equal_share:.4%} of {difference.size} pixels equal (need {min_equal_share:.1%})"
    )
    assert difference.max() <= 1, f"a pixel differs by {difference.max()} grey levels (max 1)"
    if floor_level is not None:
        faint = got[~compared]
        assert faint.size == 0 or faint.min() >= floor_level - 1, (
            f"a pixel below the rounding floor in the expected image is {faint.min()} here "
            f"(must stay >= {floor_level - 1})"
        )


FILTERBANK_ROUNDING = 1e-4
"""Bound on ``|fast − reference| / peak`` for the two forward transforms.

They share the STFT frames but not the filterbank: torchaudio's (the reference's) is evaluated in
float32, its weights off by up to 4.9e-5 from the exact ones that ``mel_filterbank`` rounds
(``test_filterbank_matches_torchaudio_and_is_cached``). A band's error is at most that times the
band's summed magnitudes, which for the loudest band is about twice the peak mel value: 1e-4 of
the peak (measured up to 2.5e-5 on the test signals). One bin of shift in the STFT or a wrong
sign moves the loud bands by several percent of the peak."""


def assert_mel_matches_reference(fast: torch.Tensor, reference: torch.Tensor) -> None:
    """The fast forward transform's mel magnitudes equal the reference's to rounding."""
    assert fast.shape == reference.shape and fast.dtype == reference.dtype
    peak = float(reference.max())
    torch.testing.assert_close(fast, reference, rtol=0, atol=FILTERBANK_ROUNDING * peak)


def torchaudio_filterbank_float64(
    params: SpectrogramParams, *, num_freqs: int | None = None
) -> torch.Tensor:
    """torchaudio's ``melscale_fbanks`` for ``params``, evaluated in float64.

    torchaudio builds its frequency grids with the default dtype; setting it to float64 for the
    call (tests run in one thread) evaluates the very formulas Riffusion used in double
    precision: the oracle for :func:`riffusion.spectrogram.mel_filterbank`.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return torchaudio.functional.melscale_fbanks(
            n_freqs=params.n_fft // 2 + 1 if num_freqs is None else num_freqs,
            f_min=float(params.min_frequency_hz),
            f_max=float(params.max_frequency_hz),
            n_mels=params.num_frequencies,
            sample_rate=params.sample_rate,
            norm=params.mel_scale_norm,
            mel_scale=params.mel_scale_type,
        )
    finally:
        torch.set_default_dtype(previous)
