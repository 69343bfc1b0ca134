"""Benchmark: ``--batch-size``, N generations in one UNet batch, against one at a time.

On the tiny random model, on the CPU with ``--threads`` torch threads (default 1, the batch
default), this measures:

1. image generation alone: ``riffuse_batch`` of ``--items`` img2img items against the same items
   through ``riffuse`` one after the other (the baseline, measured in the same run, best of
   ``--repeats``), and how far each batched image is from its single one (grey levels, and the
   fraction of pixels that differ);
2. the whole batch app: ``render(jobs, batch_size=N)`` against ``batch_size=1`` (model loading,
   phase recovery and file writing included), and whether the files' bytes agree (the audio's
   largest difference is in 16-bit sample steps).

Differences come only from the UNet: a batch of ``2N`` samples is summed in another order than
a batch of 2 (oneDNN and the BLAS block by shape), a few float32 ulps, which moves a pixel by
one grey level only where it sits on a rounding boundary. The tiny model's UNet is a smaller
share of the work than the real one's, and a GPU batches better than one CPU thread: treat the
ratio as a floor for CPUs, and measure a GPU before quoting one.

Run: ``.venv/bin/python bench/batch_size.py [--items 4] [--rows 512] [--steps 10] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import machine_line  # noqa: E402

from riffusion.batch import AUDIO_NAME, IMAGE_NAME, RECIPE_NAME, render  # noqa: E402
from riffusion.convert import image_to_audio  # noqa: E402
from riffusion.inputs import PromptInput  # noqa: E402
from riffusion.models.sd1 import RiffusionPipeline  # noqa: E402
from riffusion.params import SpectrogramParams  # noqa: E402
from riffusion.testing import make_tiny_model  # noqa: E402


def grey_levels(a: Image.Image, b: Image.Image) -> tuple[int, float]:
    """Largest per-channel difference in grey levels, and the fraction of values that differ."""
    difference = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
    return int(difference.max()), float((difference > 0).mean())


def compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Largest difference of two waveforms (full scale 1), and its RMS in dB below ``b``'s."""
    difference = a - b
    rms = np.sqrt(np.mean(difference**2)) or 1e-12
    return float(np.abs(difference).max()), float(20 * np.log10(np.sqrt(np.mean(b**2)) / rms))


def audio_difference(a: Path, b: Path) -> tuple[float, float]:
    """:func:`compare` of two 16-bit WAV files."""
    waves = []
    for path in (a, b):
        with wave.open(io.BytesIO(path.read_bytes())) as audio:
            frames = audio.readframes(audio.getnframes())
        waves.append(np.frombuffer(frames, dtype=np.int16) / 32768.0)
    return compare(*waves)


