"""Pins for riffusion.params: every refused value, every boundary, EXIF field by field.

Lengths are pinned only where both frame conventions agree (``width_for_samples`` is
``n // hop + 1`` in both; ``samples_for_width`` grows by one hop per column).
"""

from __future__ import annotations

import pytest

from riffusion import ImageFormatError, ParameterError, SpectrogramParams
from riffusion.params import ExifTag
from tests.errors import assert_refused, refused

# Small, valid parameters at 1 kHz: hop 1, window 100, FFT 400 samples, Nyquist 500 Hz.
KHZ = {"sample_rate": 1000, "step_size_ms": 1, "max_frequency_hz": 500}


def test_derived_sample_counts_truncate():
    # 11 ms at 22050 Hz is 242.55 samples: truncated (not rounded) to 242.
    params = SpectrogramParams(
        sample_rate=22050, step_size_ms=11, window_duration_ms=99.99, padded_duration_ms=300.01
    )
    assert params.hop_length == 242
    assert params.win_length == 2204  # 2204.78
    assert params.n_fft == 6615  # 6615.22
    assert params.pixels_per_second == 22050 / 242
    assert (params.num_channels, params.replace(stereo=True).num_channels) == (1, 2)


def test_width_for_samples_counts_centred_frames():
    params = SpectrogramParams()  # hop 441
    assert [params.width_for_samples(n) for n in (0, 440, 441, 4415)] == [1, 1, 2, 11]
    for width in (1, 2, 512):
        step = params.samples_for_width(width + 1) - params.samples_for_width(width)
        assert step == 441
    assert params.samples_for_width(1) in (0, 441)
    assert_refused(
        params.width_for_samples, -1, named="num_samples=-1", phrase="non-negative integer"
    )


def test_replace_validates_and_keeps_other_fields():
    params = SpectrogramParams(num_frequencies=256)
    changed = params.replace(sample_rate=22050)
    assert (changed.sample_rate, changed.num_frequencies) == (22050, 256)
    assert params.sample_rate == 44100
    assert_refused(
        params.replace, sample_rate=0, named="sample_rate=0", phrase="must be a positive integer"
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"sample_rate": 384_000},
        {"num_frequencies": 2048},
        {"num_frequencies": 1},
        # The lowest possible rate: 1 Hz with a 1-sample hop and a 2-sample window.
        {
            "sample_rate": 1,
            "step_size_ms": 1000,
            "window_duration_ms": 2000,
            "padded_duration_ms": 2000,
            "max_frequency_hz": 0.5,
        },
        {"max_frequency_hz": 22050},  # exactly Nyquist
        # Durations of exactly an hour (at 1 Hz, so that the FFT stays small).
        {
            "sample_rate": 1,
            "step_size_ms": 3_600_000,
            "window_duration_ms": 3_600_000,
            "padded_duration_ms": 3_600_000,
            "max_frequency_hz": 0.5,
        },
        {"min_frequency_hz": 0.0, "max_frequency_hz": 2.5},  # exactly one STFT bin wide
        {"step_size_ms": 400},  # hop == n_fft
        {"window_duration_ms": 400},  # window == padded window
        {"mel_scale_norm": "slaney", "mel_scale_type": "slaney"},
        {**KHZ},  # hop of exactly one sample
        {**KHZ, "window_duration_ms": 2},  # window of exactly two samples
        # FFT of exactly MAX_FFT_SIZE samples.
        {"sample_rate": 262_144, "padded_duration_ms": 1000, "num_frequencies": 256},
        # Filterbank of exactly 32768 × 2048 = MAX_FILTERBANK_SIZE entries (n_fft 65535).
        {"sample_rate": 65_535, "padded_duration_ms": 1000, "num_frequencies": 2048},
    ],
)
def test_boundaries_are_accepted(changes):
    params = SpectrogramParams(**changes)
    for name, value in changes.items():
        assert getattr(params, name) == value


