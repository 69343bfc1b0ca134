"""riffusion.training and LoRA loading: objective, over-fitting, resume, diffusers round trip."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from riffusion import Audio, ModelLoadError, ParameterError, RiffusionError, SpectrogramParams
from riffusion.dataset import prepare
from riffusion.testing import make_tiny_model

peft = pytest.importorskip("peft")
training = pytest.importorskip("riffusion.training")

PARAMS = SpectrogramParams(num_frequencies=64)
WINDOW_PX = 64



def _lora_of(model) -> tuple[str, float] | None:
    """``(weights file, scale)`` of the one LoRA loaded on ``model``, or ``None``."""
    loras = model.loras
    assert len(loras) <= 1, loras
    return (loras[0].path, loras[0].scale) if loras else None

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three 64x64 spectrogram windows of three tones, with two captions."""
    root = tmp_path_factory.mktemp("train_data")
    audio_dir = root / "audio"
    rate = PARAMS.sample_rate
    t = np.arange(PARAMS.samples_for_width(WINDOW_PX)) / rate
    for number, frequency in enumerate((220.0, 660.0, 1320.0)):
        folder = audio_dir / ("low" if number == 0 else "high")
        folder.mkdir(parents=True, exist_ok=True)
        wave = 0.3 * np.sin(2 * np.pi * frequency * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
        Audio(wave.astype(np.float32), rate).save(folder / f"tone{number}.wav")
    out = root / "dataset"
    prepare(audio_dir, out, params=PARAMS, window_px=WINDOW_PX, progress=False)
    return out


def _train(dataset, model, out, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("device", "cpu")
    return training.train_lora(dataset, model, out, **kwargs)


@pytest.fixture(scope="module")
def overfit(dataset, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("overfit")
    result = _train(
        dataset,
        tiny_model,
        out,
        steps=80,
        batch_size=3,
        learning_rate=1e-2,
        rank=8,
        target_modules=training.UNET_ALL_TARGETS,
        validation_prompts=["high", "low tone"],
        validate_every=40,
        validation_steps=2,
    )
    return result


def test_training_target_epsilon_and_velocity():
    from diffusers import DDPMScheduler

    config = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
    latents, noise = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    timesteps = torch.tensor([10, 900])
    epsilon = DDPMScheduler(**config)
    assert training.training_target(epsilon, latents, noise, timesteps) is noise
    velocity = DDPMScheduler(**config, prediction_type="v_prediction")
    alpha_bar = velocity.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    expected = alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * latents
    torch.testing.assert_close(
        training.training_target(velocity, latents, noise, timesteps), expected
    )
    sample = DDPMScheduler(**config, prediction_type="sample")
    with pytest.raises(ParameterError, match="prediction_type='sample'"):
        training.training_target(sample, latents, noise, timesteps)


def test_loss_falls_when_overfitting(overfit):
    losses = np.array(overfit.losses)
    assert len(losses) == 80 and np.isfinite(losses).all()
    # Measured: first ten steps 0.93, last ten 0.29 (ratio 0.31).
    assert losses[-10:].mean() < 0.5 * losses[:10].mean()


def test_outputs_log_plot_and_validation(overfit, dataset):
    out = overfit.output_dir
    with open(overfit.log, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == list(range(1, 81))
    np.testing.assert_allclose([float(r["loss"]) for r in rows], overfit.losses, rtol=1e-5)
    assert {float(r["learning_rate"]) for r in rows} == {1e-2}
    with Image.open(overfit.loss_plot) as plot:
        assert plot.format == "PNG" and plot.width >= 600
    folders = sorted(p.name for p in (out / "validation").iterdir())
    assert folders == ["step_000040", "step_000080"]
    png = out / "validation" / "step_000080" / "01_low_tone.png"
    with Image.open(png) as image:
        assert image.size == (WINDOW_PX, 64)
        assert SpectrogramParams.from_exif(dict(image.getexif())) == PARAMS
    audio = Audio.load(png.with_suffix(".wav"))
    assert audio.num_samples == PARAMS.samples_for_width(WINDOW_PX)
    assert len(overfit.validation) == 8
    args = json.loads((out / "training_args.json").read_text())
    assert args["steps"] == 80 and args["rank"] == 8


def _unet_output(unet, seed=0):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(1, 4, 8, 8, generator=generator)
    hidden = torch.randn(1, 77, 32, generator=generator)
    with torch.no_grad():
        return unet(sample, torch.tensor([500]), encoder_hidden_states=hidden).sample


def test_weights_load_into_diffusers_and_riffusion(overfit, tiny_model):
    from diffusers import StableDiffusionPipeline

    from riffusion import RiffusionPipeline

    reference = StableDiffusionPipeline.from_pretrained(
        tiny_model, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    base = _unet_output(reference.unet)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # peft warns when a module of the file was not loaded
        reference.load_lora_weights(overfit.output_dir)
    with_lora = _unet_output(reference.unet)
    ours = RiffusionPipeline.from_pretrained(tiny_model, device="cpu")
    torch.testing.assert_close(_unet_output(ours.unet), base, rtol=0, atol=0)
    ours.load_lora(overfit.weights, scale=1.0)
    assert _lora_of(ours) == (str(overfit.weights), 1.0)
    # diffusers' own pipeline and ours hold the same adapters: identical predictions.
    torch.testing.assert_close(_unet_output(ours.unet), with_lora, rtol=0, atol=0)
    assert (with_lora - base).abs().max() > 1e-3
    ours.set_lora_scale(0.5)
    half = _unet_output(ours.unet)
    assert 0 < (half - base).abs().max() < (with_lora - base).abs().max()
    ours.unload_lora()
    assert _lora_of(ours) is None
    torch.testing.assert_close(_unet_output(ours.unet), base, rtol=0, atol=0)


def test_riffuser_scale_zero_is_the_base_model_bit_for_bit(overfit, tiny_model):
    from riffusion import Riffuser

    riffuser = Riffuser.from_pretrained(tiny_model, device="cpu")
    riffuser.pipeline.set_progress_bar_config(disable=True)

    def clip():
        # denoising 0.75 of 2 steps: one UNet step on the default seed image.
        return riffuser.text_to_audio("low tone", seed=3, num_inference_steps=2)

    base = clip()
    assert riffuser.load_lora(overfit.output_dir, scale=0.0) is riffuser
    zero = clip()
    np.testing.assert_array_equal(np.asarray(zero.image), np.asarray(base.image))
    assert zero.audio == base.audio
    riffuser.pipeline.set_lora_scale(1.0)
    full = clip()
    difference = np.abs(np.asarray(full.image, np.int16) - np.asarray(base.image, np.int16))
    assert difference.max() > 0
    assert riffuser.unload_lora() is riffuser and _lora_of(riffuser.pipeline) is None


def test_load_lora_errors(tiny_model, tmp_path, overfit):
    from safetensors.torch import save_file

    from riffusion import RiffusionPipeline

    pipe = RiffusionPipeline.from_pretrained(tiny_model, device="cpu")
    with pytest.raises(ModelLoadError, match="do not exist"):
        pipe.load_lora(tmp_path / "missing.safetensors")
    with pytest.raises(ModelLoadError, match="has no pytorch_lora_weights"):
        pipe.load_lora(tmp_path)
    save_file({"unet.conv_in.weight": torch.zeros(1)}, tmp_path / "plain.safetensors")
    with pytest.raises(ModelLoadError, match="not a LoRA file"):
        pipe.load_lora(tmp_path / "plain.safetensors")
    with pytest.raises(ParameterError, match="scale=nan"):
        pipe.load_lora(overfit.weights, scale=float("nan"))
    with pytest.raises(RiffusionError, match="no LoRA is loaded"):
        pipe.set_lora_scale(1.0)
    assert _lora_of(pipe) is None


def test_resume_continues_the_same_run(dataset, tiny_model, tmp_path):
    settings = {
        "batch_size": 2,
        "gradient_accumulation": 2,
        "learning_rate": 5e-3,
        "lr_warmup_steps": 3,
        "train_text_encoder": True,
        "seed": 7,
    }
    once = _train(dataset, tiny_model, tmp_path / "once", steps=5, **settings)
    split = tmp_path / "split"
    first = _train(dataset, tiny_model, split, steps=3, **settings)
    with pytest.raises(ParameterError, match="already holds checkpoints"):
        _train(dataset, tiny_model, split, steps=5, **settings)
    with pytest.raises(ParameterError, match="seed: saved 7, now 8"):
        _train(dataset, tiny_model, split, steps=5, resume=True, **{**settings, "seed": 8})
    second = _train(dataset, tiny_model, split, steps=5, resume=True, **settings)
    assert (first.step, second.start_step, second.step) == (3, 3, 5)
    assert first.losses + second.losses == once.losses
    # The same tensors, bit for bit (the files' JSON headers may list metadata in any order).
    from safetensors import safe_open
    from safetensors.torch import load_file

    resumed, reference = load_file(second.weights), load_file(once.weights)
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[key], reference[key]) for key in reference)
    with safe_open(second.weights, "pt") as a, safe_open(once.weights, "pt") as b:
        assert a.metadata() == b.metadata()
    with open(second.log, newline="") as handle:
        assert [float(r["loss"]) for r in csv.DictReader(handle)] == pytest.approx(
            once.losses, rel=1e-5
        )
    # Text encoder adapters are saved in diffusers' format too, and diffusers loads them.
    from diffusers import StableDiffusionPipeline

    reference = StableDiffusionPipeline.from_pretrained(
        tiny_model, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    reference.load_lora_weights(second.output_dir)
    assert "default_0" in reference.text_encoder.peft_config


def test_a_damaged_training_state_is_a_clear_error(dataset, tiny_model, tmp_path):
    first = _train(dataset, tiny_model, tmp_path / "run", steps=1, seed=3)
    state = first.checkpoint
    assert state == first.output_dir / f"{training.CHECKPOINT_PREFIX}1"
    # The optimizer moments cut short: a torch.load error, reported with the file it read.
    optimizer = state / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:100])
    with pytest.raises(RiffusionError, match=r"damaged \(optimizer\.pt: ") as info:
        _train(dataset, tiny_model, tmp_path / "run", steps=2, seed=3, resume=True)
    assert "delete that folder" in str(info.value)
    (state / "unet_lora.safetensors").write_bytes(b"junk")
    with pytest.raises(RiffusionError, match=r"damaged \(unet_lora\.safetensors: "):
        _train(dataset, tiny_model, tmp_path / "run", steps=2, seed=3, resume=True)
    for text in ("{not json", "[]", '{"step": -1, "config": {}}'):
        (state / "state.json").write_text(text)
        with pytest.raises(RiffusionError, match=r"damaged \(state\.json: "):
            _train(dataset, tiny_model, tmp_path / "run", steps=2, seed=3, resume=True)


def test_mixed_precision_and_checkpointing_match_float32(dataset, tiny_model, tmp_path):
    plain = _train(dataset, tiny_model, tmp_path / "plain", steps=2, batch_size=3)
    checkpointed = _train(
        dataset, tiny_model, tmp_path / "ckpt", steps=2, batch_size=3, gradient_checkpointing=True
    )
    np.testing.assert_allclose(checkpointed.losses, plain.losses, rtol=1e-5)
    bf16 = _train(
        dataset, tiny_model, tmp_path / "bf16", steps=2, batch_size=3, mixed_precision="bf16"
    )
    # bfloat16 keeps ~3 significant digits; the first step's loss agrees to a few percent.
    np.testing.assert_allclose(bf16.losses[0], plain.losses[0], rtol=0.05)
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(bf16.weights).values()} == {torch.float32}


def test_bad_arguments(dataset, tiny_model, tmp_path):
    for kwargs, message in (
        ({"rank": 0}, "rank=0"),
        ({"steps": -1}, "steps=-1"),
        ({"learning_rate": float("inf")}, "learning_rate=inf"),
        ({"mixed_precision": "fp8"}, "mixed_precision='fp8'"),
        ({"mixed_precision": "fp16"}, "needs a CUDA GPU"),
        ({"validation_prompts": [""]}, "validation_prompts"),
        ({"device": "tpu"}, "device='tpu'"),
        ({"target_modules": "to_q"}, "target_modules='to_q'"),
    ):
        with pytest.raises(ParameterError, match=message):
            _train(dataset, tiny_model, tmp_path / "out", **kwargs)
    with pytest.raises(ParameterError, match="no metadata.jsonl"):
        _train(tmp_path, tiny_model, tmp_path / "out")
    images = [
        {"image": Image.new("RGB", (64, 64)), "text": "a"},
        {"image": Image.new("RGB", (32, 64)), "text": "b"},
    ]
    with pytest.raises(ParameterError, match="same size"):
        _train(images, tiny_model, tmp_path / "out")
    with pytest.raises(ParameterError, match="multiples of 8"):
        _train([{"image": Image.new("RGB", (60, 64)), "text": "a"}], tiny_model, tmp_path / "o")


def test_trains_from_a_huggingface_dataset(dataset, tiny_model, tmp_path):
    datasets = pytest.importorskip("datasets")
    loaded = datasets.load_dataset("imagefolder", data_dir=str(dataset), split="train")
    from_folder = _train(dataset, tiny_model, tmp_path / "folder", steps=2)
    from_hf = _train(loaded, tiny_model, tmp_path / "hf", steps=2)
    # Same examples in the same (sorted) order: the same run.
    assert from_hf.losses == from_folder.losses


def test_train_lora_command(dataset, tiny_model, tmp_path, capsys):
    from safetensors import safe_open

    from riffusion.cli import main

    out = tmp_path / "cli"
    common = ["-o", str(out), "--model", str(tiny_model), "--device", "cpu", "--rank", "2"]
    argv = ["train-lora", str(dataset), *common, "--steps", "3", "--seed", "5"]
    assert main([*argv, "--validation-prompt", "high", "--validation-steps", "1"]) == 0
    assert "step 3 (from 0)" in capsys.readouterr().out
    with safe_open(out / "pytorch_lora_weights.safetensors", "pt") as weights:
        keys = list(weights.keys())
        shape = weights.get_tensor(next(k for k in keys if "lora_A" in k)).shape
    assert keys and all(k.startswith("unet.") for k in keys) and shape[0] == 2
    assert sorted(p.name for p in (out / "validation" / "step_000003").iterdir()) == [
        "00_high.png",
        "00_high.wav",
    ]
    # Continue the same run to step 5: the library resumed it (start step 3, 5 log rows).
    assert (
        main(["train-lora", str(dataset), *common, "--steps", "5", "--seed", "5", "--resume"]) == 0
    )
    assert "step 5 (from 3)" in capsys.readouterr().out
    with open(out / "training_log.csv", newline="") as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [1, 2, 3, 4, 5]
    assert main(["train-lora", str(tmp_path / "nothing"), *common, "-q"]) == 1
    assert "is not an existing folder" in capsys.readouterr().err
    assert main(["train-lora", str(dataset), *common, "--steps", "0"]) == 2


def test_recipes_record_the_lora_and_render_it_again(overfit, tiny_model):
    import dataclasses
    import hashlib

    from riffusion import Adapter, Recipe, Riffuser

    riffuser = Riffuser.from_pretrained(tiny_model, device="cpu")
    riffuser.pipeline.set_progress_bar_config(disable=True)
    base = riffuser.text_to_audio("low tone", seed=3, num_inference_steps=2)
    assert base.recipe.adapters == () and "adapters" not in base.recipe.to_dict()
    riffuser.load_lora(overfit.output_dir, scale=0.7)  # a folder: the file inside is recorded
    clip = riffuser.text_to_audio("low tone", seed=3, num_inference_steps=2)
    digest = hashlib.sha256(overfit.weights.read_bytes()).hexdigest()[:16]
    assert clip.recipe.adapters == (
        Adapter(kind="lora", path=str(overfit.weights), fingerprint=digest, scale=0.7),
    )
    recipe = Recipe.from_json(clip.recipe.to_json())
    assert recipe == clip.recipe

    # A recipe's files are read only from folders the caller allows: none by default.
    allowed = [overfit.weights.parent]
    with pytest.raises(ModelLoadError, match="outside the folders allowed to be read"):
        Riffuser.from_recipe(recipe, device="cpu")
    # A fresh Riffuser loads the LoRA at the recorded scale and makes the same clip.
    again = Riffuser.from_recipe(recipe, device="cpu", adapter_dirs=allowed)
    again.pipeline.set_progress_bar_config(disable=True)
    assert _lora_of(again.pipeline) == (str(overfit.weights), 0.7)
    assert again.render(recipe).audio == clip.audio
    # Another scale on the instance: the recipe's is used for the call, the own one kept.
    riffuser.pipeline.set_lora_scale(0.2)
    assert riffuser.render(recipe).audio == clip.audio
    assert _lora_of(riffuser.pipeline) == (str(overfit.weights), 0.2)
    # A Riffuser without it takes the recipe's adapters with use_adapters, and drops them.
    plain = Riffuser.from_pretrained(tiny_model, device="cpu")
    plain.pipeline.set_progress_bar_config(disable=True)
    assert plain.use_adapters(recipe.adapters, adapter_dirs=allowed) is plain
    assert plain.render(recipe).audio == clip.audio
    plain.pipeline.set_lora_scale(0.2)  # the same weights at another scale: rescaled
    # Already loaded: rescaled without reading the file (no folder needed).
    assert _lora_of(plain.use_adapters(recipe.adapters).pipeline) == (str(overfit.weights), 0.7)
    assert _lora_of(plain.use_adapters(()).pipeline) is None
    # Without the LoRA, or with other weights under the same path: clear errors.
    riffuser.unload_lora()
    with pytest.raises(ParameterError, match=r"made with adapters \[lora .*\] but .* \[none\]"):
        riffuser.render(recipe)
    changed = dataclasses.replace(
        recipe, adapters=(dataclasses.replace(recipe.adapters[0], fingerprint="0" * 16),)
    )
    with pytest.raises(ModelLoadError, match="the file changed since the clip was made"):
        Riffuser.from_recipe(changed, device="cpu", adapter_dirs=allowed)


@pytest.mark.parametrize(
    ("adapter", "message"),
    [
        ({"kind": "lora", "path": "/w.safetensors", "fingerprint": "0" * 16}, "scale=None"),
        (
            {"kind": "lora", "path": "/w", "fingerprint": "0" * 16, "scale": 1, "token": "t"},
            "token",
        ),
        ({"kind": "vae", "path": "/w", "fingerprint": "0" * 16}, "kind='vae'"),
        ({"kind": "lora", "path": "", "fingerprint": "0" * 16, "scale": 1}, "path=''"),
        ({"kind": "lora", "path": "/w", "fingerprint": "xyz", "scale": 1}, "fingerprint"),
        ({"kind": "textual_inversion", "path": "/w", "fingerprint": "0" * 16}, "token=None"),
        ({"kind": "lora", "path": "/w", "fingerprint": "0" * 16, "scale": 1, "x": 1}, "unknown"),
        ({"kind": "lora", "path": "/w", "scale": 1}, "missing"),
        ("lora", "must be a JSON object"),
    ],
)
def test_recipe_adapters_are_validated(adapter, message):
    from riffusion import Recipe

    data = {"kind": "text_to_audio", "model": "m", "scheduler": "default"}
    data["start"] = {"prompt": "x", "seed": 1}
    with pytest.raises(ParameterError, match=message):
        Recipe.from_dict({**data, "adapters": [adapter]})


def test_a_recipe_records_stacked_loras_under_unique_names():
    from riffusion import Recipe

    lora = {"kind": "lora", "path": "/w", "fingerprint": "0" * 16, "scale": 1.0}
    data = {"kind": "text_to_audio", "model": "m", "scheduler": "default"}
    data["start"] = {"prompt": "x", "seed": 1}
    assert Recipe.from_dict({**data, "adapters": [lora]}).adapters[0].name is None  # as before
    named = [{**lora, "name": "a"}, {**lora, "scale": 0.5, "name": "b"}]
    recipe = Recipe.from_dict({**data, "adapters": named})
    assert [(a.name, a.scale) for a in recipe.adapters] == [("a", 1.0), ("b", 0.5)]
    assert Recipe.from_url(recipe.to_url()).to_dict() == recipe.to_dict()
    with pytest.raises(ParameterError, match=r"unique in a recipe: \['a'\]"):
        Recipe.from_dict({**data, "adapters": [named[0], named[0]]})


def test_render_command_loads_the_recipes_lora(overfit, tiny_model, tmp_path):
    from riffusion import Audio, Riffuser
    from riffusion.cli import main

    riffuser = Riffuser.from_pretrained(str(tiny_model), device="cpu")
    riffuser.pipeline.set_progress_bar_config(disable=True)
    riffuser.load_lora(overfit.weights, scale=0.5)
    clip = riffuser.text_to_audio("low tone", seed=4, num_inference_steps=2)
    clip.save(tmp_path / "made.wav", save_recipe=True)
    argv = ["render", str(tmp_path / "made.json"), "-o", str(tmp_path / "again.wav")]
    # The LoRA lies outside the recipe's folder: only --adapter-dir lets the command read it.
    assert main([*argv, "--device", "cpu", "-q"]) == 1
    assert main([*argv, "--device", "cpu", "-q", "--adapter-dir", str(overfit.weights.parent)]) == 0
    assert Audio.load(tmp_path / "again.wav") == Audio.load(tmp_path / "made.wav")