def best_of(repeats: int, run) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def generation(model: Path, args: argparse.Namespace) -> None:
    pipe = RiffusionPipeline.from_pretrained(model, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.default_rng(0)
    init = Image.fromarray(rng.integers(0, 256, (args.rows, 512, 3), dtype=np.uint8))
    items = [PromptInput(prompt=f"bench tune {i}", seed=i) for i in range(args.items)]
    kwargs = {"init_image": init, "num_inference_steps": args.steps}
    pipe.riffuse(items[0], **kwargs)  # warm-up (allocator, oneDNN primitives)
    single_s, singles = best_of(args.repeats, lambda: [pipe.riffuse(s, **kwargs) for s in items])
    batch_s, batched = best_of(args.repeats, lambda: pipe.riffuse_batch(items, **kwargs))
    print(
        f"\n1. image generation: {args.items} img2img items, {args.rows}x512 pixels, "
        f"{args.steps} steps (denoising 0.75: {int(args.steps * 0.75)} run), guidance 7"
    )
    print(f"{'configuration':<28} {'s/image':>8} {'ratio':>7}")
    print(f"{'riffuse, one at a time':<28} {single_s / args.items:>8.3f} {1.0:>6.2f}x")
    print(
        f"{f'riffuse_batch of {args.items}':<28} {batch_s / args.items:>8.3f} "
        f"{single_s / batch_s:>6.2f}x"
    )
    unet_share = singles[0].timings_s["unet"] / singles[0].timings_s["total"]
    print(f"(the UNet is {unet_share:.0%} of one single generation's time)")
    worst = [grey_levels(b.image, s.image) for b, s in zip(batched, singles, strict=True)]
    print(
        f"batched vs single images: at most {max(w[0] for w in worst)} grey level(s) apart, "
        f"in at most {max(w[1] for w in worst):.1e} of the values"
    )


def rendering(model: Path, work: Path, args: argparse.Namespace) -> None:
    jobs = [
        {
            "id": f"job-{index}",
            "prompt": f"bench tune {index}",
            "seed": index,
            "num_inference_steps": args.steps,
            "params": {"num_frequencies": args.rows},
            # The built-in seed images are 512 rows: other heights start from noise.
            **({} if args.rows == 512 else {"seed_image": None}),
        }
        for index in range(args.jobs)
    ]
    seed = "seed image straight_beat" if args.rows == 512 else "no seed image"
    print(
        f"\n2. render(): {args.jobs} text_to_audio jobs of one window ({seed}), "
        f"{args.rows}x512 images, {args.steps} steps, "
        f"{args.threads} torch thread(s)"
    )
    print(f"{'configuration':<28} {'jobs/s':>8} {'ratio':>7} {'steady jobs/s':>14} {'ratio':>7}")
    rows = []
    for size in (1, args.items):
        out = work / f"batch-{size}"
        result = render(
            jobs, out, model=str(model), device="cpu", batch_size=size,
            cpus_per_worker=args.threads,
        )  # fmt: skip
        if not result.ok:
            raise SystemExit(f"batch_size={size}: failed jobs {result.failed}")
        rows.append((size, out, result))
    base = rows[0][2]
    for size, _, result in rows:
        total = args.jobs / result.elapsed_s
        steady = args.jobs / max(result.elapsed_s - result.startup_s, 1e-9)
        base_total = args.jobs / base.elapsed_s
        base_steady = args.jobs / max(base.elapsed_s - base.startup_s, 1e-9)
        print(
            f"{f'batch_size={size}':<28} {total:>8.3f} {total / base_total:>6.2f}x "
            f"{steady:>14.3f} {steady / base_steady:>6.2f}x"
        )
    (_, single_out, _), (_, batch_out, _) = rows
    images = [
        grey_levels(
            Image.open(batch_out / job["id"] / IMAGE_NAME).convert("RGB"),
            Image.open(single_out / job["id"] / IMAGE_NAME).convert("RGB"),
        )
        for job in jobs
    ]
    audio = [
        audio_difference(batch_out / job["id"] / AUDIO_NAME, single_out / job["id"] / AUDIO_NAME)
        for job in jobs
    ]
    same = {
        name: sum(
            (batch_out / j["id"] / name).read_bytes() == (single_out / j["id"] / name).read_bytes()
            for j in jobs
        )
        for name in (IMAGE_NAME, AUDIO_NAME, RECIPE_NAME)
    }
    print(
        f"batch_size={args.items} vs 1, byte-identical files of {args.jobs} jobs: "
        + ", ".join(f"{name} {count}" for name, count in same.items())
    )
    print(
        f"images at most {max(i[0] for i in images)} grey level(s) apart (in at most "
        f"{max(i[1] for i in images):.1e} of the values); audio at most "
        f"{max(a[0] for a in audio):.3f} of full scale apart, the difference at least "
        f"{min(a[1] for a in audio):.0f} dB below the signal (RMS)"
    )
    # For scale: as many red values (the ones a mono clip is decoded from) of the single image,
    # chosen at random among the audible ones, moved by one grey level; phase recovery turns any
    # such change into a difference of this kind.
    image = Image.open(single_out / jobs[0]["id"] / IMAGE_NAME).convert("RGB")
    batched = Image.open(batch_out / jobs[0]["id"] / IMAGE_NAME).convert("RGB")
    red = np.asarray(image)[..., 0]
    count = max(1, int((red != np.asarray(batched)[..., 0]).sum()))
    audible = np.argwhere(red < 250)
    picked = audible[np.random.default_rng(0).choice(len(audible), count, replace=False)]
    moved = np.asarray(image).copy()
    moved[picked[:, 0], picked[:, 1], 0] += 1
    params = SpectrogramParams(num_frequencies=args.rows)
    one = image_to_audio(image, params), image_to_audio(Image.fromarray(moved), params)
    peak, below = compare(*(np.asarray(a.waveform, dtype=np.float64) for a in one))
    print(
        f"for scale, job 0: batching moved {count} red value(s) (the mono channel) by 1 grey "
        f"level and its audio by {audio[0][0]:.3f} of full scale ({audio[0][1]:.0f} dB below); "
        f"{count} random audible red value(s) of its single image moved by 1 grey level move "
        f"the audio by {peak:.3f} ({below:.0f} dB below)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=4, help="items per batch (batch size)")
    parser.add_argument("--rows", type=int, default=512, help="spectrogram rows (512: real size)")
    parser.add_argument("--steps", type=int, default=10, help="scheduler steps of a full run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (the best counts)")
    parser.add_argument("--jobs", type=int, default=8, help="jobs of the render() comparison")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (batch default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line(), flush=True)
    work = Path(tempfile.mkdtemp(prefix="riffusion-bench-batch-size-"))
    model = make_tiny_model(work / "model")
    generation(model, args)
    rendering(model, work, args)


if __name__ == "__main__":
    main()
