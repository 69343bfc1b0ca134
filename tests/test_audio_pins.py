"""Pins for riffusion.audio: exact samples, hand-computed edits, refused inputs, limits.

Limits that would need gigabytes to reach (``MAX_AUDIO_SAMPLES``, ``MAX_DURATION_S``) are
lowered with ``monkeypatch`` so that the comparisons themselves are tested at their boundary.
"""

from __future__ import annotations

import errno
import io
import warnings

import numpy as np
import pyloudnorm
import pytest
import soundfile
import torch
import torchaudio
from scipy.signal import resample_poly

import riffusion.audio as audio_module
from riffusion import Audio, AudioFileError
from tests.errors import assert_refused

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics

RAMP = np.arange(10, dtype=np.float32) / 10  # 0.0, 0.1, ... 0.9


def _formats() -> str:
    return ", ".join(sorted(soundfile.available_formats()))


# ----------------------------------------------------------------------------- construction
def test_construction_converts_to_read_only_float32_channels_first():
    audio = Audio(np.array([1, -2, 3], dtype=np.int16), sample_rate=np.int64(8000))
    assert audio.waveform.dtype == np.float32 and audio.waveform.shape == (1, 3)
    assert audio.waveform.tolist() == [[1.0, -2.0, 3.0]]
    assert audio.sample_rate == 8000 and type(audio.sample_rate) is int
    assert not audio.waveform.flags.writeable and audio.waveform.flags.c_contiguous
    tensor = torch.tensor([[0.5, -0.25]], requires_grad=True)
    assert Audio(tensor, 8000).waveform.tolist() == [[0.5, -0.25]]
    strided = np.arange(12, dtype=np.float64).reshape(3, 4).T  # (4, 3), not contiguous
    assert Audio(strided, 8000).waveform.tolist() == strided.tolist()


_CHANNELS_FIRST = ("must be (channels, samples) or (samples,)",)
_NOT_FINITE = ("NaN or infinite samples", "beyond float32's range")


@pytest.mark.parametrize(
    ("waveform", "rate", "named", "expected"),
    [
        (np.array(["a"]), 8000, "waveform dtype <U1", "must be real numbers"),
        (np.array([1j]), 8000, "waveform dtype complex128", "must be real numbers"),
        (np.array([True]), 8000, "waveform dtype bool", "must be real numbers"),
        (np.zeros((1, 1, 1)), 8000, "waveform of shape (1, 1, 1)", _CHANNELS_FIRST),
        (np.zeros(()), 8000, "waveform of shape ()", _CHANNELS_FIRST),
        (np.zeros((1, 0)), 8000, "waveform of shape (1, 0)", "holds no samples"),
        (np.zeros((0, 5)), 8000, "waveform of shape (0, 5)", "holds no samples"),
        (np.zeros(0), 8000, "waveform of shape (1, 0)", "holds no samples"),
        (
            np.zeros((65, 1)),
            8000,
            "waveform of shape (65, 1)",
            ("more than 64 channels", "transpose it"),
        ),
        (np.zeros(3), True, "sample_rate=True", "must be a positive integer (Hz)"),
        (np.zeros(3), 8000.0, "sample_rate=8000.0", "must be a positive integer (Hz)"),
        (np.zeros(3), 0, "sample_rate=0", "must be a positive integer of at most 384000 Hz"),
        (
            np.zeros(3),
            384_001,
            "sample_rate=384001",
            "must be a positive integer of at most 384000 Hz",
        ),
        (np.array([0.0, 1e300]), 8000, "waveform", _NOT_FINITE),
        (np.array([0.0, -np.inf]), 8000, "waveform", _NOT_FINITE),
    ],
)
def test_bad_construction_is_refused(waveform, rate, named, expected):
    assert_refused(Audio, waveform, rate, named=named, phrase=expected)


def test_float32_overflow_is_an_error_not_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_refused(
            Audio, np.array([0.0, 1e300]), 8000, named="waveform", phrase="beyond float32's range"
        )


