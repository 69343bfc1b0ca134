"""Model loading tests: local folders, the Hugging Face cache, offline errors, devices."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import riffusion.models.sd1.loading as loading_module
from riffusion.errors import DeviceError, ModelLoadError, ParameterError
from riffusion.models.sd1 import RiffusionPipeline, resolve_model_folder
from riffusion.testing import make_tiny_model

try:
    from diffusion_fixtures import _one_torch_thread, tiny_model, tiny_pipe
except ImportError:  # tests/ imported as a package
    from tests.diffusion_fixtures import _one_torch_thread, tiny_model, tiny_pipe  # noqa: F401


def test_tiny_model_has_the_real_layout(tiny_model):
    index = json.loads((tiny_model / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["safety_checker"] == ["stable_diffusion", "StableDiffusionSafetyChecker"]
    assert index["feature_extractor"] == ["transformers", "CLIPImageProcessor"]
    assert not (tiny_model / "safety_checker").exists()
    assert not (tiny_model / "feature_extractor").exists()
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (tiny_model / name).is_dir()
    assert (tiny_model / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (tiny_model / "text_encoder" / "model.safetensors").is_file()
    assert (tiny_model / "tokenizer" / "vocab.json").is_file()
    assert (tiny_model / "tokenizer" / "merges.txt").is_file()
    scheduler = json.loads((tiny_model / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "PNDMScheduler"
    assert scheduler["steps_offset"] == 1 and scheduler["skip_prk_steps"] is True
    vae = json.loads((tiny_model / "vae" / "config.json").read_text())
    assert vae["scaling_factor"] == 0.18215 and len(vae["block_out_channels"]) == 4


def test_make_tiny_model_is_deterministic(tmp_path):
    from safetensors.torch import load_file

    a = make_tiny_model(tmp_path / "a", seed=3)
    b = make_tiny_model(tmp_path / "b", seed=3)
    c = make_tiny_model(tmp_path / "c", seed=4)
    for sub, name in (("unet", "diffusion_pytorch_model"), ("text_encoder", "model")):
        wa = load_file(a / sub / f"{name}.safetensors")
        wb = load_file(b / sub / f"{name}.safetensors")
        wc = load_file(c / sub / f"{name}.safetensors")
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
        assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    with pytest.raises(ParameterError, match="seed=-1"):
        make_tiny_model(tmp_path / "d", seed=-1)


def test_load_folder_with_absent_safety_checker(tiny_pipe, tiny_model):
    pipe = RiffusionPipeline.from_pretrained(str(tiny_model), device="cpu", scheduler="ddim")
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    assert pipe.device == torch.device("cpu") and pipe.dtype == torch.float32
    assert pipe.to("cpu") is pipe
    assert not hasattr(pipe, "safety_checker")
    # A 512x512 image maps to 4x64x64 latents like the real VAE.
    latents = pipe.encode_image(Image.new("RGB", (512, 512)))
    assert latents.shape == (1, 4, 64, 64)
    # Same weights as the shared fixture pipeline: same image.
    pipe.set_scheduler("default").set_progress_bar_config(disable=True)
    a = pipe.text_to_image("x", num_inference_steps=2, width=64, height=64)
    b = tiny_pipe.text_to_image("x", num_inference_steps=2, width=64, height=64)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


def test_missing_folder_raises_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError) as info:
        RiffusionPipeline.from_pretrained(tmp_path / "nope", device="cpu")
    message = _one_line(info.value)
    assert "is not an existing folder" in message and "nope" in message
    with pytest.raises(ModelLoadError, match="not an existing folder"):
        RiffusionPipeline.from_pretrained("./no/such/model", device="cpu")


def test_folder_without_unet_raises(tmp_path, tiny_model):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(ModelLoadError, match=r"lacks the sub-folder\(s\) \['unet'\]"):
        RiffusionPipeline.from_pretrained(broken, device="cpu")


def test_corrupt_weights_and_unknown_scheduler_raise(tmp_path, tiny_model):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ModelLoadError, match="cannot load the vae") as info:
        RiffusionPipeline.from_pretrained(broken, device="cpu")
    assert info.value.__cause__ is not None
    _one_line(info.value)

    other = tmp_path / "other"
    shutil.copytree(tiny_model, other)
    config_path = other / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config["_class_name"] = "MagicScheduler"
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="_class_name='MagicScheduler'"):
        RiffusionPipeline.from_pretrained(other, device="cpu")


def test_uncached_hub_id_with_local_files_only_raises(tmp_path):
    with pytest.raises(ModelLoadError) as info:
        RiffusionPipeline.from_pretrained(
            "riffusion-test/does-not-exist",
            local_files_only=True,
            cache_dir=tmp_path / "hf-cache",
            device="cpu",
        )
    message = _one_line(info.value)
    assert "'riffusion-test/does-not-exist' is not in cache_dir=" in message
    assert "local_files_only=True" in message and "local folder" in message
    # The hub's own error (and its network traceback) is suppressed: one line is the message.
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_unreachable_hub_raises_one_line(monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("Got: ConnectError: [Errno 101]\nAn error happened ...")

    monkeypatch.setattr("huggingface_hub.snapshot_download", offline)
    # Online mode, whatever the user's environment says (HF_HUB_OFFLINE=1 has its own message).
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ModelLoadError) as info:
        resolve_model_folder("riffusion/riffusion-model-v1", cache_dir=tmp_path)
    message = _one_line(info.value)
    assert "the Hugging Face hub could not be reached" in message
    assert "local_files_only=False" in message and "local folder" in message


def test_cached_hub_snapshot_loads_offline(monkeypatch, tmp_path, tiny_model):
    # Lay the tiny model out as the Hugging Face cache does, then load it by id, offline.
    cache = tmp_path / "hub"
    repo = cache / "models--riffusion-test--tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_model, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    calls = []
    real = loading_module._download

    def spy(model, **kwargs):
        calls.append(kwargs["patterns"])
        return real(model, **kwargs)

    monkeypatch.setattr(loading_module, "_download", spy)
    pipe = RiffusionPipeline.from_pretrained(
        "riffusion-test/tiny", local_files_only=True, cache_dir=cache, device="cpu"
    )
    assert pipe.unet.config.sample_size == 64
    (patterns,) = calls  # safetensors were found: no second (.bin) request
    assert "unet/diffusion_pytorch_model.safetensors" in patterns
    assert not any("safety_checker" in p or "feature_extractor" in p for p in patterns)
    assert not any(p.endswith(".bin") for p in patterns)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_raises(tiny_model, tiny_pipe):
    with pytest.raises(DeviceError, match="device='cuda' was requested but CUDA is not"):
        RiffusionPipeline.from_pretrained(tiny_model, device="cuda")
    with pytest.raises(DeviceError, match="device='cuda:1'"):
        tiny_pipe.to("cuda:1")
    with pytest.raises(DeviceError, match="enable_model_cpu_offload needs CUDA"):
        tiny_pipe.enable_model_cpu_offload()
    assert tiny_pipe.device == torch.device("cpu")


def test_unknown_scheduler_name_at_load(tiny_model):
    with pytest.raises(ParameterError, match=r"scheduler='fast' is not a known.*'dpm\+\+'"):
        RiffusionPipeline.from_pretrained(tiny_model, device="cpu", scheduler="fast")


def test_bfloat16_pipeline_runs(tiny_model):
    pipe = RiffusionPipeline.from_pretrained(tiny_model, device="cpu", torch_dtype="bfloat16")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.dtype == torch.bfloat16 and pipe.unet.dtype == torch.bfloat16
    result = pipe.text_to_image("x", num_inference_steps=2, width=64, height=64)
    assert result.image.size == (64, 64)
    assert np.asarray(result.image).std() > 1.0
