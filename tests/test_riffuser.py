from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import riffusion
from riffusion import Audio, Clip, ParameterError, PromptInput, Recipe, Riffuser
from riffusion.image import params_from_image
from riffusion.looping import seam_discontinuity
from riffusion.seeds import load_seed_image
from tests.conftest import SAMPLE_RATE, music_like
from tests.diffusion_fixtures import tiny_model_dir

STEPS = 2  # img2img at 0.75 runs the last of two steps (PNDM repeats it): plumbing, quickly


@pytest.fixture(scope="module")
def riffuser():
    # One torch thread for the whole module: CPU results are bitwise reproducible only at a
    # fixed thread count (reductions split differently), and the tiny model gains nothing.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    riffuser = Riffuser.from_pretrained(tiny_model_dir(), device="cpu")
    riffuser.pipeline.set_progress_bar_config(disable=True)
    yield riffuser
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def clip(riffuser) -> Clip:
    return riffuser.text_to_audio("funky bass", seed=7, num_inference_steps=STEPS)


def test_text_to_audio_shapes_and_metadata(clip):
    assert isinstance(clip, Clip)
    assert clip.image.size == (512, 512) and clip.image.mode == "RGB"
    assert params_from_image(clip.image) == riffusion.SpectrogramParams()
    assert clip.audio.sample_rate == 44100 and clip.audio.num_channels == 1
    # Documented: width * hop_length samples = 512 * 441 = 225792 = 5.12 s.
    assert clip.audio.num_samples == 512 * 441 and clip.duration_s == pytest.approx(5.12)
    assert np.isfinite(clip.audio.waveform).all() and clip.audio.peak > 0
    assert clip.recipe.kind == "text_to_audio" and clip.recipe.start.seed == 7
    assert clip.recipe.seed_image == "og_beat"
    assert clip.debug["seeds"] == [[7]] and clip.debug["strengths"] == [0.75]
    assert clip.debug["timesteps"][0] and all(0 <= t < 1000 for t in clip.debug["timesteps"][0])
    timings = clip.debug["timings_s"]
    assert {"unet", "vae_decode", "audio_decode", "total"} <= set(timings)
    assert timings["total"] >= timings["audio_decode"] > 0


def test_same_seed_same_clip_other_seed_differs(riffuser, clip):
    again = riffuser.text_to_audio("funky bass", seed=7, num_inference_steps=STEPS)
    assert again.audio == clip.audio
    other = riffuser.text_to_audio("funky bass", seed=8, num_inference_steps=STEPS)
    assert other.audio != clip.audio


def test_recipe_round_trips_and_rerenders_bit_for_bit(riffuser, clip):
    recipe = clip.recipe
    assert Recipe.from_json(recipe.to_json()) == recipe
    url = recipe.to_url()
    assert url.startswith("riffusion:1:") and len(url) < 700
    assert Recipe.from_url(url) == recipe
    assert json.loads(recipe.to_json())["start"] == {
        "prompt": "funky bass",
        "seed": 7,
        "negative_prompt": None,
        "denoising": 0.75,
        "guidance": 7.0,
    }
    rendered = riffuser.render(url)
    assert rendered.audio == clip.audio
    assert np.array_equal(np.asarray(rendered.image), np.asarray(clip.image))


def test_bad_recipe_strings():
    with pytest.raises(ParameterError, match="not a riffusion recipe"):
        Recipe.from_url("https://example.com")
    with pytest.raises(ParameterError, match="corrupt"):
        Recipe.from_url("riffusion:1:AAAA")
    with pytest.raises(ParameterError, match="not valid JSON"):
        Recipe.from_json("{")
    with pytest.raises(ParameterError, match="unknown keys"):
        Recipe.from_dict({"kind": "riffuse", "bogus": 1})