def test_construction_limits_are_inclusive(monkeypatch):
    assert Audio(np.zeros((64, 1)), 384_000).num_channels == 64
    monkeypatch.setattr(audio_module, "MAX_AUDIO_SAMPLES", 10)
    assert Audio(np.zeros(10), 1).num_samples == 10
    assert_refused(
        Audio,
        np.zeros((2, 11)),
        1,
        named="waveform of shape (2, 11)",
        phrase=("more than 10 samples per channel", "MAX_AUDIO_SAMPLES"),
    )


def test_facts_repr_and_equality():
    audio = Audio(np.array([[0.1, -0.7, 0.3], [0.0, 0.2, -0.1]]), sample_rate=2)
    assert (audio.num_channels, audio.num_samples, audio.duration_s) == (2, 3, 1.5)
    assert audio.peak == pytest.approx(0.7) and type(audio.peak) is float
    assert repr(audio) == "Audio(channels=2, samples=3, sample_rate=2, duration_s=1.500)"
    assert audio == Audio(audio.waveform.copy(), 2)
    assert audio != Audio(audio.waveform, 3)
    assert audio != Audio(audio.waveform * 2, 2)
    assert audio.__eq__("audio") is NotImplemented
    with pytest.raises(TypeError):
        hash(audio)
    tensor = audio.to_tensor()
    assert tensor.dtype == torch.float32 and tensor.tolist() == audio.waveform.tolist()
    tensor[0, 0] = 5.0
    assert audio.waveform[0, 0] == np.float32(0.1)


# ------------------------------------------------------------------------------------- I/O
def test_to_bytes_defaults_per_format():
    audio = Audio(np.zeros((1, 800)), 8000)
    for format, subtype in [("WAV", "PCM_16"), ("flac", "PCM_16"), ("OGG", "VORBIS")]:
        info = soundfile.info(io.BytesIO(audio.to_bytes(format)))
        assert (info.format, info.subtype, info.samplerate) == (format.upper(), subtype, 8000)
    info = soundfile.info(io.BytesIO(audio.to_bytes()))
    assert (info.format, info.subtype) == ("WAV", "PCM_16")
    info = soundfile.info(io.BytesIO(audio.to_bytes("AIFF", "PCM_24")))
    assert (info.format, info.subtype) == ("AIFF", "PCM_24")


def test_to_bytes_keeps_exact_samples_clipped():
    audio = Audio(np.array([[2.0, -3.0, 0.5, -0.25], [0.125, 0.0, -1.0, 1.0]]), 8000)
    data, rate = soundfile.read(io.BytesIO(audio.to_bytes("WAV", "FLOAT")), dtype="float32")
    assert rate == 8000
    assert data.T.tolist() == [[1.0, -1.0, 0.5, -0.25], [0.125, 0.0, -1.0, 1.0]]


@pytest.mark.parametrize(
    ("format", "subtype", "rate", "named", "mentions", "expected"),
    [
        (
            "XYZ",
            None,
            8000,
            "format='XYZ'",
            "in-memory audio",
            ("not an audio format libsndfile writes", f"use one of {_formats()}"),
        ),
        (
            5,
            None,
            8000,
            "format=5",
            "in-memory audio",
            ("not an audio format libsndfile writes", f"use one of {_formats()}"),
        ),
        ("WAV", 16, 8000, "subtype=16", "in-memory audio", "must be a string such as 'PCM_16'"),
        (
            "mp3",
            None,
            96_000,
            None,
            ("sample_rate=96000 Hz", "in-memory audio"),
            ("MP3 cannot store", "8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000"),
        ),
        (
            "ogg",
            None,
            192_001,
            None,
            ("sample_rate=192001 Hz", "in-memory audio"),
            ("OGG Vorbis cannot store", "at most 192000 Hz"),
        ),
    ],
)
def test_unencodable_requests_are_refused(format, subtype, rate, named, mentions, expected):
    audio = Audio(np.zeros((1, 100)), rate)
    assert_refused(
        audio.to_bytes,
        format,
        subtype,
        error=AudioFileError,
        named=named,
        mentions=mentions,
        phrase=expected,
    )


