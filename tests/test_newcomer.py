"""What a newcomer brings: paths, plain strings, diffusers' names, CPU defaults, memory switches,
loops in bars, textual inversion, and loading errors that say what is wrong in one line."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import riffusion
from riffusion import Audio, ModelLoadError, ParameterError, PromptInput, Riffuser
from riffusion.errors import DeviceError
from riffusion.models.sd1 import RiffusionPipeline
from riffusion.seeds import SEED_BPM, synthesize_seed_audio
from tests.diffusion_fixtures import single_thread_riffuser, tiny_model_dir

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics

STEPS = 2


@pytest.fixture(scope="module")
def riffuser():
    with single_thread_riffuser() as riffuser:
        yield riffuser


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "song.wav"
    synthesize_seed_audio("straight_beat").slice(0.0, 1.0).save(path)
    return path


def _copy_tiny(tmp_path, name="model"):
    return shutil.copytree(tiny_model_dir(), tmp_path / name)


# --------------------------------------------------------------- 3. loading errors
@pytest.mark.parametrize(
    "removed",
    [
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "unet/config.json",
        "scheduler/scheduler_config.json",
        "tokenizer/vocab.json",
    ],
)
def test_incomplete_folder_names_the_missing_file(tmp_path, removed):
    folder = _copy_tiny(tmp_path)
    (folder / removed).unlink()
    with pytest.raises(ModelLoadError) as caught:
        RiffusionPipeline.from_pretrained(folder, device="cpu")
    message = str(caught.value)
    assert removed in message and "incomplete" in message and "\n" not in message


def test_offline_hub_id_is_one_line_without_network_traceback(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError) as caught:
        RiffusionPipeline.from_pretrained(
            "riffusion/riffusion-model-v1", device="cpu", cache_dir=tmp_path
        )
    error = caught.value
    message = str(error)
    assert "\n" not in message and "HF_HUB_OFFLINE=1" in message
    assert "riffusion/riffusion-model-v1" in message and "make_tiny_model" in message
    assert error.__cause__ is None and error.__suppress_context__  # no 60-line chain


def test_variant_and_use_safetensors(tmp_path):
    folder = _copy_tiny(tmp_path)
    with pytest.raises(ModelLoadError, match=r"unet/diffusion_pytorch_model\.fp16\.safetensors"):
        RiffusionPipeline.from_pretrained(folder, device="cpu", variant="fp16")
    with pytest.raises(ModelLoadError, match=r"unet/diffusion_pytorch_model\.bin is missing"):
        RiffusionPipeline.from_pretrained(folder, device="cpu", use_safetensors=False)
    # A folder holding fp16-variant files only loads with variant="fp16", same weights.
    for name in ("unet/diffusion_pytorch_model", "vae/diffusion_pytorch_model"):
        (folder / f"{name}.safetensors").rename(folder / f"{name}.fp16.safetensors")
    (folder / "text_encoder/model.safetensors").rename(
        folder / "text_encoder/model.fp16.safetensors"
    )
    with pytest.raises(ModelLoadError, match="unet/diffusion_pytorch_model.safetensors"):
        RiffusionPipeline.from_pretrained(folder, device="cpu")
    plain = RiffusionPipeline.from_pretrained(tiny_model_dir(), device="cpu")
    loaded = RiffusionPipeline.from_pretrained(
        folder, device="cpu", variant="fp16", use_safetensors=True, torch_dtype=torch.float32
    )
    for a, b in zip(plain.unet.parameters(), loaded.unet.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ModelLoadError, match="variant"):
        RiffusionPipeline.from_pretrained(folder, device="cpu", variant="fp 16")


def test_single_file_paths(tmp_path):
    from safetensors.torch import save_file

    single = tmp_path / "model.safetensors"
    save_file({"not.a.stable.diffusion.key": torch.zeros(3)}, str(single))
    with pytest.raises(ModelLoadError, match="from_single_file"):
        RiffusionPipeline.from_pretrained(single, device="cpu")
    with pytest.raises(ModelLoadError, match="not an existing checkpoint file"):
        RiffusionPipeline.from_single_file(tmp_path / "missing.ckpt", device="cpu")
    with pytest.raises(ModelLoadError) as caught:
        RiffusionPipeline.from_single_file(
            single, config=tiny_model_dir(), device="cpu", local_files_only=True
        )
    message = str(caught.value)
    assert "cannot load the single-file checkpoint" in message
    # Offline, with the local config folder, diffusers got as far as converting the weights
    # (no safety checker or feature extractor asked for) and found no text encoder in the file.
    assert "CLIPTextModel" in message and "preprocessor" not in message
    assert "\n" not in message and caught.value.__cause__ is None


# --------------------------------------------------------------- 2. accept what users pass
def test_audio_to_image_takes_paths(song):
    by_path = riffusion.audio_to_image(str(song))
    by_pathlike = riffusion.audio_to_image(song)
    loaded = riffusion.audio_to_image(Audio.load(song))
    assert np.array_equal(np.asarray(by_path), np.asarray(loaded))
    assert np.array_equal(np.asarray(by_pathlike), np.asarray(loaded))
    with pytest.raises(ParameterError, match="audio must be a riffusion.Audio, got int"):
        riffusion.audio_to_image(42)


def test_audio_to_audio_takes_a_path_and_explains_swaps(riffuser, song):
    from_path = riffuser.audio_to_audio(str(song), "jazz", seed=3, num_inference_steps=STEPS)
    from_audio = riffuser.audio_to_audio(
        Audio.load(song), "jazz", seed=3, num_inference_steps=STEPS
    )
    assert from_path.audio == from_audio.audio
    assert from_path.recipe == from_audio.recipe
    # render() takes the path too.
    assert riffuser.render(from_path.recipe, audio=song).audio == from_path.audio
    with pytest.raises(ParameterError, match=r"swapped.*audio_to_audio\('song.wav', 'jazz piano'"):
        riffuser.audio_to_audio("jazz", song)
    with pytest.raises(ParameterError, match="is not an existing file"):
        riffuser.audio_to_audio("nope.wav", "jazz")
    with pytest.raises(ParameterError, match="prompt=7 must be a string"):
        riffuser.audio_to_audio(song, 7)


def test_wrong_prompt_type_shows_the_right_call(riffuser):
    with pytest.raises(ParameterError) as caught:
        riffuser.text_to_audio(42)
    assert str(caught.value) == (
        "prompt=42 must be a string, e.g. riffuser.text_to_audio('funky bass', seed=42)"
    )
    with pytest.raises(ParameterError, match=r"riffuser.loop\('techno beat'"):
        riffuser.loop(None)
    with pytest.raises(ParameterError, match="must be a string or a riffusion.PromptInput"):
        riffuser.riffuse(3)


def test_plain_strings_for_riffuse_and_interpolate(riffuser):
    by_string = riffuser.riffuse("jazz", "rock", 0.5, num_inference_steps=STEPS)
    explicit = riffuser.riffuse(
        PromptInput("jazz", seed=0), PromptInput("rock", seed=1), 0.5, num_inference_steps=STEPS
    )
    assert by_string.recipe == explicit.recipe and by_string.audio == explicit.audio
    assert by_string.recipe.start == PromptInput("jazz", seed=0)
    assert by_string.recipe.end == PromptInput("rock", seed=1)
    clips = riffuser.interpolate("jazz", "rock", 2, num_inference_steps=STEPS)
    assert [c.recipe.alpha for c in clips] == [0.0, 1.0]
    assert clips[0].recipe.end == PromptInput("rock", seed=1)


def test_diffusers_keyword_aliases(riffuser):
    ours = riffuser.text_to_audio(
        "x", seed=1, guidance=5.0, denoising=0.5, num_inference_steps=STEPS
    )
    theirs = riffuser.text_to_audio(
        "x", seed=1, guidance_scale=5.0, strength=0.5, num_inference_steps=STEPS
    )
    assert theirs.recipe == ours.recipe and theirs.audio == ours.audio
    assert theirs.recipe.start.guidance == 5.0 and theirs.recipe.start.denoising == 0.5
    with pytest.raises(ParameterError, match="pass only guidance="):
        riffuser.text_to_audio("x", guidance=5.0, guidance_scale=6.0)
    with pytest.raises(ParameterError, match="set guidance on the PromptInput"):
        riffuser.riffuse("x", guidance_scale=5.0)


def test_riffuser_to_and_torch_dtype(riffuser):
    assert riffuser.to("cpu") is riffuser
    assert riffuser.pipeline.device == torch.device("cpu")
    loaded = Riffuser.from_pretrained(
        tiny_model_dir(), device="cpu", torch_dtype=torch.bfloat16, use_safetensors=True
    )
    assert loaded.pipeline.dtype == torch.bfloat16
    assert loaded.to("cpu", torch.float32).pipeline.dtype == torch.float32
    with pytest.raises(ParameterError, match="name the same thing"):
        Riffuser.from_pretrained(tiny_model_dir(), dtype="float32", torch_dtype="float16")


# --------------------------------------------------------------- 4. CPU defaults
def test_cpu_default_is_dpm_with_25_steps_and_recorded(riffuser, caplog):
    assert riffuser.scheduler_name == "dpm++"
    assert riffuser.default_num_inference_steps == Riffuser.CPU_DEFAULT_STEPS == 25
    clip = riffuser.text_to_audio("x", seed=1, seed_image=None)
    assert clip.recipe.scheduler == "dpm++" and clip.recipe.num_inference_steps == 25
    assert len(clip.debug["timesteps"][0]) == 25  # text-to-image runs every step
    with caplog.at_level(logging.INFO, logger="riffusion.riffuser"):
        fresh = Riffuser.from_pretrained(tiny_model_dir(), device="cpu")
    assert "dpm++ scheduler with 25 steps" in caplog.text
    assert fresh.pipeline._progress_bar_config == {"desc": "dpm++ (CPU default)"}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="riffusion.riffuser"):
        original = Riffuser.from_pretrained(tiny_model_dir(), device="cpu", scheduler="default")
    assert "dpm++" not in caplog.text and original.pipeline._progress_bar_config == {}
    assert original.scheduler_name == "default" and original.default_num_inference_steps is None
    chosen = Riffuser.from_pretrained(tiny_model_dir(), device="cpu", num_inference_steps=12)
    assert chosen.scheduler_name == "dpm++" and chosen.default_num_inference_steps == 12


def _unet_calls(pipe, scheduler, steps, **kwargs) -> int:
    calls = []
    handle = pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    before = pipe.scheduler
    try:
        pipe.set_scheduler(scheduler)
        pipe.riffuse(PromptInput("x", seed=0), num_inference_steps=steps, **kwargs)
    finally:
        handle.remove()
        pipe.scheduler = before
    return len(calls)


def test_unet_calls_pndm_50_against_dpm_25():
    tiny_pipe = RiffusionPipeline.from_pretrained(tiny_model_dir(), device="cpu")
    tiny_pipe.set_progress_bar_config(disable=True)
    small = {"width": 64, "height": 64}
    pndm = _unet_calls(tiny_pipe, "pndm", 50, **small)
    dpm = _unet_calls(tiny_pipe, "dpm++", 25, **small)
    assert (pndm, dpm) == (51, 25)  # PNDM (PLMS) repeats its first timestep
    seed = Image.new("RGB", (64, 64), "gray")
    pndm_i2i = _unet_calls(tiny_pipe, "pndm", 50, init_image=seed)
    dpm_i2i = _unet_calls(tiny_pipe, "dpm++", 25, init_image=seed)
    # img2img at denoising 0.75: the last int(0.75 · steps) steps (+1 PNDM repeat).
    assert (pndm_i2i, dpm_i2i) == (38, 18)
    assert pndm / dpm == pytest.approx(2.04) and pndm_i2i / dpm_i2i == pytest.approx(2.11, 0.01)


def _image(pipe, **kwargs):
    return np.asarray(
        pipe.riffuse(PromptInput("x", seed=3), num_inference_steps=2, **kwargs).image, np.int16
    )


def test_memory_switches_keep_the_output(tmp_path):
    pipe = RiffusionPipeline.from_pretrained(tiny_model_dir(), device="cpu")
    pipe.set_progress_bar_config(disable=True)
    size = {"width": 128, "height": 64}
    plain = _image(pipe, **size)
    assert pipe.enable_attention_slicing() is pipe
    sliced = _image(pipe, **size)
    assert np.abs(sliced - plain).max() <= 1
    assert pipe.enable_attention_slicing("max") is pipe
    assert np.abs(_image(pipe, **size) - plain).max() <= 1
    pipe.disable_attention_slicing()
    assert pipe.enable_vae_slicing() is pipe and pipe.vae.use_slicing
    assert np.abs(_image(pipe, **size) - plain).max() <= 1
    assert pipe.enable_vae_tiling() is pipe and pipe.vae.use_tiling
    # Within one VAE tile the decode is unchanged.
    assert np.abs(_image(pipe, **size) - plain).max() <= 1
    pipe.disable_vae_tiling()
    assert not pipe.vae.use_tiling
    with pytest.raises(ParameterError, match="slice_size"):
        pipe.enable_attention_slicing(0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_sequential_offload_needs_cuda(riffuser):
    with pytest.raises(DeviceError, match="enable_sequential_cpu_offload needs CUDA"):
        riffuser.pipeline.enable_sequential_cpu_offload()


def test_the_models_memory_switches_chain(riffuser):
    # Offload, slicing and tiling are the image model's (riffuser.pipeline), as in diffusers.
    pipeline = riffuser.pipeline
    assert pipeline.enable_attention_slicing() is pipeline
    assert pipeline.enable_vae_slicing() is pipeline
    assert pipeline.enable_vae_tiling() is pipeline
    riffuser.pipeline.disable_attention_slicing()
    riffuser.pipeline.disable_vae_tiling()
    riffuser.pipeline.vae.disable_slicing()


# --------------------------------------------------------------- 5. loops in bars
def test_loop_bars_sets_the_length_at_the_seed_tempo(riffuser):
    bar_s = 4 * 60 / SEED_BPM
    assert bar_s == pytest.approx(2.56)
    one = riffuser.loop("techno", seed=2, bars=1, num_inference_steps=STEPS)
    assert one.image.width == 256
    assert one.audio.num_samples == 256 * 441 and one.duration_s == pytest.approx(bar_s)
    assert one.recipe.duration_s == pytest.approx(bar_s)
    assert riffuser.render(one.recipe).audio == one.audio
    four = riffuser.loop("techno", seed=2, bars=4, num_inference_steps=STEPS, seed_image=None)
    assert four.image.width == 1024 and four.duration_s == pytest.approx(4 * bar_s)
    assert riffuser.render(four.recipe).audio == four.audio
    default = riffuser.loop("techno", seed=2, num_inference_steps=STEPS)
    assert default.image.width == 512
    for bad in (0, 17, 1.5, True):
        with pytest.raises(ParameterError, match="bars"):
            riffuser.loop("techno", bars=bad)


# --------------------------------------------------------------- 6. textual inversion
def test_textual_inversion_adds_a_token(tmp_path):
    from safetensors.torch import save_file

    pipe = RiffusionPipeline.from_pretrained(tiny_model_dir(), device="cpu")
    pipe.set_progress_bar_config(disable=True)
    width = pipe.text_encoder.get_input_embeddings().weight.shape[1]
    vector = torch.linspace(-2.0, 2.0, width)
    before_cond, _ = pipe.encode_prompt("a <riff-style> beat")
    before_image = _image_of(pipe, "a <riff-style> beat")
    save_file({"<riff-style>": vector}, str(tmp_path / "learned_embeds.safetensors"))
    assert pipe.load_textual_inversion(tmp_path) is pipe
    token_id = pipe.tokenizer.convert_tokens_to_ids("<riff-style>")
    assert pipe.tokenizer.tokenize("a <riff-style> beat")[1] == "<riff-style>"
    assert torch.equal(pipe.text_encoder.get_input_embeddings().weight[token_id], vector)
    after_cond, _ = pipe.encode_prompt("a <riff-style> beat")
    assert not torch.allclose(after_cond, before_cond)
    assert not np.array_equal(_image_of(pipe, "a <riff-style> beat"), before_image)
    with pytest.raises(ParameterError, match="already in the tokenizer"):
        pipe.load_textual_inversion(tmp_path / "learned_embeds.safetensors")

    # Automatic1111's format with two vectors and an explicit token.
    torch.save(
        {"string_to_param": {"*": torch.stack([vector, -vector])}, "name": "ignored"},
        tmp_path / "two.pt",
    )
    pipe.load_textual_inversion(tmp_path / "two.pt", token="<two>")
    ids = pipe.tokenizer(pipe._token_expansions["<two>"], add_special_tokens=False).input_ids
    assert pipe.tokenizer.convert_ids_to_tokens(ids) == ["<two>", "<two>_1"]
    weights = pipe.text_encoder.get_input_embeddings().weight
    assert torch.equal(weights[ids[1]], -vector)
    with pytest.raises(ParameterError, match="wide"):
        save_file({"<bad>": torch.zeros(width + 1)}, str(tmp_path / "bad.safetensors"))
        pipe.load_textual_inversion(tmp_path / "bad.safetensors")
    with pytest.raises(ModelLoadError, match="not an existing embedding file"):
        pipe.load_textual_inversion(tmp_path / "none.bin")


def _image_of(pipe, prompt):
    result = pipe.riffuse(PromptInput(prompt, seed=1), num_inference_steps=2, width=64, height=64)
    return np.asarray(result.image)


def test_recipes_record_textual_inversions_and_render_them_again(tmp_path):
    import hashlib

    from safetensors.torch import save_file

    from riffusion import Adapter, Recipe

    riffuser = Riffuser.from_pretrained(tiny_model_dir(), device="cpu")
    riffuser.pipeline.set_progress_bar_config(disable=True)
    width = riffuser.pipeline.text_encoder.get_input_embeddings().weight.shape[1]
    save_file(
        {"<riff-style>": torch.linspace(-2.0, 2.0, width)}, str(tmp_path / "style.safetensors")
    )
    riffuser.load_textual_inversion(tmp_path / "style.safetensors")
    clip = riffuser.text_to_audio("a <riff-style> beat", seed=5, num_inference_steps=2)
    digest = hashlib.sha256((tmp_path / "style.safetensors").read_bytes()).hexdigest()[:16]
    path = str(tmp_path / "style.safetensors")
    expected = Adapter(
        kind="textual_inversion", path=path, fingerprint=digest, token="<riff-style>"
    )
    assert clip.recipe.adapters == (expected,)
    recipe = Recipe.from_url(clip.recipe.to_url())
    again = Riffuser.from_recipe(recipe, device="cpu", adapter_dirs=[tmp_path])
    again.pipeline.set_progress_bar_config(disable=True)
    assert again.pipeline.textual_inversions == ((path, "<riff-style>"),)
    assert again.render(recipe).audio == clip.audio
    # Textual inversions cannot leave the tokenizer: dropping one is refused, adding one is not.
    with pytest.raises(
        ParameterError, match=r"cannot be unloaded: this Riffuser has \['<riff-style>'\]"
    ):
        again.use_adapters(())
    for bad in (None, recipe.adapters[0], ["<riff-style>"]):
        with pytest.raises(ParameterError, match="must be .*riffusion.recipe.Adapter objects"):
            again.use_adapters(bad)
    plain = Riffuser.from_pretrained(tiny_model_dir(), device="cpu")
    with pytest.raises(
        ParameterError, match=r"textual_inversion .*\] but this Riffuser has \[none\]"
    ):
        plain.render(recipe)
    with pytest.raises(ModelLoadError, match="outside the folders allowed"):
        plain.use_adapters(recipe.adapters)  # a share string names a file: not read unasked
    assert plain.use_adapters(recipe.adapters, adapter_dirs=[tmp_path]).render(recipe).audio == (
        clip.audio
    )