@pytest.mark.parametrize(
    ("changes", "named", "expected"),
    [
        ({"sample_rate": True}, "sample_rate=True", "must be a positive integer (Hz)"),
        ({"sample_rate": "44100"}, "sample_rate='44100'", "must be a positive integer (Hz)"),
        ({"sample_rate": 0}, "sample_rate=0", "must be a positive integer of at most 384000 Hz"),
        (
            {"sample_rate": 384_001},
            "sample_rate=384001",
            "must be a positive integer of at most 384000 Hz",
        ),
        ({"stereo": 1}, "stereo=1", "must be True or False"),
        ({"num_frequencies": True}, "num_frequencies=True", "must be a positive integer"),
        ({"num_frequencies": 64.0}, "num_frequencies=64.0", "must be a positive integer"),
        ({"num_frequencies": 0}, "num_frequencies=0", "must be between 1 and 2048"),
        ({"num_frequencies": 2049}, "num_frequencies=2049", "must be between 1 and 2048"),
        ({"min_frequency_hz": -1}, "min_frequency_hz=-1", "must be a finite number >= 0"),
        ({"min_frequency_hz": True}, "min_frequency_hz=True", "must be a finite number >= 0"),
        ({"max_frequency_hz": "8k"}, "max_frequency_hz='8k'", "must be a finite number >= 0"),
        (
            {"max_frequency_hz": float("inf")},
            "max_frequency_hz=inf",
            "must be a finite number >= 0",
        ),
        (
            {**KHZ, "step_size_ms": 0.5},
            "step_size_ms=0.5",
            ("a hop of 0 samples at 1000 Hz", "at least one sample"),
        ),
        (
            {**KHZ, "window_duration_ms": 1.5},
            "window_duration_ms=1.5",
            ("a window of 1 samples at 1000 Hz", "at least 2"),
        ),
        (
            {"sample_rate": 262_144, "padded_duration_ms": 1000.01, "num_frequencies": 256},
            "padded_duration_ms=1000.01",
            ("an FFT of 262146 samples at 262144 Hz", "at most 262144"),
        ),
        (
            {"sample_rate": 65_536, "padded_duration_ms": 1000, "num_frequencies": 2048},
            "padded_duration_ms=1000",
            ("num_frequencies=2048", "mel filterbank of 32769×2048 entries", "at most 67108864"),
        ),
        (
            {"step_size_ms": 401},
            "step_size_ms=401",
            "must not exceed padded_duration_ms=400.0",
        ),
        (
            {"window_duration_ms": 400.5},
            "window_duration_ms=400.5",
            "must not exceed padded_duration_ms=400.0",
        ),
        (
            {"min_frequency_hz": 5000, "max_frequency_hz": 5000},
            "min_frequency_hz=5000",
            "must be below max_frequency_hz=5000",
        ),
        (
            {"min_frequency_hz": 100.0, "max_frequency_hz": 102.4},
            "min_frequency_hz=100.0",
            ("max_frequency_hz=102.4", "narrower than one STFT bin (2.5 Hz"),
        ),
        (
            {"step_size_ms": 3_600_000.5, "padded_duration_ms": 3_600_001},
            "step_size_ms=3600000.5",
            "must be at most 3.6e+06 ms",
        ),
        (
            {"max_frequency_hz": 22050.5},
            "max_frequency_hz=22050.5",
            ("above the Nyquist frequency 22050.0 Hz", "sample_rate=44100"),
        ),
        ({"mel_scale_norm": "htk"}, "mel_scale_norm='htk'", "must be None or 'slaney'"),
        ({"mel_scale_type": None}, "mel_scale_type=None", "must be 'htk' or 'slaney'"),
    ],
)
def test_invalid_values_are_refused(changes, named, expected):
    assert_refused(SpectrogramParams, **changes, named=named, phrase=expected)


@pytest.mark.parametrize(
    "name",
    ["step_size_ms", "window_duration_ms", "padded_duration_ms", "power_for_image", "max_value"],
)
@pytest.mark.parametrize("value", [0, -1.0, float("inf"), float("nan"), True, "1", None])
def test_positive_finite_fields(name, value):
    assert_refused(
        SpectrogramParams,
        **{name: value},
        named=f"{name}={value!r}",
        phrase="must be a positive finite number",
    )


@pytest.mark.parametrize("value", [10**400, -(10**400), 1e308])
def test_extreme_durations_are_refused_before_any_length_is_computed(value):
    # 10**400 overflows float(); 1e308 ms times 44.1 samples per ms overflows the hop.
    message = assert_refused(
        SpectrogramParams, step_size_ms=value, named=f"step_size_ms={value!r}", phrase="must be"
    )
    assert "must be a positive finite number" in message or "must be at most" in message


def test_positive_finite_fields_accept_small_positive_values():
    assert SpectrogramParams(power_for_image=1e-3).power_for_image == 1e-3
    assert SpectrogramParams(max_value=1e-9).max_value == 1e-9


# -------------------------------------------------------------------------------------- EXIF
NON_DEFAULT = SpectrogramParams(
    sample_rate=22050,
    stereo=True,
    step_size_ms=12.5,
    window_duration_ms=50,
    padded_duration_ms=200,
    num_frequencies=256,
    min_frequency_hz=20,
    max_frequency_hz=8000.5,
    power_for_image=0.5,
)


def test_to_exif_exact_tags_values_and_types():
    exif = NON_DEFAULT.to_exif()
    assert exif == {
        11000: 22050,
        11005: 1,
        11010: 12.5,
        11020: 50,
        11030: 200,
        11040: 256,
        11050: 20,
        11060: 8000.5,
        11070: 0.5,
    }
    types = {int(tag): type(value) for tag, value in exif.items()}
    assert types == {
        11000: int,
        11005: int,
        11010: float,
        11020: int,
        11030: int,
        11040: int,
        11050: int,
        11060: float,
        11070: float,
    }
    assert SpectrogramParams().to_exif()[ExifTag.STEREO] == 0
    assert [int(tag) for tag in ExifTag] == [
        11000,
        11005,
        11010,
        11020,
        11030,
        11040,
        11050,
        11060,
        11070,
        11080,
    ]


