"""Seconds per UNet call on this CPU: full-size SD 1.5 (random weights) against the tiny model.

Builds the real UNet architecture (``riffusion.testing.SD15_ARCHITECTURE``, 860 M parameters)
with random float32 weights on the CPU -- nothing is downloaded and the timing does not depend
on the weight values -- and times one classifier-free-guided UNet call on one 512x512 window's
latents (batch 2 x 4 x 64 x 64), as every denoising step makes. The tiny test model's UNet is
timed the same way in the same run as the baseline. From the per-call time it estimates seconds
per 5.11 s clip: img2img at denoising 0.75 makes 38 UNet calls with 50-step PNDM and 18 with
25-step DPM++ (the CPU default), counted in tests/test_newcomer.py.

Usage: ``python bench/cpu_step.py [--runs 1] [--threads N]``
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from machine import machine_line


def _time_call(unet, runs: int) -> float:
    latents = torch.randn(2, 4, 64, 64)
    text = torch.randn(2, 77, unet.config.cross_attention_dim)
    with torch.inference_mode():
        unet(latents, 500, encoder_hidden_states=text)  # warm-up
        started = time.perf_counter()
        for _ in range(runs):
            unet(latents, 500, encoder_hidden_states=text)
    return (time.perf_counter() - started) / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    print(machine_line(), flush=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    from diffusers import UNet2DConditionModel

    from riffusion.models.sd1 import RiffusionPipeline
    from riffusion.testing import SD15_ARCHITECTURE, make_tiny_model

    with tempfile.TemporaryDirectory() as folder:
        tiny = RiffusionPipeline.from_pretrained(make_tiny_model(f"{folder}/t"), device="cpu")
    tiny_s = _time_call(tiny.unet, args.runs)
    full = UNet2DConditionModel(**SD15_ARCHITECTURE["unet"]).eval()
    full_s = _time_call(full, args.runs)
    print(f"threads: {torch.get_num_threads()}")
    print(f"tiny UNet call:      {tiny_s:8.3f} s (baseline)")
    print(f"SD 1.5 UNet call:    {full_s:8.3f} s  ({full_s / tiny_s:.0f}x the tiny model)")
    for name, calls in (("PNDM 50 steps", 38), ("DPM++ 25 steps", 18)):
        print(f"  est. UNet s per clip, {name} ({calls} calls): {calls * full_s:8.0f} s")


if __name__ == "__main__":
    main()
