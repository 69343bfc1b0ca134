"""Seconds per clip and × real time of three samplers, against stock diffusers in the same run.

One clip is what ``Riffuser.text_to_audio`` makes by default: img2img from the default seed image
(``straight_beat``) at denoising 0.75, one 512x512 spectrogram decoded to 5.11 s of audio with
the fast decoder. Each sampler row times that clip end to end (wall clock, CUDA synchronised)
and splits it with ``clip.debug["timings_s"]``: text encoder, UNet, VAE (encode + decode) and
the audio decode. "× real time" is 5.11 s of audio / seconds per clip. The same settings then run
through stock diffusers: ``StableDiffusionImg2ImgPipeline`` (loaded from the same folder, the
same scheduler built from the checkpoint's config, same strength, steps and guidance) plus
Riffusion's reference decode (``image_to_audio(image, method="reference")``: least-squares
inverse mel + 32 Griffin-Lim iterations), its pipeline call and decode timed separately and
the pipeline's text encoder, UNet and VAE split out with forward hooks; "stock/ours" is the
ratio of the two totals. The decode row compares the two decoders alone.

Samplers: ``pndm-50`` (PNDM, 50 steps, guidance 7), ``dpm-20`` (DPM-Solver++ 2M with Karras
sigmas, 20 steps, guidance 7) and ``lcm-4`` (LCM, 4 steps, guidance 1: diffusers skips the
unconditional UNet pass at guidance <= 1). At denoising 0.75 they call the UNet 38, 15 and 3
times; the "UNet calls" column says how many calls of which batch each side made. LCM needs the
LCM-LoRA (``latent-consistency/lcm-lora-sdv1-5``) for usable audio; its timing does not.

Models: timing does not depend on the weight values, so ``--model sd15-random`` (the default)
builds the full Stable Diffusion 1.5 architecture (``riffusion.testing.SD15_ARCHITECTURE``) with
random weights, saves it in the real checkpoint's folder layout in a temporary folder and loads
it with ``Riffuser.from_pretrained`` and diffusers' ``from_pretrained``, so the real loading code
runs; nothing is downloaded. ``--model PATH_OR_ID`` times a real checkpoint; ``--quick`` the
tiny random model of the tests on the CPU (seconds; checks that the script works, its numbers
say nothing about real models). Each sampler gets a short warm-up (2 steps: every stage once,
with the same shapes) on both sides, then ``--runs`` clips (seeds 1..N), ours and stock
alternating clip by clip so that a shared machine's changing load weighs on both; the medians
are shown.

Usage (from the repository root, after ``pip install -e .``)::

    python bench/realtime.py [--device cuda|cpu] [--model sd15-random|PATH_OR_ID] [--quick]
        [--samplers pndm-50,dpm-20,lcm-4] [--runs 3] [--compile]

``--device cuda`` (the default without ``--quick``) runs in float16 and prints a message and
exits 0 where there is no CUDA; ``--device cpu`` runs in float32 (the full-size model takes
about 9 s per UNet call on 2 cores: ``--samplers lcm-4 --runs 1`` takes a few minutes).
``--compile`` calls ``riffuser.compile()`` where the library has it (stock diffusers is never
compiled, so the ratio then includes what compiling gains).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from machine import cpu_model, machine_line

# A 512-pixel-wide riffusion spectrogram decodes to (512 - 1) * 441 samples (5.11 s), as
# SpectrogramParams.samples_for_width(512) says.
CLIP_SECONDS = (512 - 1) * 441 / 44100
PROMPT = "funky synth solo"
DENOISING = 0.75  # riffusion's default img2img strength
WARM_UP_STEPS = 2  # int(2 * 0.75) = 1 step: every stage runs once, with the clip's shapes


@dataclass(frozen=True)
class Sampler:
    """One row: a scheduler name of ``riffusion.defaults.SCHEDULER_NAMES``, steps and guidance."""

    label: str
    scheduler: str
    steps: int
    guidance: float


SAMPLERS = {
    "pndm-50": Sampler("PNDM 50", "pndm", 50, 7.0),
    "dpm-20": Sampler("DPM++ 20", "dpm++2m-karras", 20, 7.0),
    "lcm-4": Sampler("LCM 4", "lcm", 4, 1.0),
}


@dataclass
class Times:
    """One side of one row: median seconds per clip (``total`` and ``parts``), the UNet calls
    per clip (``"38x2"``: 38 calls of batch 2) and the seconds of the warm-up clip."""

    total: float
    parts: dict[str, float]
    unet_calls: str
    warm_up: float


class UNetCalls:
    """Records the batch size of every UNet call (a forward pre-hook, registered once before
    the first clip so that a compiled UNet sees it from the start)."""

    def __init__(self, unet: Any) -> None:
        self.batches: list[int] = []
        if isinstance(unet, torch.nn.Module):
            unet.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: Any, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else kwargs["sample"]
        self.batches.append(int(sample.shape[0]))

    def take(self, per_clip: int = 1) -> str:
        """The calls since the last ``take``, per clip, as ``"<calls>x<batch>"``.

        Args:
            per_clip: the clips they were made in.
        """
        batches, self.batches = self.batches, []
        if not batches:
            return "?"
        sizes = "/".join(str(b) for b in sorted(set(batches)))
        return f"{len(batches) / per_clip:g}x{sizes}"


class StageClock:
    """Sums the seconds spent in the stock pipeline's networks (forward hooks, CUDA
    synchronised like riffusion's own timer): ``text_encoder``, ``unet`` and ``vae`` (encoder
    and decoder)."""

    def __init__(self, pipeline: Any, device: torch.device) -> None:
        self.device = device
        self.totals: dict[str, float] = {}
        self._started: dict[int, float] = {}
        modules = {
            "text_encoder": [pipeline.text_encoder],
            "unet": [pipeline.unet],
            "vae": [pipeline.vae.encoder, pipeline.vae.decoder],
        }
        for name, parts in modules.items():
            for module in parts:
                module.register_forward_pre_hook(self._pre)
                module.register_forward_hook(self._post(name))
        self.reset()

    def reset(self) -> None:
        self.totals = {"text_encoder": 0.0, "unet": 0.0, "vae": 0.0}

    def _pre(self, module: Any, args: tuple) -> None:
        sync(self.device)
        self._started[id(module)] = time.perf_counter()

    def _post(self, name: str) -> Callable[..., None]:
        def hook(module: Any, args: tuple, output: Any) -> None:
            sync(self.device)
            self.totals[name] += time.perf_counter() - self._started.pop(id(module))

        return hook


def quiet_libraries() -> None:
    """Silence transformers' and diffusers' logging and progress bars (loading, saving), and
    diffusers' deprecation of ``torch_dtype`` (kept: older diffusers know no ``dtype``)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
    import diffusers.utils.logging
    import transformers.utils.logging

    for logging_module in (diffusers.utils.logging, transformers.utils.logging):
        logging_module.set_verbosity_error()
        logging_module.disable_progress_bar()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def write_sd15_random(folder: Path, dtype: torch.dtype, device: torch.device) -> Path:
    """The full SD 1.5 architecture with random weights, in the real checkpoint's layout.

    ``make_tiny_model`` writes the layout (model_index.json, scheduler/, tokenizer/ …); its
    unet/, vae/ and text_encoder/ are then replaced by full-size ones. The tiny tokenizer stays:
    the real 49408-token vocabulary cannot be downloaded, and its ids (< 49408) give the same
    77-token sequences, which is all the timing depends on.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from riffusion.testing import SD15_ARCHITECTURE, make_tiny_model

    make_tiny_model(folder)
    with torch.device(device):  # initialise on the GPU where there is one: seconds, not minutes
        unet = UNet2DConditionModel(**SD15_ARCHITECTURE["unet"])
        vae = AutoencoderKL(**SD15_ARCHITECTURE["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**SD15_ARCHITECTURE["text_encoder"]))
    for name, module in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder)):
        module.to(dtype=dtype).save_pretrained(folder / name, safe_serialization=True)
    return folder


def median_times(samples: list[dict[str, float]], unet_calls: str, warm_up: float) -> Times:
    medians = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    total = medians.pop("total")
    return Times(total, medians, unet_calls, warm_up)


Clip = Callable[..., dict[str, float]]


def our_clip(riffuser: Any, sampler: Sampler, device: torch.device) -> Clip:
    """``clip(seed, steps)``: one ``Riffuser.text_to_audio`` clip, its wall seconds (``total``)
    and its stages from ``clip.debug["timings_s"]``."""
    riffuser.set_scheduler(sampler.scheduler)

    def clip(seed: int, steps: int, decode: bool = True) -> dict[str, float]:
        sync(device)
        start = time.perf_counter()
        made = riffuser.text_to_audio(
            PROMPT,
            seed=seed,
            denoising=DENOISING,
            guidance=sampler.guidance,
            num_inference_steps=steps,
        )
        sync(device)
        wall = time.perf_counter() - start
        t = made.debug["timings_s"]
        return {
            "total": wall,
            "text_encoder": t["text_encoder"],
            "unet": t["unet"],
            "vae": t["vae_encode"] + t["vae_decode"],
            "decode": t["audio_decode"],
        }

    return clip


def stock_clip(
    stock: Any, clock: StageClock, seed_image: Any, params: Any, sampler: Sampler, device: Any
) -> Clip:
    """``clip(seed, steps, decode=True)``: one stock diffusers img2img call, then the reference
    decode of its image, timed apart (``pipeline``, ``decode``); the stages inside the pipeline
    call come from ``clock``."""
    from riffusion import image_to_audio
    from riffusion.models.sd1.schedulers import make_scheduler

    stock.scheduler = make_scheduler(sampler.scheduler, stock.scheduler.config)

    def clip(seed: int, steps: int, decode: bool = True) -> dict[str, float]:
        clock.reset()
        sync(device)
        start = time.perf_counter()
        image = stock(
            PROMPT,
            image=seed_image,
            strength=DENOISING,
            num_inference_steps=steps,
            guidance_scale=sampler.guidance,
            generator=torch.Generator(device).manual_seed(seed),
        ).images[0]
        sync(device)
        generated = time.perf_counter()
        if decode:
            image_to_audio(image, params, method="reference", device=device)
        sync(device)
        done = time.perf_counter()
        return {
            "total": done - start,
            "pipeline": generated - start,
            **clock.totals,
            "decode": done - generated,
        }

    return clip


def time_row(
    ours: Clip, stock: Clip, calls: tuple[UNetCalls, UNetCalls], sampler: Sampler, runs: int
) -> tuple[Times, Times]:
    """Warm both sides up, then time ``runs`` clips, alternating ours and stock clip by clip
    (a shared machine's load then weighs on both alike)."""
    warm_ours = ours(0, WARM_UP_STEPS)["total"]
    warm_stock = stock(0, WARM_UP_STEPS, decode=False)["total"]
    for counter in calls:
        counter.take()
    samples: tuple[list[dict[str, float]], list[dict[str, float]]] = ([], [])
    for seed in range(1, runs + 1):
        samples[0].append(ours(seed, sampler.steps))
        samples[1].append(stock(seed, sampler.steps))
    return (
        median_times(samples[0], calls[0].take(per_clip=runs), warm_ours),
        median_times(samples[1], calls[1].take(per_clip=runs), warm_stock),
    )


def load(args: argparse.Namespace, folder: str, device: torch.device, dtype: torch.dtype):
    """Our Riffuser (compiled if asked and available) and the stock diffusers img2img pipeline."""
    from diffusers import StableDiffusionImg2ImgPipeline

    from riffusion import Riffuser

    riffuser = Riffuser.from_pretrained(folder, device=device, dtype=dtype, scheduler="default")
    riffuser.decode_method = "fast"
    riffuser.pipeline.set_progress_bar_config(disable=True)
    if args.compile:
        if hasattr(riffuser, "compile"):
            start = time.perf_counter()
            riffuser.compile()
            print(f"compile: riffuser.compile() called ({time.perf_counter() - start:.1f} s)")
        else:
            print("compile: not available (this riffusion has no Riffuser.compile); not compiled")
    stock = StableDiffusionImg2ImgPipeline.from_pretrained(
        folder,
        torch_dtype=dtype,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).to(device)
    stock.set_progress_bar_config(disable=True)
    return riffuser, stock


def device_label(device: torch.device, dtype: torch.dtype) -> str:
    kind = str(dtype).removeprefix("torch.")
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} {kind}"
    return f"{cpu_model()} ({os.cpu_count()} cores, {torch.get_num_threads()} threads) {kind}"


