"""LoRA training speed: optimizer steps per second (and peak GPU memory on CUDA).

Always: the tiny random model (``riffusion.testing.make_tiny_model``) on the CPU, with one thread
and with all of them (the ratio is printed), trained on a small synthetic dataset of 512x512
spectrogram windows made with ``riffusion.dataset.prepare`` (the real image size, so the VAE and
UNet see 64x64 latents as with the real model).

With CUDA (or ``--full-size yes``, then on the CPU in fp32): the same on the full-size Stable
Diffusion 1.5 architecture (UNet 320/640/1280/1280, CLIP ViT-L/14 text tower, VAE
128/256/512/512; ``riffusion.testing.SD15_ARCHITECTURE``) with random weights — nothing is
downloaded, and the speed does not depend on the weight values — in fp16 mixed precision, with
and without gradient checkpointing; prints steps/s and the peak
GPU memory of the whole run (model loading included).

Steps/s is measured from the training log (``elapsed_s``), after ``--warmup`` steps, so model
loading and latent caching are not counted.

Usage (from the repository root)::

    python bench/train.py [--steps 20] [--warmup 3] [--rank 4] [--batch-size 1]
                          [--full-size auto|yes|no]
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine_line

from riffusion import Audio
from riffusion.dataset import prepare
from riffusion.testing import SD15_ARCHITECTURE, TINY_SCHEDULER_CONFIG, make_tiny_model
from riffusion.training import train_lora


def make_dataset(folder: Path, count: int = 4) -> Path:
    """``count`` 512x512 windows of seeded noise bursts, via the library's own preparation."""
    audio_dir = folder / "audio"
    audio_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rate = 44100
    for number in range(count):
        envelope = np.repeat(rng.uniform(0.05, 0.4, 64), 3600)  # 5.2 s of 82 ms bursts
        wave = rng.standard_normal(envelope.size).astype(np.float32) * envelope
        Audio(wave.astype(np.float32), rate).save(audio_dir / f"noise{number}.wav")
    out = folder / "dataset"
    prepare(audio_dir, out, progress=False)
    return out


def make_full_size_model(folder: Path, device: torch.device) -> Path:
    """Write an SD 1.5-sized checkpoint with random weights (initialised on ``device``)."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tiny = make_tiny_model(folder / "tiny")  # its tokenizer gives valid ids < 49408
    model = folder / "sd15"
    model.mkdir()
    with torch.device(device):
        unet = UNet2DConditionModel(**SD15_ARCHITECTURE["unet"])
        vae = AutoencoderKL(**SD15_ARCHITECTURE["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**SD15_ARCHITECTURE["text_encoder"]))
    unet.save_pretrained(model / "unet")
    vae.save_pretrained(model / "vae")
    text_encoder.save_pretrained(model / "text_encoder")
    PNDMScheduler(**TINY_SCHEDULER_CONFIG).save_pretrained(model / "scheduler")
    (model / "tokenizer").mkdir()
    for path in (tiny / "tokenizer").iterdir():
        (model / "tokenizer" / path.name).write_bytes(path.read_bytes())
    (model / "model_index.json").write_text((tiny / "model_index.json").read_text())
    del unet, vae, text_encoder
    torch.cuda.empty_cache() if device.type == "cuda" else None
    return model


def steps_per_second(log: Path, warmup: int) -> float:
    with open(log, newline="") as handle:
        rows = list(csv.DictReader(handle))
    times = [float(r["elapsed_s"]) for r in rows]
    return (len(times) - warmup) / (times[-1] - times[warmup - 1])


def run(label: str, dataset: Path, model: Path, out: Path, args, **kwargs) -> dict:
    if torch.cuda.is_available() and kwargs.get("device") != "cpu":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = train_lora(
        dataset,
        model,
        out,
        steps=args.steps,
        rank=args.rank,
        batch_size=args.batch_size,
        learning_rate=1e-4,
        progress=False,
        **kwargs,
    )
    wall = time.perf_counter() - start
    report = {
        "run": label,
        "steps_per_s": round(steps_per_second(result.log, args.warmup), 3),
        "wall_s": round(wall, 1),
        "final_loss": round(result.losses[-1], 4),
    }
    if torch.cuda.is_available() and kwargs.get("device") != "cpu":
        report["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps(report))
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument(
        "--full-size",
        choices=("auto", "yes", "no"),
        default="auto",
        help="the SD1.5-size run: auto = on CUDA only; yes = also on the CPU (slow, fp32)",
    )
    args = parser.parse_args()
    print(machine_line(), flush=True)
    if not 1 <= args.warmup < args.steps:
        parser.error("--warmup must be in [1, steps)")

    default_threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, CPU threads {default_threads}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = make_dataset(root)
        tiny = make_tiny_model(root / "tiny")
        # Baseline in the same run: the tiny model on one CPU thread, then on all of them.
        cpu = {}
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            cpu[threads] = run(
                f"tiny model, CPU, fp32, {threads} thread(s)",
                dataset,
                tiny,
                root / f"out_cpu{threads}",
                args,
                device="cpu",
            )
        torch.set_num_threads(default_threads)
        if default_threads > 1:
            ratio = cpu[default_threads]["steps_per_s"] / cpu[1]["steps_per_s"]
            print(f"tiny model: {default_threads} threads vs 1 thread: {ratio:.2f}x steps/s")
        cuda = torch.cuda.is_available()
        if args.full_size == "no" or (args.full_size == "auto" and not cuda):
            print("no CUDA device (or --full-size no): full-size run skipped")
            return 0
        device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
        print(f"full size on: {torch.cuda.get_device_name(device) if cuda else 'CPU'}")
        model = make_full_size_model(root, device)
        precision = "fp16" if cuda else "no"
        plain = run(
            f"SD1.5 size, {device.type}, {precision}",
            dataset,
            model,
            root / "out_full",
            args,
            device=device.type,
            mixed_precision=precision,
        )
        checkpointed = run(
            f"SD1.5 size, {device.type}, {precision}, gradient checkpointing",
            dataset,
            model,
            root / "out_gc",
            args,
            device=device.type,
            mixed_precision=precision,
            gradient_checkpointing=True,
        )
        summary = (
            f"gradient checkpointing: {checkpointed['steps_per_s'] / plain['steps_per_s']:.2f}x "
            "the speed"
        )
        if cuda and plain["peak_gpu_memory_gib"] > 0:
            memory = checkpointed["peak_gpu_memory_gib"] / plain["peak_gpu_memory_gib"]
            summary += f", {memory:.2f}x the peak memory"
        baseline = cpu[default_threads]["steps_per_s"]
        print(
            f"{summary}; full size vs tiny-on-CPU steps/s: {plain['steps_per_s'] / baseline:.3f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
