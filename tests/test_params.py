from __future__ import annotations

import dataclasses

import pytest

from riffusion import ImageFormatError, ParameterError, RiffusionError, SpectrogramParams
from riffusion.params import ExifTag


def test_defaults_are_riffusion_model_v1():
    params = SpectrogramParams()
    assert params.sample_rate == 44100
    assert (params.n_fft, params.win_length, params.hop_length) == (17640, 4410, 441)
    assert params.num_frequencies == 512
    assert params.mel_scale_type == "htk" and params.mel_scale_norm is None
    assert (params.min_frequency_hz, params.max_frequency_hz) == (0, 10000)
    assert params.power_for_image == 0.25
    assert params.stereo is False
    assert params.max_value == 30e6
    assert params.pixels_per_second == 100.0
    # Riffusion's frame convention: (w − 1)·hop samples, n // hop + 1 columns.
    assert params.samples_for_width(512) == 225351  # 5.11 s, the length of Riffusion's MP3s
    assert params.width_for_samples(225792) == 513  # 5.12 s
    assert params.width_for_samples(225351) == 512
    assert params.width_for_samples(round(5.678 * 44100)) == 568  # Riffusion's test clip
    # Loops: a period of w columns is w·hop samples.
    assert params.samples_for_width(512, periodic=True) == 225792
    assert params.width_for_samples(225792, periodic=True) == 512


@pytest.mark.parametrize("width", [1, 2, 3, 64, 511, 512, 513, 1000])
@pytest.mark.parametrize("periodic", [False, True])
def test_widths_and_samples_round_trip(width, periodic):
    params = SpectrogramParams()
    samples = params.samples_for_width(width, periodic=periodic)
    assert params.width_for_samples(samples, periodic=periodic) == width
    # Every sample count between two widths' lengths still maps to the lower width.
    assert params.width_for_samples(samples + params.hop_length - 1, periodic=periodic) == width


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None])
def test_width_and_sample_counts_are_checked(bad):
    with pytest.raises(ParameterError, match="num_samples"):
        SpectrogramParams().width_for_samples(bad)
    with pytest.raises(ParameterError, match="width"):
        SpectrogramParams().samples_for_width(bad)
    with pytest.raises(ParameterError, match="width=0"):
        SpectrogramParams().samples_for_width(0)


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SpectrogramParams().sample_rate = 22050  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"sample_rate": 0}, "sample_rate=0"),
        ({"sample_rate": -44100}, "sample_rate=-44100"),
        ({"sample_rate": 44100.5}, "sample_rate=44100.5"),
        ({"step_size_ms": 0}, "step_size_ms=0"),
        ({"step_size_ms": float("nan")}, "step_size_ms=nan"),
        ({"window_duration_ms": -1}, "window_duration_ms=-1"),
        ({"window_duration_ms": 500}, "must not exceed padded_duration_ms=400"),
        ({"min_frequency_hz": 10000}, "min_frequency_hz=10000"),
        ({"max_frequency_hz": 30000}, "Nyquist"),
        ({"num_frequencies": 0}, "num_frequencies=0"),
        ({"power_for_image": 0}, "power_for_image=0"),
        ({"mel_scale_type": "bark"}, "mel_scale_type='bark'"),
        ({"mel_scale_norm": "l2"}, "mel_scale_norm='l2'"),
        ({"stereo": "yes"}, "stereo='yes'"),
        ({"step_size_ms": 0.001}, "at least one sample"),
    ],
)
def test_invalid_values_name_field_and_value(changes, fragment):
    with pytest.raises(ParameterError, match=fragment.replace("(", r"\(")) as info:
        SpectrogramParams(**changes)
    assert isinstance(info.value, RiffusionError) and isinstance(info.value, ValueError)


def test_exif_round_trip_of_non_default_params():
    params = SpectrogramParams(
        sample_rate=22050, stereo=True, step_size_ms=5, num_frequencies=256, max_frequency_hz=8000
    )
    exif = {int(tag): value for tag, value in params.to_exif().items()}
    assert exif[11000] == 22050 and exif[11005] == 1 and exif[11040] == 256
    assert SpectrogramParams.from_exif(exif) == params


def test_exif_missing_tags_keep_base():
    base = SpectrogramParams(num_frequencies=256)
    assert SpectrogramParams.from_exif({int(ExifTag.SAMPLE_RATE): 22050}, base=base) == (
        SpectrogramParams(num_frequencies=256, sample_rate=22050)
    )


@pytest.mark.parametrize(
    ("exif", "fragment"),
    [
        ({11000: -5}, "sample_rate"),
        ({11040: 0}, "num_frequencies"),
        ({11040: 12.5}, "11040"),
        ({11005: 7}, "expected 0 or 1"),
        ({11070: "loud"}, "not a number"),
        ({11060: float("inf")}, "not finite"),
    ],
)
def test_impossible_exif_values_raise(exif, fragment):
    with pytest.raises(ImageFormatError, match=fragment):
        SpectrogramParams.from_exif(exif)
