"""CUDA paths: float16 generation, model CPU offload, spectrogram conversion on the GPU.

Run with ``pytest -m gpu`` on a machine with a CUDA device; skipped everywhere else (the default
run deselects the ``gpu`` marker). Each test compares the CUDA path against the CPU float32 path
on the same inputs, with tolerances that come from what differs: float16 rounding in the UNet and
VAE (a few grey levels), cuFFT vs pocketfft in the STFT (one grey level at quantisation edges).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from riffusion import Audio, SpectrogramParams, audio_to_image, image_to_audio
from riffusion.spectrogram import spectral_convergence
from tests.conftest import music_like
from tests.diffusion_fixtures import gradient_image, tiny_model_dir

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def cpu_pipe():
    from riffusion.models.sd1 import RiffusionPipeline

    pipe = RiffusionPipeline.from_pretrained(tiny_model_dir(), device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_auto_device_picks_cuda_float16():
    from riffusion.models.sd1 import RiffusionPipeline

    pipe = RiffusionPipeline.from_pretrained(tiny_model_dir())
    assert pipe.device.type == "cuda" and pipe.dtype == torch.float16


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_img2img_matches_cpu(cpu_pipe, dtype):
    from riffusion.models.sd1 import RiffusionPipeline

    gpu = RiffusionPipeline.from_pretrained(tiny_model_dir(), device="cuda", torch_dtype=dtype)
    gpu.set_progress_bar_config(disable=True)
    seed_image = gradient_image(64, 64)
    kwargs = {"denoising": 0.75, "guidance": 7.0, "seed": 3, "num_inference_steps": 6}
    reference = cpu_pipe.img2img("jazz", seed_image, **kwargs).image
    result = gpu.img2img("jazz", seed_image, **kwargs).image
    difference = np.abs(_pixels(result) - _pixels(reference))
    # Noise is drawn on the CPU in float32 for every device, so only arithmetic differs.
    limit = 2 if dtype == torch.float32 else 6
    assert difference.max() <= limit and difference.mean() < 1.0


def test_model_cpu_offload_gives_the_same_image(cpu_pipe):
    from riffusion.models.sd1 import RiffusionPipeline

    plain = RiffusionPipeline.from_pretrained(
        tiny_model_dir(), device="cuda", torch_dtype=torch.float32
    )
    plain.set_progress_bar_config(disable=True)
    offloaded = RiffusionPipeline.from_pretrained(
        tiny_model_dir(), device="cpu", torch_dtype=torch.float32
    ).enable_model_cpu_offload("cuda")
    offloaded.set_progress_bar_config(disable=True)
    kwargs = {"seed": 1, "num_inference_steps": 4, "width": 64, "height": 64}
    a = plain.text_to_image("techno", **kwargs).image
    b = offloaded.text_to_image("techno", **kwargs).image
    assert np.array_equal(_pixels(a), _pixels(b))
    # After a generation every model is back on the CPU.
    assert next(offloaded.unet.parameters()).device.type == "cpu"


def test_spectrogram_forward_on_cuda_matches_cpu():
    audio = Audio(music_like(2.0), sample_rate=44100)
    cpu = _pixels(audio_to_image(audio))
    gpu = _pixels(audio_to_image(audio, device="cuda"))
    assert cpu.shape == gpu.shape
    difference = np.abs(cpu - gpu)
    # Pixels are 255 - 255 * (m / max) ** 0.25: the 4th root magnifies float32 rounding in the
    # faintest bins (pale pixels, > 48 dB under the peak), where cuFFT and pocketfft may land
    # 2-3 grey levels apart; in every louder bin they agree within one. Seen on an H100: at most
    # 2 levels, 1.7% of the pixels differ. A wrong window, scale or frame would move most pixels.
    loud = cpu[..., 0] < 192
    assert difference[loud].max() <= 1
    assert difference.max() <= 3 and (difference > 0).mean() < 0.05


@pytest.mark.parametrize("method", ["fast", "reference"])
def test_decoding_on_cuda_is_as_faithful_as_on_cpu(method):
    params = SpectrogramParams()
    audio = Audio(music_like(2.0), sample_rate=44100)
    image = audio_to_image(audio, params)
    from riffusion.image import image_to_mel
    from riffusion.spectrogram import get_converter

    mel = image_to_mel(image, params)
    errors = {}
    for device in ("cpu", "cuda"):
        decoded = image_to_audio(image, method=method, device=device, normalize=False)
        assert decoded.num_samples == params.samples_for_width(image.width)
        again = get_converter(params).waveform_to_mel(decoded.to_tensor() * 32768.0)
        errors[device] = spectral_convergence(mel, again.cpu())
    assert errors["cuda"] <= errors["cpu"] * 1.1 + 0.005


def test_lora_training_on_cuda_after_a_cpu_training_runs_on_cuda(tmp_path):
    """accelerate remembers the first training's device process-wide; a CUDA training that
    follows a CPU one must still run on the GPU (it silently stayed on the CPU before)."""
    from riffusion.dataset import prepare
    from riffusion.training import train_lora

    params = SpectrogramParams(num_frequencies=64)
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    t = np.arange(params.samples_for_width(64)) / params.sample_rate
    Audio((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), params.sample_rate).save(
        audio_dir / "tone.wav"
    )
    dataset = tmp_path / "dataset"
    prepare(audio_dir, dataset, params=params, window_px=64, progress=False)
    model = tiny_model_dir()
    kwargs = {"steps": 2, "rank": 2, "progress": False, "validation_prompts": ()}
    train_lora(dataset, model, tmp_path / "cpu", device="cpu", **kwargs)
    torch.cuda.reset_peak_memory_stats()
    train_lora(dataset, model, tmp_path / "cuda", device="cuda", **kwargs)
    assert torch.cuda.max_memory_allocated() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_slerp_on_cuda_keeps_the_device_and_matches_cpu(dtype):
    # Computed in float64 on the CPU (MPS has no float64), returned on v0's device and dtype.
    from riffusion.models.sd1.interpolation import slerp

    generator = torch.Generator().manual_seed(0)
    v0, v1 = torch.randn(2, 4, 8, 8, generator=generator).to(dtype)
    mixed = slerp(0.3, v0.cuda(), v1.cuda())
    assert mixed.device.type == "cuda" and mixed.dtype == dtype
    assert torch.equal(mixed.cpu(), slerp(0.3, v0, v1))