def print_table(label: str, rows: list[tuple[Sampler, Times, Times]]) -> None:
    """A Markdown table: one row per sampler, then the two decoders alone.

    Stock is shown as ``total = pipeline (text enc / UNet / VAE) + reference decode``.
    """
    print(
        "| device | sampler | UNet calls (ours; stock) | ours s/clip (text enc / UNet / VAE "
        "/ decode) | × real time | stock s/clip = pipeline (text enc / UNet / VAE) "
        "+ reference decode | stock/ours |"
    )
    print("|---|---|---|---|---|---|---|")
    for sampler, ours, stock in rows:
        o, s = ours.parts, stock.parts
        print(
            f"| {label} | {sampler.label} | {ours.unet_calls}; {stock.unet_calls} "
            f"| {ours.total:.3f} ({o['text_encoder']:.3f} / {o['unet']:.3f} / {o['vae']:.3f} "
            f"/ {o['decode']:.3f}) | {CLIP_SECONDS / ours.total:.2f}x "
            f"| {stock.total:.3f} = {s['pipeline']:.3f} ({s['text_encoder']:.3f} / "
            f"{s['unet']:.3f} / {s['vae']:.3f}) + {s['decode']:.3f} "
            f"| {stock.total / ours.total:.2f}x |"
        )
    fast = statistics.median(ours.parts["decode"] for _, ours, _ in rows)
    reference = statistics.median(stock.parts["decode"] for _, _, stock in rows)
    print(
        f"| {label} | decode alone | - | {fast:.3f} (fast) | {CLIP_SECONDS / fast:.2f}x "
        f"| {reference:.3f} (reference) | {reference / fast:.2f}x |"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default=None,
        help="cuda (float16; default) or cpu (float32; default with --quick)",
    )
    parser.add_argument(
        "--model",
        default="sd15-random",
        help="sd15-random (full SD 1.5 architecture, random weights) or a "
        "checkpoint folder or hub id",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the tiny random model of the tests (a smoke run in seconds)",
    )
    parser.add_argument(
        "--samplers",
        default=",".join(SAMPLERS),
        help=f"comma-separated rows among {', '.join(SAMPLERS)}",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="timed clips per row, median shown (default 3; 1 with --quick)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="call riffuser.compile() where riffusion has it"
    )
    args = parser.parse_args()
    unknown = [name for name in args.samplers.split(",") if name not in SAMPLERS]
    if unknown or not args.samplers:
        parser.error(f"--samplers={args.samplers!r}: choose among {', '.join(SAMPLERS)}")
    args.runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    if args.runs < 1:
        parser.error(f"--runs={args.runs} must be at least 1")
    if args.quick and args.model != "sd15-random":
        parser.error("--quick times the tiny model; leave --model out")
    args.device = args.device or ("cpu" if args.quick else "cuda")
    return args


