from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

import riffusion
from riffusion import Audio, Clip, ParameterError, PromptInput, Recipe, Riffuser
from riffusion.image import params_from_image
from riffusion.joins import seam_discontinuity
from riffusion.seeds import load_seed_image
from tests.conftest import SAMPLE_RATE, music_like
from tests.diffusion_fixtures import single_thread_riffuser, tiny_model_dir

STEPS = 2  # img2img at 0.75 runs the last of two steps (PNDM repeats it): plumbing, quickly


@pytest.fixture(scope="module")
def riffuser():
    # scheduler="default": these tests are about the checkpoint's own scheduler (PNDM), not
    # the CPU default (DPM++), which tests/test_newcomer.py covers.
    with single_thread_riffuser(scheduler="default") as riffuser:
        yield riffuser


@pytest.fixture(scope="module")
def clip(riffuser) -> Clip:
    return riffuser.text_to_audio("funky bass", seed=7, num_inference_steps=STEPS)


def test_text_to_audio_shapes_and_metadata(clip):
    assert isinstance(clip, Clip)
    assert clip.image.size == (512, 512) and clip.image.mode == "RGB"
    assert params_from_image(clip.image) == riffusion.SpectrogramParams()
    assert clip.audio.sample_rate == 44100 and clip.audio.num_channels == 1
    # Riffusion's convention: (512 − 1) · 441 = 225,351 samples = 5.11 s per window.
    assert clip.audio.num_samples == 225351 and clip.duration_s == pytest.approx(5.11)
    assert clip.recipe.duration_s == pytest.approx(5.11)
    assert np.isfinite(clip.audio.waveform).all() and clip.audio.peak > 0
    assert clip.recipe.kind == "text_to_audio" and clip.recipe.start.seed == 7
    assert clip.recipe.seed_image == "straight_beat"
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


def test_recipe_parse_reads_every_shared_form_and_names_what_it_refuses():
    import base64
    import zlib

    recipe = Recipe(kind="riffuse", model="m", scheduler="default", start=PromptInput("a", seed=3))
    forms = [
        recipe,
        recipe.to_url(),
        f"  {recipe.to_url()}\n",
        recipe.to_json(),
        recipe.to_json().encode(),
        recipe.to_dict(),
    ]
    for form in forms:
        assert Recipe.parse(form) == recipe
    assert Recipe.parse(recipe) is recipe
    refusals = [
        (5, "got 5"),
        (b"\xff", "not UTF-8"),
        ("riffusion:2:abc", "recipe format version '2'"),
        ("riffusion:1:AAAA", "corrupt"),
        ("{", "not valid JSON"),
        # A deflate stream of 5 MiB of spaces: bounded before it is inflated in full.
        (
            "riffusion:1:" + base64.urlsafe_b64encode(zlib.compress(b" " * (5 << 20))).decode(),
            "inflates to more than 1048576 bytes",
        ),
    ]
    for form, phrase in refusals:
        with pytest.raises(ParameterError) as caught:
            Recipe.parse(form)
        assert phrase in str(caught.value), form


def test_duration_20_s_by_continuation(riffuser):
    clip = riffuser.text_to_audio("ambient drone", seed=3, num_inference_steps=STEPS, duration_s=20)
    assert clip.audio.num_samples == 20 * 44100
    # (2001 − 1) · 441 = 882,000 samples exactly.
    assert clip.image.size == (2001, 512)
    # 512 columns, then windows advancing 256 columns each: 1 + ceil((2001 - 512) / 256) = 7.
    assert len(clip.debug["seeds"]) == 7
    assert [s[0] for s in clip.debug["seeds"]] == list(range(3, 10))
    # No silent gaps at the joins: every 0.5 s stretch carries sound.
    frames = clip.audio.waveform[0, : 40 * 22050].reshape(40, 22050)
    assert (np.sqrt((frames**2).mean(axis=1)) > 1e-3).all()


def test_short_duration(riffuser):
    clip = riffuser.text_to_audio("x", seed=1, num_inference_steps=STEPS, duration_s=1.5)
    assert clip.audio.num_samples == round(1.5 * 44100)
    assert clip.image.width == 151  # (151 − 1) · 441 = 66,150 samples


