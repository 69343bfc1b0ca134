from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import riffusion
from riffusion import Audio, ParameterError, PromptInput
from riffusion.joins import periodic_image_to_audio, seam_discontinuity, stitch
from riffusion.schedule import stream_schedule
from riffusion.tempo import estimate_tempo, trim_to_bars
from tests.conftest import SAMPLE_RATE

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics


def click_track(bpm: float, duration_s: float, sample_rate: int = SAMPLE_RATE) -> Audio:
    """Decaying noise clicks on every beat, accented on the bar."""
    rng = np.random.default_rng(0)
    signal = np.zeros(int(duration_s * sample_rate), np.float32)
    click = rng.standard_normal(800).astype(np.float32) * np.exp(-np.arange(800) / 120)
    beat = 60.0 / bpm * sample_rate
    for index in range(int(len(signal) / beat) + 1):
        start = round(index * beat)
        end = min(len(signal), start + len(click))
        signal[start:end] += click[: end - start] * (1.0 if index % 4 == 0 else 0.6)
    return Audio(0.5 * signal / np.abs(signal).max(), sample_rate)


class FakeClip:
    def __init__(self, audio: Audio) -> None:
        self.audio = audio


def test_stitch_lengths_and_equal_power():
    rate = 1000
    first = Audio(np.ones((1, 1000), np.float32), rate)
    second = Audio(np.ones((1, 500), np.float32), rate)
    joined = stitch([first, FakeClip(second)], crossfade_s=0.1)
    assert joined.num_samples == 1000 + 500 - 100
    # Equal-power crossfade: gains cos and sin, so cos^2 + sin^2 = 1 at every overlap sample.
    overlap = joined.waveform[0, 900:1000]
    assert np.all(overlap >= 1.0 - 1e-6) and np.all(overlap <= np.sqrt(2) + 1e-6)
    assert stitch([first, second], crossfade_s=0).num_samples == 1500


def test_stitch_keeps_power_of_uncorrelated_noise():
    rng = np.random.default_rng(1)
    clips = [
        Audio(rng.standard_normal((1, 20000)).astype(np.float32) * 0.1, 8000) for _ in range(2)
    ]
    joined = stitch(clips, crossfade_s=1.0)
    overlap = joined.waveform[0, 12000:20000]
    assert np.mean(overlap**2) == pytest.approx(0.01, rel=0.1)


def test_stitch_converts_rate_and_channels():
    mono = Audio(np.zeros((1, 44100), np.float32), 44100)
    stereo = Audio(np.zeros((2, 22050), np.float32), 22050)
    joined = stitch([mono, stereo], crossfade_s=0.0)
    assert joined.num_channels == 2 and joined.sample_rate == 44100
    assert joined.num_samples == 88200


@pytest.mark.parametrize(
    ("clips", "crossfade", "fragment"),
    [
        ([], 0.1, "empty"),
        ([Audio(np.zeros(100), 1000)] * 2, 0.5, "not shorter"),
        ([Audio(np.zeros(100), 1000)], -1, "crossfade_s=-1"),
        (["not audio"], 0.0, "expected riffusion.Audio"),
    ],
)
def test_stitch_bad_inputs(clips, crossfade, fragment):
    with pytest.raises(ParameterError, match=fragment):
        stitch(clips, crossfade_s=crossfade)


@pytest.mark.parametrize("bpm", [93.75, 120.0, 140.0])
def test_estimate_tempo_of_click_track(bpm):
    assert estimate_tempo(click_track(bpm, 8.0)) == pytest.approx(bpm, rel=0.03)


def test_estimate_tempo_bad_inputs():
    with pytest.raises(ParameterError, match="at least 2 s"):
        estimate_tempo(click_track(120, 1.0))
    with pytest.raises(ParameterError, match="silence"):
        estimate_tempo(Audio(np.zeros((1, SAMPLE_RATE * 3)), SAMPLE_RATE))


def test_trim_to_bars():
    audio = click_track(120.0, 5.0)  # a bar is 2 s
    assert trim_to_bars(audio, bpm=120.0).duration_s == pytest.approx(4.0)
    assert trim_to_bars(audio, bpm=120.0, beats_per_bar=3).duration_s == pytest.approx(4.5)
    assert trim_to_bars(audio).duration_s == pytest.approx(4.0, abs=0.15)  # detected tempo
    with pytest.raises(ParameterError, match="shorter than one bar"):
        trim_to_bars(audio, bpm=30.0)
    with pytest.raises(ParameterError, match="bpm=0"):
        trim_to_bars(audio, bpm=0)


