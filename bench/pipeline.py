"""Pipeline overhead benchmark on the tiny random model (CPU, no download).

Times a few 512x512 img2img runs end to end and, independently, every model call (text encoder,
UNet, VAE encoder, VAE decoder) with forward hooks, then prints the overhead ratio
``wall / sum(model calls)``: everything the pipeline does besides running the networks
(tokenising, noise, scheduler steps, masks, image conversion, progress bar) should cost a few
percent at most.

Usage (from the repository root)::

    python bench/pipeline.py [--runs 3] [--steps 20] [--size 512] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine_line
from PIL import Image

from riffusion.models.sd1 import RiffusionPipeline
from riffusion.testing import make_tiny_model


class ModelClock:
    """Sums wall time spent inside the forward of the given modules (hooks, no pipeline help)."""

    def __init__(self, modules: dict[str, torch.nn.Module]) -> None:
        self.totals = dict.fromkeys(modules, 0.0)
        self._start: dict[str, float] = {}
        for name, module in modules.items():
            module.register_forward_pre_hook(self._pre(name))
            module.register_forward_hook(self._post(name))

    def _pre(self, name):
        def hook(module, args):
            self._start[name] = time.perf_counter()

        return hook

    def _post(self, name):
        def hook(module, args, output):
            self.totals[name] += time.perf_counter() - self._start.pop(name)

        return hook

    def reset(self) -> None:
        self.totals = dict.fromkeys(self.totals, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--denoising", type=float, default=0.75)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_tiny_model(Path(tmp) / "tiny")
        pipe = RiffusionPipeline.from_pretrained(folder, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    clock = ModelClock(
        {
            "text_encoder": pipe.text_encoder,
            "unet": pipe.unet,
            "vae_encode": pipe.vae.encoder,
            "vae_decode": pipe.vae.decoder,
        }
    )
    rng = np.random.default_rng(0)
    init = Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8))

    def run(seed: int):
        return pipe.img2img(
            "lo-fi beat with (warm piano:1.2)",
            init,
            denoising=args.denoising,
            num_inference_steps=args.steps,
            seed=seed,
            negative_prompt="noise",
        )

    run(0)  # warm-up: first-call allocations and lazy initialisation
    clock.reset()
    walls, pipeline_model_s = [], []
    for seed in range(args.runs):
        start = time.perf_counter()
        result = run(seed)
        walls.append(time.perf_counter() - start)
        t = result.timings_s
        pipeline_model_s.append(t["text_encoder"] + t["unet"] + t["vae_encode"] + t["vae_decode"])

    wall = sum(walls)
    hooked = sum(clock.totals.values())
    print(
        f"tiny model, {args.size}x{args.size} img2img, {args.steps} steps x denoising "
        f"{args.denoising} ({len(result.timesteps)} UNet calls of batch 2), {args.runs} runs, "
        f"torch threads {torch.get_num_threads()}"
    )
    for name, seconds in clock.totals.items():
        print(f"  {name:<12} {seconds / args.runs * 1e3:9.1f} ms/run")
    print(f"  {'model sum':<12} {hooked / args.runs * 1e3:9.1f} ms/run (forward hooks)")
    print(f"  {'pipeline':<12} {sum(pipeline_model_s) / args.runs * 1e3:9.1f} ms/run (timings_s)")
    print(f"  {'wall':<12} {wall / args.runs * 1e3:9.1f} ms/run")
    ratio = wall / hooked
    print(
        f"SUMMARY overhead wall/sum(model calls) = {ratio:.3f} "
        f"({(ratio - 1) * 100:.1f}% outside the networks)"
    )


if __name__ == "__main__":
    main()