@pytest.mark.parametrize(
    ("seconds", "width"), [(10, 1001), (5.11, 512), (5.12, 513), (7.3333, 735)]
)
def test_durations_are_exact_and_images_as_narrow_as_they_can_be(riffuser, seconds, width):
    clip = riffuser.text_to_audio("x", seed=2, num_inference_steps=STEPS, duration_s=seconds)
    assert clip.audio.num_samples == round(seconds * 44100)
    assert clip.image.width == width
    # The image decodes to at least the duration, and one column less would be too short.
    params = riffusion.SpectrogramParams()
    assert params.samples_for_width(width) >= clip.audio.num_samples
    assert params.samples_for_width(width - 1) < clip.audio.num_samples


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
    assert clip.image.width == int(seconds * 100) + 1  # n // hop + 1 columns
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
    # One window each: (512 − 1) · 441 samples, the length of Riffusion's server clips.
    assert all(c.audio.num_samples == 225351 for c in clips)
    assert all(c.recipe.duration_s == pytest.approx(5.11) for c in clips)
    joined = riffusion.stitch(clips, crossfade_s=0.0)
    assert joined.num_samples == 5 * 225351
    np.testing.assert_array_equal(joined.waveform[:, 225351 : 2 * 225351], clips[1].audio.waveform)
    faded = riffusion.stitch(clips, crossfade_s=0.05)
    assert faded.num_samples == 5 * 225351 - 4 * round(0.05 * 44100)


def test_loop_has_no_seam(riffuser):
    clip = riffuser.loop("techno", seed=4, num_inference_steps=STEPS)
    # A period of 512 columns is 512 · 441 samples (5.12 s, two bars at 93.75 BPM).
    assert clip.recipe.kind == "loop" and clip.audio.num_samples == 512 * 441
    assert clip.recipe.duration_s == pytest.approx(5.12)
    seam = seam_discontinuity(clip.audio)
    # (A one-shot decode of this noise-like image used to click at the wrap, 24-29, because it
    # clicked at its start; since the decoder's first frame is a real spectrum with chosen signs
    # it starts quietly, and its wrap jump is 0.3-5.2 over seeds 4-6. The one-shot/loop contrast
    # is checked on tonal material in tests/test_looping.py.)
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
        ({"seed_image": "../etc/passwd"}, "not a valid id"),
        ({"seed_image": "/tmp/x.png"}, "not a valid id"),
        ({"mask_image": "a\x00b"}, "not a valid id"),
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
    with pytest.raises(ParameterError, match="pipeline=str is not an image model"):
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
    with pytest.raises(ParameterError, match="background='yes' must be True or False"):
        riffuser.stream(["jazz"], background="yes")
    with pytest.raises(ParameterError, match="mask_image='keep_bass': a mask needs a seed"):
        riffuser.stream(["jazz"], seed_image=None, mask_image="keep_bass")


# ------------------------------------------------------------------ ids of the web app
def test_riffusion_ids_masks_and_paths(riffuser, tmp_path):
    options = {"seed": 3, "num_inference_steps": STEPS}
    via_alias = riffuser.text_to_audio("x", seed_image="og_beat", **options)
    ours = riffuser.text_to_audio("x", seed_image="straight_beat", **options)
    assert via_alias.audio == ours.audio and via_alias.recipe.seed_image == "straight_beat"
    # "" and None both mean no mask, like the web app's null and "".
    no_mask = riffuser.text_to_audio("x", mask_image="", **options)
    assert no_mask.recipe.mask_image is None and no_mask.audio == ours.audio
    masked = riffuser.text_to_audio("x", mask_image="mask_top_third_75", **options)
    assert masked.recipe.mask_image == "top_third_75" and masked.audio != ours.audio
    # A string is an id, never a file, even when such a file exists; a Path is a file.
    path = tmp_path / "seed.png"
    riffusion.image.save_image(load_seed_image("breakbeat"), path)
    with pytest.raises(ParameterError, match="not a valid id"):
        riffuser.text_to_audio("x", seed_image=str(path), **options)
    from_file = riffuser.text_to_audio("x", seed_image=path, **options)
    named = riffuser.text_to_audio("x", seed_image="breakbeat", **options)
    assert from_file.audio == named.audio and from_file.recipe.seed_image.startswith("custom:")


# ----------------------------------------------------------------- recipes: what ran
def _fresh_riffuser(**kwargs) -> Riffuser:
    riffuser = Riffuser.from_pretrained(tiny_model_dir(), device="cpu", **kwargs)
    riffuser.pipeline.set_progress_bar_config(disable=True)
    return riffuser


