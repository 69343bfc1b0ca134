from __future__ import annotations

import numpy as np
import pytest
import soundfile

from riffusion import Audio, AudioFileError, ParameterError
from tests.conftest import SAMPLE_RATE, music_like

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics


def test_value_type_shapes_and_facts(music_stereo):
    assert music_stereo.num_channels == 2
    assert music_stereo.num_samples == SAMPLE_RATE
    assert music_stereo.duration_s == 1.0
    assert music_stereo.waveform.dtype == np.float32
    assert not music_stereo.waveform.flags.writeable
    mono = Audio(np.zeros(100), sample_rate=8000)
    assert mono.waveform.shape == (1, 100)


@pytest.mark.parametrize(
    ("waveform", "rate", "fragment"),
    [
        (np.zeros((1, 0)), 44100, "no samples"),
        (np.array([[0.0, np.nan]]), 44100, "NaN"),
        (np.array([[0.0, np.inf]]), 44100, "NaN or infinite"),
        (np.zeros((2, 3, 4)), 44100, "channels, samples"),
        (np.zeros((44100, 2)), 44100, "transpose"),
        (np.zeros((1, 10)), 0, "sample_rate=0"),
        (np.zeros((1, 10)), 44100.0, "sample_rate=44100.0"),
    ],
)
def test_bad_waveforms_raise(waveform, rate, fragment):
    with pytest.raises(ParameterError, match=fragment):
        Audio(waveform, sample_rate=rate)


@pytest.mark.parametrize("extension", [".wav", ".flac"])
def test_lossless_round_trip(tmp_path, music_stereo, extension):
    path = music_stereo.save(tmp_path / f"clip{extension}")
    loaded = Audio.load(path)
    assert loaded.sample_rate == SAMPLE_RATE and loaded.num_channels == 2
    # 16-bit PCM: error at most half a quantisation step.
    assert np.abs(loaded.waveform - music_stereo.waveform).max() <= 1 / 32768 + 1e-7


@pytest.mark.parametrize("extension", [".ogg", ".mp3"])
def test_lossy_round_trip_keeps_duration_and_content(tmp_path, music_mono, extension):
    path = music_mono.save(tmp_path / f"clip{extension}")
    loaded = Audio.load(path)
    assert loaded.sample_rate == SAMPLE_RATE
    assert abs(loaded.duration_s - music_mono.duration_s) < 0.1  # MP3 adds encoder padding
    # Best correlation over small lags (MP3 delays the signal by its decoder delay).
    original = music_mono.waveform[0]
    decoded = loaded.waveform[0]
    best = max(
        np.corrcoef(original[:40000], decoded[lag : lag + 40000])[0, 1] for lag in range(0, 2400)
    )
    assert best > 0.9


def test_load_from_bytes_and_file_object(music_mono, tmp_path):
    data = music_mono.to_bytes()
    assert Audio.load(data) == Audio.load(music_mono.save(tmp_path / "a.wav"))
    with open(tmp_path / "a.wav", "rb") as handle:
        assert Audio.load(handle).num_samples == music_mono.num_samples


def test_load_converts_rate_and_channels(tmp_path, music_stereo):
    path = music_stereo.save(tmp_path / "clip.wav")
    loaded = Audio.load(path, sample_rate=22050, num_channels=1)
    assert loaded.sample_rate == 22050 and loaded.num_channels == 1
    assert loaded.num_samples == 22050


def test_bad_files_raise_audio_file_error(tmp_path):
    with pytest.raises(AudioFileError, match="does not exist"):
        Audio.load(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioFileError, match="empty"):
        Audio.load(empty)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 4)
    with pytest.raises(AudioFileError, match="cannot read audio"):
        Audio.load(corrupt)
    text = tmp_path / "notes.txt"
    text.write_text("not audio")
    with pytest.raises(AudioFileError):
        Audio.load(text)
    with pytest.raises(AudioFileError, match="folder"):
        Audio.load(tmp_path)
    header_only = tmp_path / "header_only.wav"
    soundfile.write(header_only, np.zeros((0, 1), np.float32), 44100)
    with pytest.raises(AudioFileError, match="no samples"):
        Audio.load(header_only)


