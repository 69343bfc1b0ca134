"""Pins for riffusion.joins, riffusion.tempo and riffusion.schedule: exact crossfade samples,
hand-computed seam metrics, golden tempo estimates, lag-range and length boundaries, the stream
schedule step by step, and every refused input (by its type, named value and key phrase)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import riffusion
from riffusion import Audio, PromptInput, SpectrogramParams
from riffusion.image import save_image
from riffusion.inputs import MAX_SEED
from riffusion.joins import periodic_image_to_audio, seam_discontinuity, stitch
from riffusion.schedule import StreamStep, stream_schedule
from riffusion.tempo import estimate_tempo, trim_to_bars
from tests.errors import assert_refused, refused
from tests.test_looping import FakeClip, click_track

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics


# ---------------------------------------------------------------------------------- stitch
def _ramp(start: float, stop: float, samples: int, channels: int = 1) -> np.ndarray:
    return np.stack(
        [
            np.linspace(start * (c + 1), stop * (c + 1), samples, dtype=np.float32)
            for c in range(channels)
        ]
    )


@pytest.mark.parametrize("channels", [1, 2])
def test_stitch_samples_are_the_float32_equal_power_mix(channels):
    rate, overlap = 1000, 40
    first, second = _ramp(0.9, -0.3, 300, channels), _ramp(-0.5, 0.7, 200, channels)
    joined = stitch([Audio(first, rate), Audio(second, rate)], crossfade_s=overlap / rate)
    assert joined.waveform.shape == (channels, 300 + 200 - overlap)
    assert joined.waveform.dtype == np.float32 and joined.sample_rate == rate
    # Gains cos and sin of (k + 1/2) / n · π/2, in float32 (the waveform's dtype).
    angle = (np.arange(overlap) + 0.5) / overlap * np.pi / 2
    fade_out, fade_in = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
    mixed = first[:, -overlap:] * fade_out + second[:, :overlap] * fade_in
    expected = np.concatenate([first[:, :-overlap], mixed, second[:, overlap:]], axis=1)
    assert np.array_equal(joined.waveform, expected)


def test_stitch_three_clips_and_the_default_crossfade():
    rate = 1000
    clips = [Audio(np.full((1, 200), value, np.float32), rate) for value in (1.0, 2.0, 3.0)]
    joined = stitch(clips)  # 0.05 s = 50 samples per join
    assert joined.num_samples == 3 * 200 - 2 * 50
    samples = joined.waveform[0]
    assert np.all(samples[:150] == 1.0) and np.all(samples[200:300] == 2.0)
    assert np.all(samples[350:] == 3.0)
    assert samples[150] == pytest.approx(np.cos(np.pi / 200) + 2 * np.sin(np.pi / 200), abs=1e-6)


def test_stitch_zero_crossfade_concatenates():
    first, second = _ramp(0.1, 0.2, 30), _ramp(0.3, 0.4, 20)
    joined = stitch([Audio(first, 100), Audio(second, 100)], crossfade_s=0)
    assert np.array_equal(joined.waveform, np.concatenate([first, second], axis=1))


def test_stitch_one_clip_is_returned_as_is_whatever_the_crossfade():
    samples = _ramp(-0.5, 0.5, 100)
    joined = stitch([FakeClip(Audio(samples, 1000))], crossfade_s=5.0)
    assert np.array_equal(joined.waveform, samples)


def test_stitch_crossfade_must_be_shorter_than_every_clip():
    clips = [Audio(np.zeros((1, 300), np.float32), 1000), Audio(np.zeros((1, 100)), 1000)]
    assert stitch(clips, crossfade_s=0.099).num_samples == 300 + 100 - 99
    assert_refused(
        stitch,
        clips,
        crossfade_s=0.1,
        named="crossfade_s=0.1",
        phrase="not shorter than the shortest clip (0.100 s)",
    )


def test_stitch_channel_layouts():
    mono = Audio(np.full((1, 100), 0.5, np.float32), 1000)
    stereo = Audio(np.full((2, 100), 0.25, np.float32), 1000)
    joined = stitch([mono, stereo], crossfade_s=0)
    assert joined.waveform.shape == (2, 200)
    assert np.all(joined.waveform[:, :100] == 0.5) and np.all(joined.waveform[:, 100:] == 0.25)
    three = Audio(np.zeros((3, 100), np.float32), 1000)
    assert stitch([three, three], crossfade_s=0).waveform.shape == (3, 200)
    for layouts in ([three, mono], [stereo, three]):
        assert_refused(
            stitch, layouts, crossfade_s=0, phrase="cannot mix clips of more than two channels"
        )


@pytest.mark.parametrize(
    ("clips", "crossfade", "named", "expected"),
    [
        ([], 0.1, "clips_or_audio", "is empty"),
        ("audio", 0.1, None, ("riffusion.Audio or a Clip", "got str")),
        ([3], 0.1, None, ("riffusion.Audio or a Clip", "got int")),
        ([FakeClip(None)], 0.1, None, ("riffusion.Audio or a Clip", "got FakeClip")),
        (None, 0.1, "clips_or_audio", "must be a list of Audio or Clip values"),
        (iter([]), 0.1, "clips_or_audio", "must be a list of Audio or Clip values"),
        (float("nan"), 0.1, "clips_or_audio", "must be a list of Audio or Clip values"),
        # The clips are checked before the crossfade.
        ([], -0.5, "clips_or_audio", "is empty"),
    ],
)
def test_stitch_refuses_bad_clips(clips, crossfade, named, expected):
    assert_refused(stitch, clips, crossfade_s=crossfade, named=named, phrase=expected)


def test_stitch_refuses_a_single_audio_and_bad_crossfades():
    audio = Audio(np.zeros((1, 100), np.float32), 1000)
    for clips in (audio, iter([audio, audio])):
        assert_refused(
            stitch, clips, named="clips_or_audio", phrase="must be a list of Audio or Clip values"
        )
    for crossfade in (float("nan"), float("inf"), -0.01, "0.1", None, 3600.001, 1e308):
        assert_refused(
            stitch,
            [audio, audio],
            crossfade_s=crossfade,
            named=f"crossfade_s={crossfade!r}",
            phrase="must be a finite number >= 0 (at most 3600 s)",
        )
    # At the bound, a crossfade is a number again: refused here for being longer than the clips.
    assert_refused(
        stitch,
        [audio, audio],
        crossfade_s=3600,
        named="crossfade_s=3600",
        phrase="not shorter than the shortest clip",
    )


# ---------------------------------------------------------------------- periodic decoding
def test_periodic_image_to_audio_uses_the_given_params_and_options(tmp_path):
    tone = Audio(np.sin(np.arange(22050) * 0.05).astype(np.float32) * 0.5, 44100)
    image = riffusion.audio_to_image(tone)  # EXIF: 10 ms steps at 44.1 kHz
    coarse = SpectrogramParams(step_size_ms=20)  # given params win over the EXIF: 882-sample hop
    options = {"seed": 3, "num_iterations": 2}
    looped = periodic_image_to_audio(image, coarse, **options)
    assert looped.sample_rate == 44100 and looped.num_samples == image.width * 882
    expected = riffusion.image_to_audio(image, coarse, periodic=True, **options)
    assert np.array_equal(looped.waveform, expected.waveform)
    other_seed = periodic_image_to_audio(image, coarse, seed=4, num_iterations=2)
    assert not np.array_equal(looped.waveform, other_seed.waveform)
    # Without params: the image's EXIF; a path works as well as an image.
    save_image(image, tmp_path / "loop.png")
    from_file = periodic_image_to_audio(str(tmp_path / "loop.png"), **options)
    assert from_file.num_samples == image.width * 441
    assert np.array_equal(
        from_file.waveform, riffusion.image_to_audio(image, periodic=True, **options).waveform
    )


# ---------------------------------------------------------------------- seam discontinuity
# DC blocks: block k holds level L_k, so frame k's spectrum is L_k · |rfft(hann)| and the flux
# between frames j and k is |L_k − L_j| / (L_j + L_k) (plus a 1e-12 guard, negligible here).
_LEVELS = [1 / 32, 2 / 32, 6 / 32, 24 / 32]
# Inner fluxes 1/3, 1/2, 3/5; their 95th percentile (linear) is 1/2 + 0.9 · (3/5 − 1/2) = 0.59;
# the seam (last block to first) has (24 − 1) / (24 + 1) = 23/25.
_FLUX_RATIO = (23 / 25) / 0.59


def _blocks(block: int) -> Audio:
    return Audio(np.repeat(np.float32(_LEVELS), block)[None], 1000)


def test_seam_flux_ratio_of_dc_blocks():
    # 1000 Hz: frame_s = 0.02 → 20-sample frames; four frames is the minimum.
    report = seam_discontinuity(_blocks(20))
    assert report["flux_ratio"] == pytest.approx(_FLUX_RATIO, rel=1e-9)
    # The sample steps either side of the seam are all 0: the 1e-12 floor divides the jump.
    assert report["jump_ratio"] == pytest.approx((24 / 32 - 1 / 32) / 1e-12, rel=1e-9)
    # Stereo is mixed to mono first.
    stereo = Audio(np.repeat(_blocks(20).waveform, 2, axis=0), 1000)
    assert seam_discontinuity(stereo) == report


def test_seam_frames_are_at_least_16_samples():
    # frame_s = 0.01 s is 10 samples at 1000 Hz: raised to 16.
    report = seam_discontinuity(_blocks(16), frame_s=0.01)
    assert report["flux_ratio"] == pytest.approx(_FLUX_RATIO, rel=1e-9)


def test_seam_flux_ratio_when_the_clip_never_changes_but_at_one_point():
    # Two frames of silence then two of DC: the inner fluxes are 0, 1, 0 → 95th percentile 0.9,
    # the seam flux 1 (from DC back to silence).
    audio = Audio(np.repeat(np.float32([0, 0, 0.5, 0.5]), 20)[None], 1000)
    assert seam_discontinuity(audio)["flux_ratio"] == pytest.approx(1 / 0.9, rel=1e-9)


def test_seam_flux_floor_when_no_inner_frame_changes():
    # 20 frames of silence, then 20 of DC: one inner flux of 39 is 1, the others 0, so the 95th
    # percentile is 0 and the floor 1e-12 divides the seam flux (DC back to silence: 1).
    levels = np.float32([0.0] * 20 + [0.5] * 20)
    audio = Audio(np.repeat(levels, 20)[None], 1000)
    assert seam_discontinuity(audio)["flux_ratio"] == pytest.approx(1e12, rel=1e-9)


def test_seam_jump_ratio_against_the_local_steps():
    # x[n] = n² / 1000: the steps are (2n + 1) / 1000. 1000 Hz, local_s = 0.01 → the 10 samples
    # either side of the seam: steps 1, 3, ..., 17 at the start and 141, ..., 157 at the end.
    n = np.arange(80)
    audio = Audio((n**2 / 1000).astype(np.float32)[None], 1000)
    odd = np.array([2 * k + 1 for k in range(9)] + [2 * k + 1 for k in range(70, 79)])
    expected = 79**2 / math.sqrt(np.mean(odd.astype(np.float64) ** 2))
    assert seam_discontinuity(audio)["jump_ratio"] == pytest.approx(expected, rel=1e-6)
    # At least 2 samples either side (one step each): 1 and 157.
    tiny = seam_discontinuity(audio, local_s=0.001)["jump_ratio"]
    assert tiny == pytest.approx(79**2 / math.sqrt((1 + 157**2) / 2), rel=1e-6)


def test_seam_flux_of_nearly_silent_frames_is_damped():
    # The same DC blocks at 1e-13 of the level: the 1e-12 guard in each flux's denominator
    # now dominates. With h = ‖|rfft(hann(20))|‖, the flux of levels x → y is
    # |y − x| · h / ((x + y) · h + 1e-12).
    levels = np.float32(_LEVELS) * np.float32(1e-13)
    audio = Audio(np.repeat(levels, 20)[None], 1000)
    h = float(np.linalg.norm(np.abs(np.fft.rfft(np.hanning(20)))))
    x = levels.astype(np.float64)

    def flux(a, b):
        return abs(b - a) * h / ((a + b) * h + 1e-12)

    inner = sorted([flux(x[0], x[1]), flux(x[1], x[2]), flux(x[2], x[3])])
    percentile_95 = inner[1] + 0.9 * (inner[2] - inner[1])
    expected = flux(x[3], x[0]) / percentile_95
    assert seam_discontinuity(audio)["flux_ratio"] == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(1.49128607867469, rel=1e-9)  # not the 1.559 of loud blocks


def test_seam_needs_four_frames():
    # 60 samples: three 20-sample frames.
    assert_refused(seam_discontinuity, _blocks(15), named="audio of 0.060 s", phrase="too short")


# ------------------------------------------------------------------------------ tempo
# Golden estimates of the click tracks of tests/test_looping.py: the hop is 512 samples from
# 32 kHz up and 256 below. Measured with this implementation (float64 STFT and autocorrelation).
# Tolerance rel=1e-12: in float64 the estimate moves by at most ~2e-16 relative between FFT
# kernels (measured: MKL with AVX-512, AVX2 and SSE4.2, ATen's default and AVX-512 kernels), so
# 1e-12 leaves four orders of margin; any change to the onset envelope moves it far beyond (its
# log compression 1000 -> 1001 moves the refined cases by 7e-11 to 8e-6), as does a change to
# the autocorrelation or the parabolic refinement. Some cases sit where the refinement is
# unusual: at 59 BPM the peak is the longest lag (87) and the parabola's offset, 1.03, is
# clipped to 0.5 (59.0625 = 60 · 86.13 / 87.5); at 30 BPM, 51.2 kHz, 3 s the autocorrelation is
# convex at the best lag (curvature 0.56), so there is no refinement (60.606 = 60 · 100 / 99);
# both are exact. At 300 Hz the 3 s clip is shorter than one 1024-sample FFT frame and is
# zero-padded to it.
@pytest.mark.parametrize(
    ("rate", "bpm", "seconds", "expected"),
    [
        (44100, 120, 8.0, 120.07134173442532),
        (44100, 200, 8.0, 199.47663408278177),
        (44100, 59, 8.0, 59.0625),
        (22050, 140, 8.0, 139.88950657642673),
        (22050, 93.75, 8.0, 93.8457960790731),
        (32000, 93.75, 8.0, 93.75125423271672),
        (32000, 140, 8.0, 139.58031872810037),
        (51200, 60, 8.0, 59.99990875168904),
        (51200, 200, 8.0, 199.99900170837344),
        (51200, 30, 3.0, 60.60606060606061),
        (300, 120, 3.0, 31.315044964153028),
    ],
)
def test_estimate_tempo_golden(rate, bpm, seconds, expected):
    audio = click_track(bpm, seconds, sample_rate=rate)
    assert estimate_tempo(audio) == pytest.approx(expected, rel=1e-12)


def test_estimate_tempo_does_not_depend_on_the_level():
    audio = click_track(140, 8.0)
    quiet = Audio(audio.waveform * np.float32(2.0**-20), audio.sample_rate)
    assert estimate_tempo(quiet) == estimate_tempo(audio)


def test_estimate_tempo_accepts_exactly_two_seconds_and_any_positive_range():
    two_seconds = click_track(120, 2.0)
    assert two_seconds.duration_s == 2.0
    assert estimate_tempo(two_seconds) == pytest.approx(120, rel=0.03)
    assert estimate_tempo(click_track(120, 8.0), min_bpm=0.5) == pytest.approx(
        120.07134173442532, rel=1e-6
    )


def test_estimate_tempo_lag_range_boundaries():
    # 2 s at 44.1 kHz: 88200 // 512 + 1 = 173 STFT frames, 172 flux values, so the longest lag
    # is 170; the shortest is floor(60 · 86.13 / max_bpm) frames. 30.3 BPM → 170: no range.
    audio = click_track(120, 2.0)
    assert_refused(
        estimate_tempo, audio, min_bpm=1, max_bpm=30.3, phrase="too short for the requested tempo"
    )
    # 30.5 BPM → 169: lags 169 and 170.
    frame_rate = 44100 / 512
    tempo = estimate_tempo(audio, min_bpm=1, max_bpm=30.5)
    assert 60 * frame_rate / 170.5 <= tempo <= 60 * frame_rate / 168.5


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"min_bpm": 0}, "min_bpm=0, max_bpm=200.0"),
        ({"min_bpm": 100, "max_bpm": 100}, "min_bpm=100, max_bpm=100"),
        ({"min_bpm": -1, "max_bpm": 10}, "min_bpm=-1, max_bpm=10"),
    ],
)
def test_estimate_tempo_refuses_empty_ranges(kwargs, named):
    assert_refused(
        estimate_tempo, click_track(120, 3.0), **kwargs, named=named, phrase="0 < min < max"
    )


def test_estimate_tempo_refuses_what_has_no_tempo():
    assert_refused(
        estimate_tempo,
        np.zeros(88200),
        named="audio",
        phrase=("must be a riffusion.Audio", "got ndarray"),
    )
    short = Audio(np.ones((1, 87759), np.float32), 44100)  # 1.99 s
    assert_refused(estimate_tempo, short, mentions="got 1.99 s", phrase="at least 2 s of audio")
    silence = Audio(np.zeros((1, 88200), np.float32), 44100)
    assert_refused(estimate_tempo, silence, phrase="tempo of silence")
    # A constant signal: every STFT frame the same, so no onset anywhere.
    constant = Audio(np.full((1, 3 * 44100), 0.5, np.float32), 44100)
    assert_refused(estimate_tempo, constant, phrase="no onsets")


def test_trim_to_bars_lengths():
    audio = Audio(np.zeros((1, 5000), np.float32), 1000)  # 5 s at 1 kHz
    assert trim_to_bars(audio, bpm=120).num_samples == 4000  # two 2 s bars
    assert trim_to_bars(audio, bpm=120, beats_per_bar=5).num_samples == 5000  # one 2.5 s bar
    assert trim_to_bars(audio, bpm=100, beats_per_bar=3).num_samples == 3600  # two 1.8 s bars
    three = Audio(np.zeros((1, 3000), np.float32), 1000)
    assert trim_to_bars(three, bpm=120).num_samples == 2000  # exactly one bar
    # A slow tempo: one beat per minute is a 4-minute bar.
    slow = Audio(np.zeros((1, 250 * 100), np.float32), 100)
    assert trim_to_bars(slow, bpm=1).num_samples == 240 * 100
    # 0.9 BPM, one beat a bar: 6666.67-sample bars, three fit; round(3 · 6666.67) samples.
    assert trim_to_bars(slow, bpm=0.9, beats_per_bar=1).num_samples == 20000


def test_trim_to_bars_counts_only_bars_that_fit():
    # At 1 kHz, one beat a bar, bpm = 36.086607858861264: a bar is 60 / bpm · 1000 =
    # 1662.6666666666667 samples, a hair over 4988 / 3, so three bars (4988.000000000001
    # samples) do not fit in 4988 samples, though 4988 / bar rounds to 3.0: two bars.
    audio = Audio(np.zeros((1, 4988), np.float32), 1000)
    assert trim_to_bars(audio, bpm=36.086607858861264, beats_per_bar=1).num_samples == 3325


def test_trim_to_bars_keeps_the_start():
    samples = np.arange(5000, dtype=np.float32)[None] / 5000
    trimmed = trim_to_bars(Audio(samples, 1000), bpm=120)
    assert np.array_equal(trimmed.waveform, samples[:, :4000])


def test_trim_to_bars_refuses():
    audio = Audio(np.zeros((1, 1000), np.float32), 1000)
    assert_refused(
        trim_to_bars,
        audio,
        bpm=120,
        named="audio of 1.00 s",
        phrase=("shorter than one bar", "2.00 s at 120.0 BPM"),
    )
    for bpm in (0, -1, float("nan"), float("inf"), "120"):
        assert_refused(
            trim_to_bars, audio, bpm=bpm, named=f"bpm={bpm!r}", phrase="must be a positive number"
        )
    assert_refused(
        trim_to_bars,
        audio,
        bpm=60,
        beats_per_bar=0,
        named="beats_per_bar=0",
        phrase="must be a positive integer",
    )


# ---------------------------------------------------------------------------- schedule
def _steps(*args, count: int | None = None, **kwargs) -> list[StreamStep]:
    schedule = stream_schedule(*args, **kwargs)
    return list(schedule) if count is None else [next(schedule) for _ in range(count)]


def test_stream_schedule_defaults():
    # Four clips per transition, the first string prompt seeded 0, endless.
    steps = _steps("jazz", count=9)
    jazz = [PromptInput("jazz", seed=seed) for seed in range(4)]
    assert steps == [StreamStep(jazz[k // 4], jazz[k // 4 + 1], (k % 4) / 4, k) for k in range(9)]


def test_stream_schedule_equal_full_prompts_walk_the_seed():
    a = PromptInput("jazz", seed=7, denoising=0.5)
    steps = _steps(
        [a, a, dataclasses.replace(a, guidance=3.0)], steps_per_transition=1, endless=False
    )
    walked = dataclasses.replace(a, seed=8)
    assert [(s.start, s.end) for s in steps] == [
        (a, walked),  # the same prompt again: the seed walks
        (walked, dataclasses.replace(a, guidance=3.0)),  # a different one: taken as given
        (dataclasses.replace(a, guidance=3.0),) * 2,
    ]
    assert [s.index for s in steps] == [0, 1, 2]


def test_stream_schedule_prompt_kinds():
    steps = _steps(
        [PromptInput("jazz", seed=1), {"prompt": "rock", "seed": 9}, "rock", "pop"],
        steps_per_transition=2,
        endless=False,
    )
    assert [(s.start.prompt, s.start.seed, s.end.prompt, s.end.seed, s.alpha) for s in steps] == [
        ("jazz", 1, "rock", 9, 0.0),
        ("jazz", 1, "rock", 9, 0.5),  # a dict keeps its own seed
        ("rock", 9, "rock", 10, 0.0),  # strings take the next seed
        ("rock", 9, "rock", 10, 0.5),
        ("rock", 10, "pop", 11, 0.0),
        ("rock", 10, "pop", 11, 0.5),
        ("pop", 11, "pop", 11, 0.0),
    ]
    assert [s.index for s in steps] == list(range(7))


def test_stream_schedule_single_prompt_and_seed_bounds():
    assert _steps(["x"], steps_per_transition=3, endless=False) == [
        StreamStep(PromptInput("x"), PromptInput("x"), 0.0, 0)
    ]
    last = _steps("x", seed=MAX_SEED - 1, steps_per_transition=1, count=2)
    assert [(s.start.seed, s.end.seed) for s in last] == [(MAX_SEED - 1, 0), (0, 1)]
    # A generator is consumed lazily.
    lazy = _steps((p for p in ["a", "b"]), steps_per_transition=1, endless=False)
    assert [(s.start.prompt, s.end.prompt) for s in lazy] == [("a", "b"), ("b", "b")]


@pytest.mark.parametrize(
    ("prompts", "kwargs", "named", "expected"),
    [
        (["x"], {"seed": -1}, "seed=-1", "[0, 2**63)"),
        (["x"], {"seed": MAX_SEED}, f"seed={MAX_SEED}", "[0, 2**63)"),
        (["x"], {"seed": True}, "seed=True", "[0, 2**63)"),
        (["x"], {"seed": 1.0}, "seed=1.0", "[0, 2**63)"),
        (["x"], {"steps_per_transition": 0}, "steps_per_transition=0", "positive integer"),
        ({"prompt": "x"}, {}, "prompts={'prompt': 'x'}", "must be a prompt or a list of prompts"),
        (3, {}, "prompts=3", "must be a prompt or a list of prompts"),
        ([], {}, "prompts", "is empty"),
    ],
)
def test_stream_schedule_refuses_before_any_step(prompts, kwargs, named, expected):
    # Raised by the call itself, not at the first step.
    assert_refused(stream_schedule, prompts, **kwargs, named=named, phrase=expected)


@pytest.mark.parametrize(
    ("prompts", "mentions", "expected"),
    [
        (iter([]), (), "is empty"),
        ([3], (), ("must hold PromptInput, str or dict items", "got int")),
        (["x", None], (), ("must hold PromptInput, str or dict items", "got NoneType")),
        ([{"seed": 1}], "data={'seed': 1}", "lacks the required key 'prompt'"),
    ],
)
def test_stream_schedule_refuses_items_when_it_reaches_them(prompts, mentions, expected):
    with refused(named="prompts", mentions=mentions, phrase=expected):
        _steps(prompts, steps_per_transition=1, endless=False)
