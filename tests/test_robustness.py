"""Hostile input to the lower layers: every call ends in a valid result or a RiffusionError.

Property-based (hypothesis). The default profile keeps the file well under a minute; set
``HYPOTHESIS_PROFILE=slow`` for thousands of cases. Each property asserts the contract:
either a finite output of the documented shape, or a :class:`riffusion.RiffusionError` whose
message names the offending argument — never another exception type, never a partial file.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from riffusion import (
    Audio,
    AudioFileError,
    ImageFormatError,
    ParameterError,
    RiffusionError,
    SpectrogramParams,
    image_to_audio,
)
from riffusion.image import image_to_mel, load_image, mel_to_image, save_image, to_rgb_array
from riffusion.limits import MAX_SAMPLE_RATE
from riffusion.params import ExifTag

FAST = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# ------------------------------------------------------------------------------- strategies
sample_rates = st.one_of(
    st.integers(-10, 10),
    st.integers(1, 400_000),
    st.integers(10**6, 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**30), 10**30),
    st.booleans(),
    st.none(),
    st.text(max_size=4),
    st.binary(max_size=4),
)


def _assert_names(error: Exception, *names: str) -> None:
    message = str(error)
    assert any(name in message for name in names), f"{message!r} names none of {names}"


# ------------------------------------------------------------------------------------ audio
@FAST
@given(
    shape=st.lists(st.integers(0, 70), min_size=0, max_size=3),
    dtype=st.sampled_from(["float32", "float64", "int16", "int32", "uint8", "complex64", "bool"]),
    special=st.sampled_from([None, np.nan, np.inf, -np.inf, 1e300]),
    sample_rate=sample_rates,
)
def test_audio_construction_is_valid_or_a_named_error(shape, dtype, special, sample_rate):
    data = np.zeros(shape, dtype=dtype)
    if special is not None and data.size and np.issubdtype(data.dtype, np.floating):
        data = data.astype(np.float64)
        data.flat[0] = special
    try:
        audio = Audio(data, sample_rate=sample_rate)
    except ParameterError as error:
        _assert_names(error, "waveform", "sample_rate")
        return
    assert audio.waveform.dtype == np.float32 and audio.waveform.ndim == 2
    assert np.isfinite(audio.waveform).all()
    assert 1 <= audio.sample_rate <= MAX_SAMPLE_RATE


@FAST
@given(start=numbers, end=st.one_of(st.none(), numbers))
def test_slice_takes_numbers_only(start, end):
    audio = Audio(np.arange(100, dtype=np.float32) / 100, sample_rate=100)
    try:
        part = audio.slice(start, end)
    except ParameterError as error:
        _assert_names(error, "start_s", "end_s")
        return
    first = round(start * 100)
    assert part.waveform[0, 0] == pytest.approx(first / 100)


@FAST
@given(value=numbers)
def test_normalizers_take_numbers_only(value):
    audio = Audio(np.sin(np.arange(22050) / 5).astype(np.float32) * 0.5, sample_rate=22050)
    for call, name in (
        (lambda: audio.normalize_peak(value), "peak_dbfs"),
        (lambda: audio.normalize_loudness(value), "target_lufs"),
        (lambda: audio.normalize_loudness(-14.0, max_peak=value), "max_peak"),
    ):
        try:
            result = call()
        except ParameterError as error:
            _assert_names(error, name)
        else:
            assert np.isfinite(result.waveform).all() and result.peak <= 1.0 + 1e-6


@FAST
@given(rate=st.integers(1, 200_000))
def test_resample_any_rate_gives_the_expected_length(rate):
    audio = Audio(np.sin(np.arange(2000) / 7).astype(np.float32), sample_rate=8000)
    try:
        resampled = audio.resample(rate)
    except ParameterError as error:
        _assert_names(error, "sample_rate")
        assert math.ceil(2000 * rate / 8000) == 0 or "leaves no samples" in str(error)
        return
    assert abs(resampled.num_samples - 2000 * rate / 8000) <= 1
    assert np.isfinite(resampled.waveform).all()


def test_resample_between_coprime_rates_is_bounded_and_correct():
    # 44100 → 44101 Hz: torchaudio's kernel for these rates would take ~8 GB.
    time = np.arange(44100) / 44100
    tone = Audio((0.5 * np.sin(2 * np.pi * 1000 * time)).astype(np.float32), sample_rate=44100)
    out = tone.resample(44101)
    assert out.num_samples == 44101
    spectrum = np.abs(np.fft.rfft(out.waveform[0]))
    assert abs(np.argmax(spectrum) * 44101 / out.num_samples - 1000) <= 1.5
    assert 0.45 < out.peak < 0.55


def test_resample_refuses_outputs_beyond_the_limit():
    # 1e6 samples at 1 Hz to 384 kHz: 3.84e11 samples, far beyond the byte budget.
    audio = Audio(np.zeros((1, 1_000_000), np.float32), sample_rate=1)
    with pytest.raises(ParameterError, match="MAX_AUDIO_BYTES") as error:
        audio.resample(384_000)
    assert "sample_rate=384000" in str(error.value)


def test_many_channels_are_valid_and_transposed_input_is_named():
    ten_channels = Audio(np.zeros((10, 5), np.float32), sample_rate=8000)
    assert ten_channels.num_channels == 10
    with pytest.raises(ParameterError, match="transpose"):
        Audio(np.zeros((44100, 2), np.float32), sample_rate=44100)


def test_loudness_of_full_scale_white_noise_is_bs1770():
    # The K-weighting boosts highs by ~4 dB: a clamped filter reads about -3.3 LUFS here.
    noise = np.random.default_rng(0).uniform(-1, 1, (1, 5 * 44100)).astype(np.float32)
    audio = Audio(noise, sample_rate=44100)
    assert audio.loudness_lufs() == pytest.approx(-1.71, abs=0.05)
    bright = Audio(noise * 0.5, sample_rate=44100)
    assert bright.normalize_loudness(-14.0).loudness_lufs() == pytest.approx(-14.0, abs=0.05)


def test_slice_keeps_the_requested_part():
    audio = Audio(np.arange(1000, dtype=np.float32) / 1000, sample_rate=1000)
    part = audio.slice(0.25, 0.5)
    np.testing.assert_array_equal(part.waveform[0], np.arange(250, 500, dtype=np.float32) / 1000)


# ------------------------------------------------------------------------------ audio files
def _wav_bytes(rate: int = 8000, samples: int = 800, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros((samples, channels), np.float32), rate, format="WAV")
    return buffer.getvalue()


@FAST
@given(
    cut=st.integers(0, 900),
    flips=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=6),
    suffix=st.sampled_from([".wav", ".mp3", ".ogg", ".flac", ".txt", ""]),
)
def test_damaged_files_load_or_raise_audio_file_error(tmp_path_factory, cut, flips, suffix):
    data = bytearray(_wav_bytes())[: cut or None]
    for position, value in flips:
        if position < len(data):
            data[position] = value
    path = tmp_path_factory.mktemp("files") / f"clip{suffix}"
    path.write_bytes(bytes(data))
    try:
        audio = Audio.load(path)
    except AudioFileError as error:
        assert "clip" in str(error) or "<bytes>" in str(error)
        return
    assert np.isfinite(audio.waveform).all() and audio.num_samples >= 1


def test_lying_header_is_refused_before_reading():
    data = bytearray(_wav_bytes(rate=8000))
    data[24:28] = struct.pack("<I", 10_000_000)  # sample rate field
    with pytest.raises(AudioFileError, match="sample rate"):
        Audio.load(bytes(data))
    with pytest.raises(AudioFileError, match="audio source must be"):
        Audio.load(12345)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "rate", "match"),
    [
        ("clip.ogg", 250_000, "OGG Vorbis cannot store"),
        ("clip.mp3", 96_000, "MP3 cannot store"),
        ("clip.xyz", 8000, "extension"),
    ],
)
def test_unwritable_formats_fail_before_writing(tmp_path, name, rate, match):
    audio = Audio(np.zeros((1, 1000), np.float32), sample_rate=rate)
    with pytest.raises(AudioFileError, match=match):
        audio.save(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_bad_output_paths_raise_audio_file_errors(tmp_path):
    audio = Audio(np.zeros((1, 1000), np.float32), sample_rate=8000)
    with pytest.raises(AudioFileError, match="is a folder"):
        audio.save(tmp_path)
    with pytest.raises(AudioFileError, match="does not exist"):
        audio.save(tmp_path / "missing" / "x.wav")
    with pytest.raises(AudioFileError, match="str or pathlib.Path"):
        audio.save(b"x.wav")  # type: ignore[arg-type]
    with pytest.raises(AudioFileError, match="cannot write"):
        audio.save("/proc/riffusion-test.wav")  # read-only even for root
    with pytest.raises(AudioFileError, match="format='NOPE'"):
        audio.to_bytes("NOPE")
    with pytest.raises(AudioFileError, match="MP3 cannot store"):
        Audio(np.zeros((1, 100), np.float32), sample_rate=7).to_bytes("MP3")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------- images
MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV",
         "I", "I;16", "I;16B", "F"]


@FAST
@given(
    mode=st.sampled_from(MODES),
    width=st.integers(0, 64),
    height=st.sampled_from([0, 1, 8, 16]),
    fill=st.integers(0, 255),
)
def test_every_pil_mode_decodes_or_names_the_problem(mode, width, height, fill):
    base = Image.new("RGBA", (width, height), (fill, fill, fill, 255))
    if mode in ("I;16", "I;16B", "I", "F"):
        image = base.convert("L").convert("I").convert(mode)
    elif mode == "RGBa":
        image = base.convert("RGBa")
    else:
        image = base.convert(mode)
    params = SpectrogramParams(num_frequencies=16)
    try:
        mel = image_to_mel(image, params)
    except ImageFormatError as error:
        _assert_names(error, "size", "height")
        assert width == 0 or height != 16
        return
    assert mel.shape == (1, 16, width)
    assert bool((mel >= 0).all()) and bool((mel <= params.max_value).all())


@pytest.mark.parametrize(
    ("mode", "value", "grey"),
    [("I;16", 65535, 255), ("I;16", 257 * 100, 100), ("F", 200.4, 200), ("LA", (37, 10), 37),
     ("I", 90, 90)],
)
def test_high_bit_depth_and_alpha_modes_scale_to_eight_bits(mode, value, grey):
    image = Image.new(mode, (3, 2), value)
    assert (to_rgb_array(image) == grey).all()


@FAST
@given(
    exif=st.dictionaries(
        st.sampled_from([int(tag) for tag in ExifTag]), numbers, min_size=1, max_size=5
    )
)
def test_random_exif_gives_params_or_image_format_error(exif):
    try:
        params = SpectrogramParams.from_exif(exif)
    except ImageFormatError as error:
        _assert_names(error, *(f"tag {tag}" for tag in exif))
        return
    assert isinstance(params, SpectrogramParams)


@pytest.mark.parametrize(
    ("tag", "value"),
    [
        (ExifTag.SAMPLE_RATE, 10_000_000),
        (ExifTag.PADDED_DURATION_MS, 1e9),
        (ExifTag.NUM_FREQUENCIES, 10**6),
        (ExifTag.SAMPLE_RATE, 10**400),
    ],
)
def test_exif_asking_for_gigabytes_is_refused_at_once(tmp_path, tag, value):
    image = Image.new("RGB", (16, 512), "white")
    exif = image.getexif()
    exif[int(tag)] = value if value < 10**300 else str(value)
    image.save(tmp_path / "bomb.png", exif=exif)
    with pytest.raises(ImageFormatError):
        image_to_audio(tmp_path / "bomb.png")


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(100_000, 100_000), (70_000, 512), (0, 512)])
def test_png_headers_declaring_huge_or_empty_images_are_refused(tmp_path, size):
    path = tmp_path / "lying.png"
    path.write_bytes(_png_header_only(*size))
    with pytest.raises(ImageFormatError):
        load_image(path)


@FAST
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".png", ".jpg", ".wav", ""]))
def test_junk_image_files_raise_image_format_error(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("img") / f"junk{suffix}"
    path.write_bytes(data)
    with pytest.raises(ImageFormatError):
        load_image(path)


def test_image_writes_fail_cleanly(tmp_path):
    image = mel_to_image(np.ones((1, 8, 4), np.float32), SpectrogramParams(num_frequencies=8))
    with pytest.raises(ImageFormatError, match="is a folder"):
        save_image(image, tmp_path)
    with pytest.raises(ImageFormatError, match="extension"):
        save_image(image, tmp_path / "x.unknown")
    with pytest.raises(ImageFormatError, match="cannot write"):
        save_image(image, "/proc/riffusion-test.png")
    with pytest.raises(ImageFormatError, match="does not exist"):
        save_image(image, tmp_path / "no" / "x.png")
    assert list(tmp_path.iterdir()) == []


@FAST
@given(
    kwargs=st.dictionaries(
        st.sampled_from(
            ["sample_rate", "step_size_ms", "window_duration_ms", "padded_duration_ms",
             "num_frequencies", "min_frequency_hz", "max_frequency_hz", "power_for_image",
             "max_value", "stereo"]
        ),
        numbers,
        max_size=3,
    )
)
def test_params_are_valid_or_name_the_field(kwargs):
    try:
        params = SpectrogramParams(**kwargs)
    except ParameterError as error:
        _assert_names(error, *kwargs)
        return
    assert params.n_fft >= params.win_length >= 2 and params.hop_length >= 1


def test_output_file_leaves_nothing_behind_when_the_write_fails(tmp_path, monkeypatch):
    audio = Audio(np.zeros((1, 1000), np.float32), sample_rate=8000)

    def broken_write(*args, **kwargs):
        Path(args[0]).write_bytes(b"partial")
        raise soundfile.LibsndfileError(0, "disk full")

    monkeypatch.setattr(soundfile, "write", broken_write)
    with pytest.raises(AudioFileError, match="cannot write"):
        audio.save(tmp_path / "clip.wav")
    assert os.listdir(tmp_path) == []


def test_riffusion_errors_share_one_base():
    for error in (ParameterError, AudioFileError, ImageFormatError):
        assert issubclass(error, RiffusionError) and issubclass(error, ValueError)