def test_duration_20_s_by_continuation(riffuser):
    clip = riffuser.text_to_audio("ambient drone", seed=3, num_inference_steps=STEPS, duration_s=20)
    assert clip.audio.num_samples == 20 * 44100
    assert clip.image.size == (2000, 512)
    # 512 columns, then windows advancing 256 columns each: 1 + ceil((2000 - 512) / 256) = 7.
    assert len(clip.debug["seeds"]) == 7
    assert [s[0] for s in clip.debug["seeds"]] == list(range(3, 10))
    # No silent gaps at the joins: every 0.5 s stretch carries sound.
    frames = clip.audio.waveform[0, : 40 * 22050].reshape(40, 22050)
    assert (np.sqrt((frames**2).mean(axis=1)) > 1e-3).all()


def test_short_duration(riffuser):
    clip = riffuser.text_to_audio("x", seed=1, num_inference_steps=STEPS, duration_s=1.5)
    assert clip.audio.num_samples == round(1.5 * 44100)


def test_text_to_image_mode_and_custom_seed_images(riffuser):
    plain = riffuser.text_to_audio("x", seed=1, num_inference_steps=STEPS, seed_image=None)
    assert plain.recipe.seed_image is None and plain.debug["strengths"] == [1.0]
    from_audio = riffuser.text_to_audio(
        "x", seed=1, num_inference_steps=STEPS, seed_image=Audio(music_like(1.0), SAMPLE_RATE)
    )
    assert from_audio.recipe.seed_image.startswith("custom:")
    from_pil = riffuser.text_to_audio(
        "x", seed=1, num_inference_steps=STEPS, seed_image=load_seed_image("breakbeat")
    )
    named = riffuser.text_to_audio("x", seed=1, num_inference_steps=STEPS, seed_image="breakbeat")
    assert from_pil.audio == named.audio


@pytest.mark.parametrize("seconds", [1.0, 12.0])
def test_audio_to_audio_keeps_length(riffuser, seconds):
    audio = Audio(np.stack([music_like(seconds), music_like(seconds, seed=4)]), SAMPLE_RATE)
    clip = riffuser.audio_to_audio(audio, "jazz", seed=5, num_inference_steps=STEPS)
    assert clip.audio.num_samples == audio.num_samples and clip.audio.num_channels == 1
    assert clip.image.width == int(seconds * 100)
    windows = 1 if seconds < 5.12 else 3  # 1200 columns: windows at 0, 448 and 688
    assert len(clip.debug["seeds"]) == windows
    rendered = riffuser.render(clip.recipe, audio=audio)
    assert rendered.audio == clip.audio
    with pytest.raises(ParameterError, match="fingerprint"):
        riffuser.render(clip.recipe, audio=Audio(music_like(seconds, seed=9), SAMPLE_RATE))


def test_riffuse_and_interpolate(riffuser):
    start = PromptInput("jazz", seed=1)
    end = PromptInput("rock", seed=2, denoising=0.5)
    clips = riffuser.interpolate(start, end, 3, num_inference_steps=STEPS)
    assert [c.debug["alphas"][0] for c in clips] == [0.0, 0.5, 1.0]
    assert clips[1].debug["strengths"][0] == pytest.approx(0.625)
    single_end = riffuser.riffuse(end, num_inference_steps=STEPS)
    assert clips[2].audio == single_end.audio


def test_stream_schedule_in_clips(riffuser):
    clips = list(
        riffuser.stream(
            ["jazz", "rock"], steps_per_transition=2, max_clips=5, num_inference_steps=STEPS
        )
    )
    assert len(clips) == 5
    assert [c.debug["alphas"][0] for c in clips] == [0.0, 0.5, 0.0, 0.5, 0.0]
    assert [c.debug["seeds"][0] for c in clips] == [[0, 1], [0, 1], [1, 2], [1, 2], [2, 3]]
    assert [c.recipe.start.prompt for c in clips] == ["jazz", "jazz", "rock", "rock", "rock"]
    assert all(c.audio.num_samples == 512 * 441 for c in clips)
    joined = riffusion.stitch(clips, crossfade_s=0.0)
    assert joined.num_samples == 5 * 512 * 441