def test_save_failures_leave_no_partial_file(tmp_path, music_mono):
    with pytest.raises(AudioFileError, match="extension"):
        music_mono.save(tmp_path / "clip.xyz")
    with pytest.raises(AudioFileError, match="cannot write"):
        music_mono.save(tmp_path / "clip.wav", subtype="NOT_A_SUBTYPE")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(AudioFileError, match="folder .* does not exist"):
        music_mono.save(tmp_path / "no" / "such" / "folder.wav")


def test_save_clips_out_of_range_samples(tmp_path):
    loud = Audio(np.array([[2.0, -3.0, 0.5]] * 1), sample_rate=8000)
    loaded = Audio.load(loud.save(tmp_path / "loud.wav"))
    assert loaded.waveform.max() <= 1.0 and loaded.waveform.min() >= -1.0


def test_resample_preserves_duration_and_pitch():
    rate = 48000
    time = np.arange(rate) / rate
    tone = Audio(np.sin(2 * np.pi * 1000 * time), sample_rate=rate)
    resampled = tone.resample(44100)
    assert resampled.num_samples == 44100
    spectrum = np.abs(np.fft.rfft(resampled.waveform[0]))
    assert abs(np.argmax(spectrum) * 44100 / 44100 - 1000) <= 1
    assert tone.resample(rate) is tone
    with pytest.raises(ParameterError, match="sample_rate=-1"):
        tone.resample(-1)


def test_channel_conversion(music_stereo, music_mono):
    mono = music_stereo.to_mono()
    np.testing.assert_allclose(mono.waveform[0], music_stereo.waveform.mean(axis=0), atol=1e-7)
    stereo = music_mono.with_channels(2)
    assert np.array_equal(stereo.waveform[0], stereo.waveform[1])
    with pytest.raises(ParameterError, match="num_channels=0"):
        music_mono.with_channels(0)


def test_peak_normalisation_and_silence():
    audio = Audio(np.array([[0.1, -0.25, 0.2]]), sample_rate=8000)
    assert audio.normalize_peak(0.0).peak == pytest.approx(1.0)
    assert audio.normalize_peak(-6.0).peak == pytest.approx(10 ** (-6 / 20))
    silence = Audio(np.zeros((1, 8000)), sample_rate=8000)
    assert silence.normalize_peak().peak == 0.0
    with pytest.raises(ParameterError, match="peak_dbfs=3"):
        audio.normalize_peak(3)


def test_loudness_normalisation():
    audio = Audio(0.05 * music_like(2.0), sample_rate=SAMPLE_RATE)
    louder = audio.normalize_loudness(-16.0)
    assert louder.loudness_lufs() == pytest.approx(-16.0, abs=0.1)
    silence = Audio(np.zeros((1, SAMPLE_RATE)), sample_rate=SAMPLE_RATE)
    assert silence.loudness_lufs() == float("-inf")
    assert silence.normalize_loudness() == silence
    with pytest.raises(ParameterError, match="0.4 s"):
        Audio(np.ones((1, 100)), sample_rate=SAMPLE_RATE).loudness_lufs()


def test_slice_and_fit_length(music_mono):
    part = music_mono.slice(0.25, 0.5)
    assert part.num_samples == round(0.25 * SAMPLE_RATE)
    assert music_mono.fit_length(100).num_samples == 100
    padded = music_mono.fit_length(SAMPLE_RATE + 10)
    assert padded.num_samples == SAMPLE_RATE + 10 and (padded.waveform[:, -10:] == 0).all()
    with pytest.raises(ParameterError, match="start_s=0.5"):
        music_mono.slice(0.5, 0.25)