def main() -> int:
    args = parse_args()
    print(machine_line(), flush=True)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "bench/realtime.py: no CUDA device available; nothing to time (exit 0). "
            "Use --device cpu, or --quick for a smoke run."
        )
        return 0
    if args.device == "cuda":
        device, dtype = torch.device("cuda", torch.cuda.current_device()), torch.float16
    else:
        device, dtype = torch.device("cpu"), torch.float32
    quiet_libraries()
    label = device_label(device, dtype)
    samplers = [SAMPLERS[name] for name in args.samplers.split(",")]

    from riffusion import image_to_audio
    from riffusion.compose.inputs import DEFAULT_SEED, resolve_seed_image
    from riffusion.testing import make_tiny_model

    with tempfile.TemporaryDirectory(prefix="riffusion-realtime-") as tmp:
        start = time.perf_counter()
        if args.quick:
            model_name, folder = "tiny random model", str(make_tiny_model(Path(tmp) / "tiny"))
        elif args.model == "sd15-random":
            model_name = "SD 1.5 architecture, random weights"
            folder = str(write_sd15_random(Path(tmp) / "sd15-random", dtype, device))
        else:
            model_name, folder = args.model, args.model
        riffuser, stock = load(args, folder, device, dtype)
    print(
        f"model: {model_name} on {label}; loaded twice (riffusion, stock diffusers) in "
        f"{time.perf_counter() - start:.1f} s"
    )
    print(
        f"clip: img2img from the default seed image, denoising {DENOISING}, 512x512, "
        f"{CLIP_SECONDS:.2f} s of audio; {WARM_UP_STEPS}-step warm-up, then median of "
        f"{args.runs} run(s)",
        flush=True,
    )

    seed_image, _ = resolve_seed_image(DEFAULT_SEED, riffuser.params)
    assert seed_image is not None  # the default seed image always resolves
    calls = (UNetCalls(getattr(riffuser.pipeline, "unet", None)), UNetCalls(stock.unet))
    clock = StageClock(stock, device)
    # Build the reference decoder's operators once (they depend on the parameters and the
    # device, not the width) on a 32-column strip: a few percent of a whole decode.
    strip = seed_image.crop((0, 0, 32, seed_image.height))
    image_to_audio(strip, riffuser.params, method="reference", device=device)
    rows: list[tuple[Sampler, Times, Times]] = []
    for sampler in samplers:
        ours, theirs = time_row(
            our_clip(riffuser, sampler, device),
            stock_clip(stock, clock, seed_image, riffuser.params, sampler, device),
            calls,
            sampler,
            args.runs,
        )
        rows.append((sampler, ours, theirs))
        print(
            f"{sampler.label}: ours {ours.total:.3f} s (warm-up {ours.warm_up:.1f} s), "
            f"stock {theirs.total:.3f} s (warm-up without decode {theirs.warm_up:.1f} s)",
            flush=True,
        )
    print()
    print_table(label, rows)
    if hasattr(os, "getloadavg"):
        load_1min = os.getloadavg()[0]
        print(f"\nload at the end: {load_1min:.1f} (1-min average; a loaded machine reads slower)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