def test_scheduler_given_to_riffuser_runs_and_is_recorded(riffuser):
    ddim = Riffuser(riffuser.pipeline.__class__(**_parts(riffuser)), model="m", scheduler="ddim")
    assert type(ddim.pipeline.scheduler).__name__ == "DDIMScheduler"
    clip = ddim.text_to_audio("x", seed=1, num_inference_steps=3, seed_image=None)
    assert clip.recipe.scheduler == "ddim" and clip.recipe.scheduler_config is None
    default = riffuser.text_to_audio("x", seed=1, num_inference_steps=3, seed_image=None)
    assert default.recipe.scheduler == "default"
    assert clip.audio != default.audio  # DDIM really ran, not the checkpoint's PNDM
    # The DDIM clip re-renders through the shared riffuser (PNDM) bit for bit.
    assert riffuser.render(clip.recipe).audio == clip.audio
    assert type(riffuser.pipeline.scheduler).__name__ == "PNDMScheduler"


def _parts(riffuser) -> dict:
    pipe = riffuser.pipeline
    return {
        "unet": pipe.unet,
        "vae": pipe.vae,
        "text_encoder": pipe.text_encoder,
        "tokenizer": pipe.tokenizer,
        "scheduler": pipe.scheduler.__class__.from_config(pipe.scheduler.config),
    }


def test_scheduler_assigned_directly_is_recorded_by_name_or_class(riffuser):
    import diffusers

    other = Riffuser(riffuser.pipeline.__class__(**_parts(riffuser)), model="m")
    other.pipeline.set_progress_bar_config(disable=True)
    config = other.pipeline.scheduler.config
    other.pipeline.scheduler = diffusers.EulerDiscreteScheduler.from_config(config)
    assert other.scheduler_name == "euler"
    other.pipeline.scheduler = diffusers.UniPCMultistepScheduler.from_config(config)
    assert other.scheduler_name == "unipc"
    # A scheduler class without a short name is recorded by its class name.
    other.pipeline.scheduler = diffusers.DEISMultistepScheduler.from_config(config)
    assert other.pipeline.describe_scheduler() == ("DEISMultistepScheduler", {})
    deis = other.text_to_audio("x", seed=2, num_inference_steps=3, seed_image=None)
    assert deis.recipe.scheduler == "DEISMultistepScheduler"
    # A changed config is recorded as overrides, and rendering elsewhere rebuilds it.
    # (our "ddim" turns clip_sample off, as diffusers' SD pipelines do)
    other.pipeline.scheduler = diffusers.DDIMScheduler.from_config(
        config, timestep_spacing="trailing", clip_sample=False
    )
    trailing = other.text_to_audio("x", seed=2, num_inference_steps=3, seed_image=None)
    assert trailing.recipe.scheduler == "ddim"
    assert trailing.recipe.scheduler_config == {"timestep_spacing": "trailing"}
    recipe = Recipe.from_json(trailing.recipe.to_json())
    assert riffuser.render(recipe).audio == trailing.audio
    assert riffuser.render(deis.recipe).audio == deis.audio


def test_render_has_no_side_effects(riffuser, clip):
    scheduler = riffuser.pipeline.scheduler
    before = (riffuser.decode_method, riffuser.decode_seed, riffuser.model, riffuser.params)
    recipe = dataclasses.replace(
        clip.recipe, decode_method="reference", decode_seed=5, scheduler="euler"
    )
    rendered = riffuser.render(recipe)
    assert (riffuser.decode_method, riffuser.decode_seed, riffuser.model, riffuser.params) == before
    assert riffuser.pipeline.scheduler is scheduler
    assert rendered.recipe == recipe
    # The recipe's decode settings were used: the reference decoder with seed 5.
    expected = riffusion.image_to_audio(rendered.image, method="reference", seed=5)
    assert rendered.audio == expected


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kind": "remix"}, "kind"),
        ({"model": ""}, "model"),
        ({"scheduler": "warp"}, "scheduler"),
        ({"scheduler": "os"}, "scheduler"),
        ({"scheduler_config": {"x": float("nan")}}, "scheduler_config"),
        ({"scheduler_config": [1]}, "scheduler_config"),
        ({"alpha": float("nan")}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": "0.5"}, "alpha"),
        ({"num_inference_steps": -2}, "num_inference_steps"),
        ({"num_inference_steps": 1001}, "num_inference_steps"),
        ({"num_inference_steps": 2.5}, "num_inference_steps"),
        ({"seed_image": "../x"}, "seed_image"),
        ({"mask_image": "/abs"}, "mask_image"),
        ({"seed_image": "custom:zz"}, "seed_image"),
        ({"duration_s": float("nan")}, "duration_s"),
        ({"duration_s": 0}, "duration_s"),
        ({"duration_s": 601}, "duration_s"),
        ({"duration_s": 1e12}, "duration_s"),
        ({"input_audio": "0123456789abcdef"}, "input_audio"),
        ({"decode_method": "magic"}, "decode_method"),
        ({"decode_seed": 1.0}, "decode_seed"),
        ({"decode_seed": None}, "decode_seed"),
        ({"params": {}}, "params"),
        ({"version": ""}, "version"),
        ({"start": "x"}, "start"),
        ({"end": 3}, "end"),
    ],
)
def test_recipe_fields_are_validated_on_construction(clip, changes, field):
    with pytest.raises(ParameterError, match=field):
        dataclasses.replace(clip.recipe, **changes)
    data = clip.recipe.to_dict()
    data.update(changes)
    if field not in ("start", "end", "params"):  # these are parsed before construction
        with pytest.raises(ParameterError, match=field):
            Recipe.from_dict(json.loads(json.dumps(data)) if field != "scheduler_config" else data)