def test_encoders_at_their_rate_boundaries():
    info = soundfile.info(io.BytesIO(Audio(np.zeros((1, 4800)), 192_000).to_bytes("OGG")))
    assert (info.format, info.samplerate) == ("OGG", 192_000)
    data = Audio(np.zeros((1, 2400)), 48_000).to_bytes("MP3")
    assert soundfile.info(io.BytesIO(data)).samplerate == 48_000


def test_to_bytes_encoder_failure_is_named():
    audio = Audio(np.zeros((1, 100)), 8000)
    assert_refused(
        audio.to_bytes,
        "WAV",
        "VORBIS",
        error=AudioFileError,
        named="cannot encode audio as 'WAV'",
        phrase="cannot encode",
    )


def test_save_formats_subtypes_and_exact_samples(tmp_path):
    audio = Audio(np.array([[0.5, -2.0, 0.25], [0.0, 0.125, 3.0]]), 8000)
    expected = [[0.5, -1.0, 0.25], [0.0, 0.125, 1.0]]
    path = audio.save(tmp_path / "a.WAV", subtype="FLOAT")
    assert path == tmp_path / "a.WAV"
    assert soundfile.info(path).subtype == "FLOAT"
    assert Audio.load(path).waveform.tolist() == expected
    for name, format, subtype in [
        ("b.wav", "WAV", "PCM_16"),
        ("c.flac", "FLAC", "PCM_16"),
        ("d.ogg", "OGG", "VORBIS"),
        ("e.mp3", "MP3", "MPEG_LAYER_III"),
    ]:
        info = soundfile.info(audio.save(tmp_path / name))
        assert (info.format, info.subtype, info.channels) == (format, subtype, 2)
    raw = audio.save(tmp_path / "f.bin", format="WAV", subtype="FLOAT")
    assert soundfile.info(raw).format == "WAV"
    assert Audio.load(raw).waveform.tolist() == expected