def test_from_exif_reads_every_tag_into_its_field():
    exif = {int(tag): value for tag, value in NON_DEFAULT.to_exif().items()}
    parsed = SpectrogramParams.from_exif(exif)
    assert parsed == NON_DEFAULT
    assert type(parsed.sample_rate) is int and type(parsed.num_frequencies) is int
    assert parsed.stereo is True


def test_from_exif_converts_kinds():
    parsed = SpectrogramParams.from_exif(
        {11000: 32000.0, 11005: 0.0, 11010: 5, 11040: 128.0, 11070: 1}
    )
    assert parsed.sample_rate == 32000 and type(parsed.sample_rate) is int
    assert parsed.stereo is False
    assert parsed.step_size_ms == 5.0 and type(parsed.step_size_ms) is float
    assert parsed.num_frequencies == 128 and type(parsed.num_frequencies) is int
    assert parsed.power_for_image == 1.0 and type(parsed.power_for_image) is float
    assert SpectrogramParams.from_exif({11005: 1.0}).stereo is True


def test_from_exif_refuses_what_is_not_exif():
    assert_refused(
        SpectrogramParams.from_exif,
        {},
        base={"sample_rate": 8000},
        named="base",
        phrase=("must be a SpectrogramParams or None", "got dict"),
    )
    assert_refused(
        SpectrogramParams.from_exif,
        [(11000, 8000)],
        named="exif",
        phrase=("must be a mapping of tag ids", "got list"),
    )


def test_from_exif_ignores_other_tags_and_keeps_base():
    base = SpectrogramParams(num_frequencies=64, max_value=5.0)
    assert SpectrogramParams.from_exif({}) == SpectrogramParams()
    assert SpectrogramParams.from_exif({11080: 123.0, 274: 1}, base=base) == base
    assert SpectrogramParams.from_exif({11000: 16000, 11060: 8000}, base=base) == base.replace(
        sample_rate=16000, max_frequency_hz=8000
    )


class _Raising:
    def __init__(self, error: type[Exception]) -> None:
        self.error = error

    def __float__(self) -> float:
        raise self.error("no float")

    def __repr__(self) -> str:
        return f"<{self.error.__name__}>"


@pytest.mark.parametrize(
    ("exif", "named", "expected"),
    [
        ({11000: "44100"}, "EXIF tag 11000 (sample_rate) holds '44100'", "not a number"),
        ({11010: b"10"}, "EXIF tag 11010 (step_size_ms) holds b'10'", "not a number"),
        ({11020: None}, "EXIF tag 11020 (window_duration_ms) holds None", "not a number"),
        (
            {11030: _Raising(ValueError)},
            "EXIF tag 11030 (padded_duration_ms) holds <ValueError>",
            "not a number",
        ),
        (
            {11050: _Raising(ZeroDivisionError)},
            "EXIF tag 11050 (min_frequency_hz) holds <ZeroDivisionError>",
            "not a number",
        ),
        ({11040: 10**400}, f"EXIF tag 11040 (num_frequencies) holds {10**400!r}", "not a number"),
        ({11060: float("nan")}, "EXIF tag 11060 (max_frequency_hz) holds nan", "not finite"),
        ({11070: float("-inf")}, "EXIF tag 11070 (power_for_image) holds -inf", "not finite"),
        ({11040: 12.5}, "EXIF tag 11040 (num_frequencies) holds 12.5", "expected an integer"),
        ({11000: 44100.5}, "EXIF tag 11000 (sample_rate) holds 44100.5", "expected an integer"),
        ({11005: 2}, "EXIF tag 11005 (stereo) holds 2", "expected 0 or 1"),
        ({11005: 0.5}, "EXIF tag 11005 (stereo) holds 0.5", "expected 0 or 1"),
        ({11005: -1}, "EXIF tag 11005 (stereo) holds -1", "expected 0 or 1"),
    ],
)
def test_from_exif_bad_values_are_refused(exif, named, expected):
    with refused(ImageFormatError, named=named, phrase=expected) as info:
        SpectrogramParams.from_exif(exif)
    assert info.value.__cause__ is None or isinstance(info.value.__cause__, Exception)


def test_from_exif_impossible_combination_names_the_tags():
    with refused(
        ImageFormatError,
        # Every tag read, in tag order, with the value it gave.
        mentions="tag 11000 (sample_rate)=8000, tag 11060 (max_frequency_hz)=9000.0",
        phrase=("EXIF parameters are impossible", "Nyquist frequency 4000.0 Hz"),
    ) as info:
        SpectrogramParams.from_exif({11060: 9000, 11000: 8000})
    assert isinstance(info.value.__cause__, ParameterError)