def test_recipe_records_the_model_folder_as_an_absolute_path(riffuser, clip):
    assert clip.recipe.model == str(tiny_model_dir().resolve())


_RENDER_SCRIPT = """
import sys, torch
torch.set_num_threads(int(sys.argv[2]))
from riffusion import Riffuser
recipe = open(sys.argv[1]).read()
riffuser = Riffuser.from_recipe(recipe, device="cpu")
riffuser.pipeline.set_progress_bar_config(disable=True)
clip = riffuser.render(recipe)
clip.save("again.wav", save_image=True)
open("again.raw", "wb").write(clip.audio.waveform.tobytes())
"""


def test_recipe_rerenders_bit_for_bit_in_another_process_and_directory(riffuser, tmp_path):
    import os
    import subprocess
    import sys

    clip = riffuser.text_to_audio(
        "lofi (piano:1.2)", seed=11, num_inference_steps=3, duration_s=6.0
    )
    recipe_path = tmp_path / "recipe.json"
    recipe_path.write_text(clip.recipe.to_url())
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run(
        [sys.executable, "-c", _RENDER_SCRIPT, str(recipe_path), str(torch.get_num_threads())],
        cwd=work,
        env=env,
        check=True,
        timeout=600,
    )
    assert (work / "again.raw").read_bytes() == clip.audio.waveform.tobytes()
    again = Image.open(work / "again.png")
    assert np.array_equal(np.asarray(again), np.asarray(clip.image))


def test_clip_repr_and_display_name_what_ran(clip):
    import riffusion.recipe
    import riffusion.riffuser

    assert riffusion.riffuser.Clip is riffusion.recipe.Clip is riffusion.Clip
    assert riffusion.riffuser.Recipe is riffusion.recipe.Recipe is riffusion.Recipe
    text = repr(clip)
    recipe = clip.recipe
    assert text.startswith(f"Clip(kind={recipe.kind}, prompt={recipe.start.prompt!r}, ")
    assert f"seed={recipe.start.seed}," in text
    assert f"duration_s={clip.duration_s:.2f}" in text
    assert f"total {clip.debug['timings_s']['total']:.2f}" in text
    html = clip._repr_html_()
    # Compressed audio (MP3, or OGG where libsndfile lacks MP3), never a WAV data URL.
    assert "data:audio/mpeg;base64," in html or "data:audio/ogg;base64," in html
    assert "data:audio/wav" not in html
    assert f"<td style='text-align:left'>{recipe.start.seed}</td>" in html


def test_audio_display_embeds_a_compressed_player():
    import base64
    import io
    import re

    audio = Audio(np.zeros((2, 44100), np.float32), 44100)
    html = audio._repr_html_()
    match = re.search(r'src="data:(audio/[a-z]+);base64,([^"]+)"', html)
    assert match is not None and match.group(1) in ("audio/mpeg", "audio/ogg")
    decoded = Audio.load(io.BytesIO(base64.b64decode(match.group(2))))
    assert decoded.num_channels == 2 and abs(decoded.duration_s - 1.0) < 0.1
    assert "1.00 s, 44100 Hz, 2 channels" in html
    assert len(base64.b64decode(match.group(2))) < len(audio.to_bytes("WAV")) / 4