def test_stream_schedule_moves_in_alpha_steps_then_walks_the_seed():
    a = PromptInput("jazz", seed=10)
    b = PromptInput("rock", seed=20)
    steps = list(zip(range(12), stream_schedule([a, b], steps_per_transition=4), strict=False))
    schedule = [step for _, step in steps]
    assert [s.alpha for s in schedule] == [0.0, 0.25, 0.5, 0.75] * 3
    assert [s.index for s in schedule] == list(range(12))
    assert all(s.start == a and s.end == b for s in schedule[:4])
    # After the last prompt the seed walks: rock 20 → rock 21 → rock 22.
    assert schedule[4].start == b and schedule[4].end == dataclasses.replace(b, seed=21)
    assert schedule[8].start.seed == 21 and schedule[8].end.seed == 22


def test_stream_schedule_same_prompt_walks_seed_and_finite_mode():
    schedule = list(
        stream_schedule(["piano", "piano"], steps_per_transition=2, seed=5, endless=False)
    )
    assert [(s.start.seed, s.end.seed, s.alpha) for s in schedule] == [
        (5, 6, 0.0),
        (5, 6, 0.5),
        (6, 6, 0.0),
    ]
    with pytest.raises(ParameterError, match="steps_per_transition=0"):
        next(stream_schedule(["x"], steps_per_transition=0))
    with pytest.raises(ParameterError, match="empty"):
        next(stream_schedule([]))


def test_periodic_decoding_removes_the_wraparound_jump():
    time = np.arange(int(2.0 * SAMPLE_RATE)) / SAMPLE_RATE
    tone = Audio((0.5 * np.sin(2 * np.pi * 441.3 * time)).astype(np.float32), SAMPLE_RATE)
    # One period of 2 s is 200 columns (the one-shot encoding's 201st is the start again).
    params = riffusion.SpectrogramParams()
    period = params.width_for_samples(tone.num_samples, periodic=True)
    full = riffusion.audio_to_image(tone)
    assert (full.width, period) == (201, 200)
    image = full.crop((0, 0, period, full.height))
    plain_audio = riffusion.image_to_audio(image)
    plain = seam_discontinuity(plain_audio)
    looped_audio = periodic_image_to_audio(image, params)
    looped = seam_discontinuity(looped_audio)
    # Loop length exact: the period decodes to the 88,200 samples it came from.
    assert looped_audio.num_samples == tone.num_samples == 200 * 441
    assert plain_audio.num_samples == 199 * 441
    assert plain["jump_ratio"] > 10  # a click: far above a typical sample step
    assert looped["jump_ratio"] < 3  # like any other sample step


def test_seam_discontinuity_of_a_continuous_loop_is_typical():
    # A sine with a whole number of periods loops perfectly.
    time = np.arange(44100) / 44100
    loop = Audio(np.sin(2 * np.pi * 100 * time).astype(np.float32), 44100)
    report = seam_discontinuity(loop)
    assert report["jump_ratio"] < 2 and report["flux_ratio"] < 2
    broken = Audio(np.sin(2 * np.pi * 100.25 * time).astype(np.float32), 44100)
    assert seam_discontinuity(broken)["jump_ratio"] > 20


def test_periodic_decoding_of_a_seed_image_loops_on_the_downbeat():
    from riffusion.seeds import load_seed_image

    image = load_seed_image("marimba_arp")
    plain = seam_discontinuity(riffusion.image_to_audio(image))
    looped = seam_discontinuity(periodic_image_to_audio(image))
    # The one-shot decode no longer clicks at its start (≈ 4.9 since the decoder fix; ≈ 29
    # before), but its wrap still jumps many times more than the periodic decode's.
    assert plain["jump_ratio"] > 3 * looped["jump_ratio"]
    assert looped["jump_ratio"] < 1.5  # measured ≈ 0.3
    assert looped["flux_ratio"] < plain["flux_ratio"] and looped["flux_ratio"] < 1.5