def test_loop_has_no_seam(riffuser):
    clip = riffuser.loop("techno", seed=4, num_inference_steps=STEPS)
    assert clip.recipe.kind == "loop" and clip.audio.num_samples == 512 * 441
    seam = seam_discontinuity(clip.audio)
    # The same image decoded as a one-shot clip clicks at the wrap (measured ratio 24-29).
    one_shot = seam_discontinuity(riffusion.image_to_audio(clip.image))
    assert one_shot["jump_ratio"] > 15
    # Looped, the wrap is like the clip's own local sample steps (measured 0.3-1.6 over seeds
    # 4-6 on this noise-like tiny-model spectrogram, 0.1-0.5 on the built-in seed images) and
    # its spectral flux is like that between any two neighbouring frames.
    assert seam["jump_ratio"] < 3
    assert seam["flux_ratio"] < 2
    assert riffuser.render(clip.recipe).audio == clip.audio


def test_clip_save_and_notebook_display(clip, tmp_path):
    path = clip.save(tmp_path / "clip.flac", save_image=True, save_recipe=True)
    assert Audio.load(path).num_samples == clip.audio.num_samples
    assert params_from_image(Image.open(tmp_path / "clip.png")) == riffusion.SpectrogramParams()
    assert Recipe.from_json((tmp_path / "clip.json").read_text()) == clip.recipe
    html = clip._repr_html_()
    assert "<audio" in html and "data:image/png;base64" in html and "funky bass" in html


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"duration_s": -1}, "duration_s=-1"),
        ({"duration_s": 0}, "duration_s=0"),
        ({"seed_image": "no_such_seed"}, "seed_image='no_such_seed'"),
        ({"denoising": 1.5}, "denoising=1.5"),
        ({"num_inference_steps": 0}, "num_inference_steps=0"),
        ({"mask_image": "nope"}, "mask_image='nope'"),
        ({"seed_image": None, "mask_image": "keep_bass"}, "needs a seed image"),
    ],
)
def test_bad_inputs_name_the_value(riffuser, kwargs, fragment):
    with pytest.raises(ParameterError, match=fragment):
        riffuser.text_to_audio("x", seed=1, **kwargs)


def test_other_bad_inputs(riffuser):
    with pytest.raises(ParameterError, match="riffusion.Audio"):
        riffuser.audio_to_audio(np.zeros(100), "x")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="num_clips=1"):
        riffuser.interpolate(PromptInput("a"), PromptInput("b"), 1)
    with pytest.raises(ParameterError, match="RiffusionPipeline"):
        Riffuser("not a pipeline")  # type: ignore[arg-type]


def test_stream_buffered_ahead_gives_the_same_clips(riffuser):
    options = {"steps_per_transition": 2, "max_clips": 3, "num_inference_steps": STEPS}
    on_demand = [clip.audio for clip in riffuser.stream(["jazz", "rock"], **options)]
    buffered = [clip.audio for clip in riffuser.stream(["jazz", "rock"], buffer_ahead=2, **options)]
    assert buffered == on_demand
    # Closing an endless buffered stream early stops its worker without error.
    endless = riffuser.stream("ambient", buffer_ahead=1, num_inference_steps=STEPS)
    first = next(endless)
    endless.close()
    assert first.debug["seeds"][0] == [0, 1]


def test_stream_checks_arguments_at_the_call(riffuser):
    with pytest.raises(ParameterError, match="max_clips=-1"):
        riffuser.stream(["jazz"], max_clips=-1)
    with pytest.raises(ParameterError, match="buffer_ahead=-2"):
        riffuser.stream(["jazz"], buffer_ahead=-2)
    with pytest.raises(ParameterError, match="steps_per_transition=0"):
        riffuser.stream(["jazz"], steps_per_transition=0)
