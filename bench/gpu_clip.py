"""Seconds per riffusion clip at full Stable Diffusion 1.5 size on a CUDA GPU.

Builds the real architecture (UNet 320/640/1280/1280 with 768-wide cross-attention, the CLIP
ViT-L/14 text tower, VAE 128/256/512/512; see ``riffusion.testing.SD15_ARCHITECTURE``) with random
weights directly on the GPU in float16 -- nothing is downloaded, and the timing does not depend on
the weight values -- then times one 5.11 s clip (a 512x512 spectrogram) generated like riffusion
does: img2img from a seed image, 50 steps, denoising 0.75, classifier-free guidance. A warm-up run
comes first. Prints seconds per clip and the real-time factor (5.11 s of audio / seconds per
clip). Then checks that model CPU offload runs.

Usage (from the repository root, after ``pip install -e .``)::

    python bench/gpu_clip.py [--runs 3] [--steps 50] [--denoising 0.75] [--no-offload-check]

Without CUDA it prints a message and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine_line
from PIL import Image

# A 512-pixel-wide riffusion spectrogram decodes to (512 - 1) * 441 samples (5.11 s), as
# SpectrogramParams.samples_for_width(512) says; spelled out so this script needs no import.
CLIP_SECONDS = (512 - 1) * 441 / 44100


def build_pipeline(device: torch.device):
    """The full-size SD 1.5 pipeline with random float16 weights, built on ``device``."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from riffusion.models.sd1 import RiffusionPipeline
    from riffusion.testing import SD15_ARCHITECTURE, TINY_SCHEDULER_CONFIG, make_tiny_model

    # The real 49408-token vocabulary cannot be downloaded; the tiny model's tokenizer yields
    # valid ids (< 49408) and the same 77-token sequences, which is all the timing depends on.
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = CLIPTokenizer.from_pretrained(
            make_tiny_model(Path(tmp) / "tiny"), subfolder="tokenizer"
        )
    with torch.device(device):  # initialise the weights on the GPU: seconds, not minutes
        unet = UNet2DConditionModel(**SD15_ARCHITECTURE["unet"])
        vae = AutoencoderKL(**SD15_ARCHITECTURE["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**SD15_ARCHITECTURE["text_encoder"]))
    for module in (unet, vae, text_encoder):
        module.to(dtype=torch.float16).eval().requires_grad_(False)
    pipe = RiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=PNDMScheduler(**TINY_SCHEDULER_CONFIG),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--denoising", type=float, default=0.75)
    parser.add_argument("--no-offload-check", action="store_true")
    args = parser.parse_args()
    print(machine_line(), flush=True)

    if not torch.cuda.is_available():
        print("bench/gpu_clip.py: no CUDA device available; nothing to time (exit 0).")
        return 0
    device = torch.device("cuda", torch.cuda.current_device())
    print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")

    start = time.perf_counter()
    pipe = build_pipeline(device)
    params = sum(
        p.numel() for m in (pipe.unet, pipe.vae, pipe.text_encoder) for p in m.parameters()
    )
    print(
        f"built SD 1.5 architecture ({params / 1e6:.0f} M parameters, float16) in "
        f"{time.perf_counter() - start:.1f} s"
    )

    rng = np.random.default_rng(0)
    seed_image = Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8))

    def clip(seed: int):
        return pipe.img2img(
            "funky synth solo",
            seed_image,
            denoising=args.denoising,
            num_inference_steps=args.steps,
            seed=seed,
        )

    clip(0)  # warm-up: cuDNN autotuning, allocator, lazy initialisation
    times, result = [], None
    for seed in range(1, args.runs + 1):
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        result = clip(seed)
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    per_clip = float(np.median(times))
    parts = ", ".join(f"{k} {v:.3f}" for k, v in result.timings_s.items())
    print(f"{len(result.timesteps)} UNet calls (batch 2) per clip; last run [s]: {parts}")
    print(
        f"SUMMARY {per_clip:.3f} s per {CLIP_SECONDS:.2f} s clip (median of {args.runs}), "
        f"real-time factor {CLIP_SECONDS / per_clip:.2f}x"
    )

    if not args.no_offload_check:
        pipe.enable_model_cpu_offload(device)
        t0 = time.perf_counter()
        out = pipe.img2img("offload check", seed_image, num_inference_steps=4, denoising=1.0)
        resident = torch.cuda.memory_allocated(device) / 2**20
        print(
            f"model CPU offload: OK ({time.perf_counter() - t0:.2f} s for 4 steps, "
            f"{out.image.size}, {resident:.0f} MiB still allocated on the GPU afterwards)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