def _refuse_write(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_save_reports_operating_system_failures(tmp_path, monkeypatch):
    monkeypatch.setattr(soundfile, "write", _refuse_write)
    target = tmp_path / "x.wav"
    assert_refused(
        Audio(np.zeros((1, 100)), 8000).save,
        target,
        error=AudioFileError,
        named=f"cannot write {str(target)!r}",
        phrase="No space left on device",
    )
    assert list(tmp_path.iterdir()) == []


def test_save_failure_message_names_the_path_once(tmp_path, monkeypatch):
    monkeypatch.setattr(soundfile, "write", _refuse_write)
    target = tmp_path / "x.wav"
    message = assert_refused(
        Audio(np.zeros((1, 100)), 8000).save,
        target,
        error=AudioFileError,
        named=f"cannot write {str(target)!r}",
        phrase="No space left on device",
    )
    assert message.count(str(target)) == 1


def test_save_checks_the_subtype_type_first(tmp_path):
    target = tmp_path / "x.wav"
    assert_refused(
        Audio(np.zeros((1, 100)), 8000).save,
        target,
        subtype=16,
        error=AudioFileError,
        named="subtype=16",
        mentions=repr(str(target)),
        phrase="must be a string such as 'PCM_16'",
    )


def test_save_refuses_what_it_cannot_write(tmp_path):
    audio = Audio(np.zeros((1, 100)), 8000)
    target = tmp_path / "clip.aiff"
    assert_refused(
        audio.save,
        target,
        error=AudioFileError,
        mentions=repr(str(target)),
        phrase=("cannot tell the audio format", ".wav, .flac, .ogg, .mp3", "format="),
    )
    mp3 = tmp_path / "x.mp3"
    assert_refused(
        Audio(np.zeros((1, 100)), 96_000).save,
        mp3,
        error=AudioFileError,
        mentions=("sample_rate=96000 Hz", repr(str(mp3))),
        phrase="MP3 cannot store",
    )
    wav = tmp_path / "x.wav"
    assert_refused(
        audio.save,
        wav,
        subtype="VORBIS",
        error=AudioFileError,
        named=f"cannot write {str(wav)!r}",
        phrase="cannot write",
    )
    assert_refused(
        audio.save,
        tmp_path,
        error=AudioFileError,
        named=f"audio file path {str(tmp_path)!r}",
        phrase="is a folder",
    )
    assert list(tmp_path.iterdir()) == []


def _wav(tmp_path, data: np.ndarray, rate: int, name: str = "x.wav", subtype: str = "FLOAT"):
    path = tmp_path / name
    soundfile.write(path, data, rate, subtype=subtype)
    return path


def test_load_reads_exact_samples_from_every_source(tmp_path):
    data = np.array([[0.5, -0.5], [0.25, 0.0], [-1.0, 0.125]], dtype=np.float32)  # (frames, ch)
    path = _wav(tmp_path, data, 8000)
    expected = Audio(data.T, 8000)
    assert Audio.load(path) == expected
    assert Audio.load(str(path)) == expected
    raw = path.read_bytes()
    assert Audio.load(raw) == expected
    assert Audio.load(bytearray(raw)) == expected
    assert Audio.load(memoryview(raw)) == expected
    with open(path, "rb") as handle:
        assert Audio.load(handle) == expected


def test_load_converts_channels_and_rate_after_reading(tmp_path):
    data = np.array([[0.5, -0.5], [0.25, 0.75]], dtype=np.float32)
    path = _wav(tmp_path, data, 8000)
    assert Audio.load(path, num_channels=1).waveform.tolist() == [[0.0, 0.5]]
    stereo = Audio.load(path, sample_rate=16_000)
    assert stereo.sample_rate == 16_000 and stereo.num_channels == 2
    assert stereo == Audio(data.T, 8000).resample(16_000)


def test_load_argument_and_source_errors(tmp_path):
    missing = tmp_path / "missing.wav"
    # Arguments are checked before the source is looked at.
    assert_refused(
        Audio.load,
        missing,
        sample_rate=0,
        named="sample_rate=0",
        phrase="must be a positive integer of at most 384000 Hz",
    )
    assert_refused(
        Audio.load,
        missing,
        num_channels=0,
        named="num_channels=0",
        phrase="must be a positive integer",
    )
    for source, named, expected in [
        (missing, f"audio file {str(missing)!r}", "does not exist"),
        (tmp_path, f"audio file {str(tmp_path)!r}", "is a folder"),
        ("a\x00.wav", "audio file name 'a\\x00.wav'", "NUL byte"),
        (3.5, "audio source", ("must be a path, an open binary file or bytes", "got float")),
    ]:
        assert_refused(Audio.load, source, error=AudioFileError, named=named, phrase=expected)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert_refused(
        Audio.load,
        empty,
        error=AudioFileError,
        named=f"audio file {str(empty)!r}",
        phrase="is empty (0 bytes)",
    )


def test_unreadable_sources_are_named(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio" * 10)
    supported = f"supported formats: {_formats()}"
    for source, name in [
        (junk, repr(str(junk))),
        (b"junk" * 10, "'<bytes>'"),
        (io.BytesIO(b"junk" * 10), "'<file object>'"),
    ]:
        assert_refused(
            Audio.load,
            source,
            error=AudioFileError,
            named=f"cannot read audio from {name}",
            phrase=supported,
        )
    with open(junk, "rb") as handle:
        assert_refused(
            Audio.load,
            handle,
            error=AudioFileError,
            named=f"cannot read audio from {str(junk)!r}",
            phrase=supported,
        )


def test_file_contents_are_checked(tmp_path):
    path = _wav(tmp_path, np.zeros((0, 1), np.float32), 8000)
    assert_refused(
        Audio.load,
        path,
        error=AudioFileError,
        named=f"audio file {str(path)!r}",
        phrase="contains no samples",
    )
    path = _wav(tmp_path, np.array([0.0, np.nan], np.float32), 8000, "nan.wav")
    assert_refused(
        Audio.load,
        path,
        error=AudioFileError,
        named=f"audio file {str(path)!r}",
        phrase="NaN or infinite samples",
    )


def test_file_headers_are_checked_against_the_limits(tmp_path, monkeypatch):
    fast = _wav(tmp_path, np.zeros(4, np.float32), 384_001, "fast.wav")
    assert_refused(
        Audio.load,
        fast,
        error=AudioFileError,
        named=f"audio file {str(fast)!r}",
        phrase=("a sample rate of 384001 Hz", "at most 384000 Hz"),
    )
    assert Audio.load(_wav(tmp_path, np.zeros(4, np.float32), 384_000, "ok.wav")).num_samples == 4
    assert Audio.load(_wav(tmp_path, np.zeros(4, np.float32), 1, "slow.wav")).sample_rate == 1
    wide = _wav(tmp_path, np.zeros((2, 65), np.float32), 8000, "wide.wav")
    assert_refused(
        Audio.load,
        wide,
        error=AudioFileError,
        named=f"audio file {str(wide)!r}",
        phrase=("declares 65 channels", "at most 64"),
    )
    assert (
        Audio.load(_wav(tmp_path, np.zeros((2, 64), np.float32), 8000, "w.wav")).num_channels == 64
    )
    monkeypatch.setattr(audio_module, "MAX_DURATION_S", 1.0)
    monkeypatch.setattr(audio_module, "MAX_AUDIO_SAMPLES", 6)
    assert Audio.load(_wav(tmp_path, np.zeros(4, np.float32), 4, "one_second.wav")).duration_s == 1
    long = _wav(tmp_path, np.zeros(5, np.float32), 4, "long.wav")
    assert_refused(
        Audio.load,
        long,
        error=AudioFileError,
        named=f"audio file {str(long)!r}",
        phrase=("declares 5 frames (1 s)", "at most 1 s and 6 frames"),
    )
    assert Audio.load(_wav(tmp_path, np.zeros(6, np.float32), 8000, "six.wav")).num_samples == 6
    many = _wav(tmp_path, np.zeros(7, np.float32), 8000, "many.wav")
    assert_refused(
        Audio.load,
        many,
        error=AudioFileError,
        named=f"audio file {str(many)!r}",
        phrase=("declares 7 frames (0 s)", "at most 1 s and 6 frames"),
    )


# ------------------------------------------------------------------------------------ edits
def test_resample_matches_torchaudio_exactly():
    rng = np.random.default_rng(0)
    waveform = rng.standard_normal((2, 800)).astype(np.float32) * 0.1
    audio = Audio(waveform, 8000)
    up = audio.resample(np.int64(12_000))
    expected = torchaudio.functional.resample(torch.from_numpy(waveform.copy()), 8000, 12_000)
    assert up.sample_rate == 12_000 and up.num_samples == 1200
    assert np.array_equal(up.waveform, expected.numpy())
    assert audio.resample(8000) is audio


def test_resample_at_the_phase_limit_still_uses_torchaudio():
    # 15625 → 64 Hz: gcd 1, 64 × 15625 = 1,000,000 polyphase taps, exactly the limit.
    waveform = np.sin(np.arange(15625, dtype=np.float32) / 50)[None]
    resampled = Audio(waveform, 15625).resample(64)
    expected = torchaudio.functional.resample(torch.from_numpy(waveform.copy()), 15625, 64)
    assert np.array_equal(resampled.waveform, expected.numpy())


def test_resample_between_coprime_rates_matches_scipy():
    waveform = np.sin(np.arange(441, dtype=np.float32) / 7)[None] * 0.5
    resampled = Audio(waveform, 44100).resample(44101)
    expected = resample_poly(waveform.astype(np.float64), 44101, 44100, axis=-1)[:, :442]
    assert resampled.num_samples == 442  # ceil(441 · 44101 / 44100)
    assert np.array_equal(resampled.waveform, expected.astype(np.float32))
    down = Audio(waveform, 44101).resample(44100)
    expected = resample_poly(waveform.astype(np.float64), 44100, 44101, axis=-1)[:, :441]
    assert np.array_equal(down.waveform, expected.astype(np.float32))


def test_resample_length_limit_is_checked_first(monkeypatch):
    monkeypatch.setattr(audio_module, "MAX_AUDIO_SAMPLES", 100)
    assert Audio(np.zeros(50), 8000).resample(16_000).num_samples == 100
    assert_refused(
        Audio(np.zeros(51), 8000).resample,
        16_000,
        mentions=("51 samples from 8000 Hz", "sample_rate=16000 Hz"),
        phrase=("gives 102 samples", "more than 100"),
    )
    # ceil, not round: 3 samples at 16 kHz are 1.5 samples at 8 kHz → 2.
    three = Audio(np.zeros(3), 16_000)
    monkeypatch.setattr(audio_module, "MAX_AUDIO_SAMPLES", 1)
    assert_refused(
        three.resample,
        8000,
        mentions=("3 samples from 16000 Hz", "sample_rate=8000 Hz"),
        phrase=("gives 2 samples", "more than 1"),
    )


def test_resample_that_leaves_nothing_is_named(monkeypatch):
    monkeypatch.setattr(audio_module, "_resample", lambda w, a, b: np.zeros((1, 0), np.float32))
    assert_refused(
        Audio(np.zeros(3), 8000).resample,
        16_000,
        mentions=("3 samples from 8000 Hz", "to 16000 Hz"),
        phrase="leaves no samples",
    )
    assert_refused(
        Audio(np.zeros(3), 8000).resample,
        0,
        named="sample_rate=0",
        phrase="must be a positive integer of at most 384000 Hz",
    )


def test_channel_conversions_by_hand():
    stereo = Audio(np.array([[0.5, -1.0, 0.25], [0.25, 0.0, -0.75]]), 8000)
    assert stereo.to_mono().waveform.tolist() == [[0.375, -0.5, -0.25]]
    assert stereo.with_channels(2) is stereo
    three = Audio(np.array([[0.3, 0.0], [0.6, 0.3], [0.0, 0.9]]), 8000)
    np.testing.assert_allclose(three.to_mono().waveform, [[0.3, 0.4]], rtol=1e-6)
    mono = Audio(np.array([0.5, -0.25]), 8000)
    assert mono.to_mono() is mono
    assert mono.with_channels(3).waveform.tolist() == [[0.5, -0.25]] * 3
    assert mono.with_channels(64).num_channels == 64
    assert_refused(mono.with_channels, 65, named="num_channels=65", phrase="must be at most 64")
    assert_refused(
        stereo.with_channels,
        3,
        mentions=("2 channels", "num_channels=3"),
        phrase=("cannot convert", "only to fewer channels or from 1"),
    )
    # More than two channels to two: the first two (a 5.1 file's front left and right).
    assert three.with_channels(2).waveform.tolist() == three.waveform[:2].tolist()
    assert three.with_channels(2).num_channels == 2
    assert_refused(
        stereo.with_channels, 2.0, named="num_channels=2.0", phrase="must be a positive integer"
    )


def test_normalize_peak_by_hand():
    audio = Audio(np.array([[0.1, -0.25, 0.2]]), 8000)
    np.testing.assert_allclose(audio.normalize_peak(0.0).waveform, [[0.4, -1.0, 0.8]], rtol=1e-6)
    gain = 10 ** (-1 / 20)
    np.testing.assert_allclose(
        audio.normalize_peak().waveform, [[0.4 * gain, -gain, 0.8 * gain]], rtol=1e-6
    )
    np.testing.assert_allclose(
        audio.normalize_peak(-20.0).waveform, [[0.04, -0.1, 0.08]], rtol=1e-6
    )
    silence = Audio(np.zeros((1, 4)), 8000)
    assert silence.normalize_peak(-3.0) is silence
    assert_refused(audio.normalize_peak, 0.5, named="peak_dbfs=0.5", phrase="must be <= 0")
    assert_refused(
        audio.normalize_peak,
        "0",
        named="peak_dbfs='0'",
        phrase=("must be a finite number", "got str"),
    )


def _sine(amplitude: float, duration_s: float = 1.0, rate: int = 48_000) -> np.ndarray:
    time = np.arange(int(duration_s * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 997 * time)).astype(np.float32)


def test_loudness_of_a_full_scale_sine_is_minus_3_lufs():
    # BS.1770 is calibrated so that a 0 dBFS 997 Hz sine in one channel reads -3.01 LUFS.
    # (pyloudnorm's K-weighting is +0.04 dB at 997 Hz.)
    full = Audio(_sine(1.0), 48_000).loudness_lufs()
    assert full == pytest.approx(-3.01, abs=0.05)
    # Half the amplitude is 20·log10(2) = 6.02 dB quieter.
    assert Audio(_sine(0.5), 48_000).loudness_lufs() == pytest.approx(full - 6.0206, abs=1e-3)


def test_loudness_equals_pyloudnorm_on_stereo():
    waveform = np.stack([_sine(0.5), _sine(0.25)])
    meter = pyloudnorm.Meter(48_000)
    expected = meter.integrated_loudness(waveform.T.astype(np.float64))
    assert Audio(waveform, 48_000).loudness_lufs() == expected


def test_loudness_duration_and_channel_limits():
    assert np.isfinite(Audio(_sine(0.5, 0.4), 48_000).loudness_lufs())  # exactly 0.4 s
    short = Audio(_sine(0.5, 0.399), 48_000)
    assert_refused(short.loudness_lufs, mentions="got 0.399 s", phrase="at least 0.4 s of audio")
    five = Audio(np.tile(_sine(0.1, 0.5), (5, 1)), 48_000)
    assert np.isfinite(five.loudness_lufs())
    six = Audio(np.tile(_sine(0.1, 0.5), (6, 1)), 48_000)
    assert_refused(
        six.loudness_lufs, mentions="got 6", phrase=("at most 5 channels", "with_channels(2)")
    )
    assert Audio(np.zeros((1, 48_000)), 48_000).loudness_lufs() == float("-inf")


def test_normalize_loudness_gain_by_hand():
    audio = Audio(_sine(0.1), 48_000)
    current = audio.loudness_lufs()
    quieter = audio.normalize_loudness(current - 6.0)
    np.testing.assert_allclose(
        quieter.waveform, audio.waveform * np.float32(10 ** (-6 / 20)), rtol=1e-5, atol=1e-9
    )
    assert audio.normalize_loudness(-20.0).loudness_lufs() == pytest.approx(-20.0, abs=0.01)


def test_normalize_loudness_respects_max_peak():
    audio = Audio(_sine(0.1), 48_000)
    limited = audio.normalize_loudness(-1.0, max_peak=0.5)
    assert limited.peak == pytest.approx(0.5, rel=1e-6)
    np.testing.assert_allclose(limited.waveform, audio.waveform * (0.5 / audio.peak), rtol=1e-5)
    assert audio.normalize_loudness(-1.0).peak == pytest.approx(1.0, rel=1e-6)
    silence = Audio(np.zeros((1, 48_000)), 48_000)
    assert silence.normalize_loudness(-14.0) is silence


@pytest.mark.parametrize(
    ("kwargs", "named", "expected"),
    [
        ({"target_lufs": -100.5}, "target_lufs=-100.5", "must be >= -100"),
        ({"target_lufs": 0.5}, "target_lufs=0.5", "must be <= 0"),
        ({"max_peak": 1.5}, "max_peak=1.5", "must be <= 1"),
        ({"max_peak": 0.0}, "max_peak=0.0", "must be in (0, 1]"),
        ({"max_peak": -0.5}, "max_peak=-0.5", "must be in (0, 1]"),
    ],
)
def test_normalize_loudness_refuses_arguments(kwargs, named, expected):
    audio = Audio(_sine(0.1, 0.5), 48_000)
    assert_refused(audio.normalize_loudness, **kwargs, named=named, phrase=expected)


def test_normalize_loudness_bounds_are_inclusive():
    audio = Audio(_sine(0.01), 48_000)
    # -100 LUFS is below the measurement's absolute gate, so check the gain instead.
    gain = 10 ** ((-100.0 - audio.loudness_lufs()) / 20)
    assert audio.normalize_loudness(-100.0).peak == pytest.approx(audio.peak * gain, rel=1e-5)
    assert audio.normalize_loudness(0.0, max_peak=1.0).peak == pytest.approx(1.0, rel=1e-6)


def test_slice_by_hand():
    audio = Audio(np.stack([RAMP, -RAMP]), sample_rate=10)
    assert audio.slice(0.2, 0.5).waveform.tolist() == [RAMP[2:5].tolist(), (-RAMP[2:5]).tolist()]
    # Rounded, not truncated: 2.6 → 3 and 5.7 → 6.
    assert audio.slice(0.26, 0.57).waveform[0].tolist() == RAMP[3:6].tolist()
    # At least one sample: 2.1 → 2 and 2.4 → 2 give [2, 3).
    assert audio.slice(0.21, 0.24).waveform[0].tolist() == RAMP[2:3].tolist()
    assert audio.slice(0.5).waveform[0].tolist() == RAMP[5:].tolist()
    assert audio.slice().waveform.tolist() == audio.waveform.tolist()
    assert audio.slice(0.0, 1.0 + 5e-10).num_samples == 10
    assert audio.slice(0.0, 1.0 + 1e-9).num_samples == 10  # the tolerance is inclusive
    assert audio.slice(np.float32(0.5), np.int64(1)).num_samples == 5


_SLICE_RANGE = "0 <= start_s < end_s <= duration_s=1.000"


@pytest.mark.parametrize(
    ("start", "end", "named", "expected"),
    [
        (-0.1, 0.5, "start_s=-0.1, end_s=0.5", _SLICE_RANGE),
        (0.5, 0.5, "start_s=0.5, end_s=0.5", _SLICE_RANGE),
        (0.0, 1.01, "start_s=0.0, end_s=1.01", _SLICE_RANGE),
        (1.5, None, "start_s=1.5, end_s=1.0", _SLICE_RANGE),
        ("0", 0.5, "start_s='0'", ("must be a finite number", "got str")),
        (0.0, float("nan"), "end_s=nan", "must be a finite number"),
    ],
)
def test_slice_refuses(start, end, named, expected):
    audio = Audio(RAMP, sample_rate=10)
    assert_refused(audio.slice, start, end, named=named, phrase=expected)


def test_fit_length_by_hand(monkeypatch):
    audio = Audio(np.array([[0.5, -0.5, 0.25], [0.1, 0.2, 0.3]]), 8000)
    assert audio.fit_length(2).waveform.tolist() == audio.waveform[:, :2].tolist()
    assert audio.fit_length(3) == audio
    padded = audio.fit_length(5)
    assert padded.waveform.tolist() == [
        [*audio.waveform[0].tolist(), 0.0, 0.0],
        [*audio.waveform[1].tolist(), 0.0, 0.0],
    ]
    assert padded.sample_rate == 8000
    assert_refused(audio.fit_length, 0, named="num_samples=0", phrase="must be a positive integer")
    monkeypatch.setattr(audio_module, "MAX_AUDIO_SAMPLES", 10)
    assert audio.fit_length(10).num_samples == 10
    assert_refused(
        audio.fit_length, 11, named="num_samples=11", phrase=("more than 10", "MAX_AUDIO_SAMPLES")
    )
