"""``riffusion batch``: render a JSON Lines file of jobs, in this process or on Ray.

Only the parser lives at import time; torch, diffusers and Ray are imported inside :func:`run`,
so ``riffusion --help`` stays quick.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from riffusion.commands._types import float_in, int_at_least, int_in

__all__ = ["add_parser", "run"]

_EXAMPLE = """\
Jobs file (one JSON object per line; a full recipe, {"recipe": ...}, or the short form):
  {"id": "funk-1", "prompt": "funky bass groove", "seed": 1, "duration_s": 10}
  {"prompt": "techno beat", "seed": 7, "kind": "loop"}
  {"prompt": "lofi", "seed": 2, "lora": "loras/lofi.safetensors", "lora_scale": 0.8}

Examples:
  riffusion batch jobs.jsonl -o out/
  riffusion batch jobs.jsonl -o out/ --batch-size 8
  riffusion batch jobs.jsonl -o s3://bucket/run1 --engine ray --address auto \\
      --workers 8 --gpus-per-worker 1

Each job writes OUT/<id>/audio.wav, spectrogram.png and recipe.json; OUT/manifest.jsonl
records status, files, errors, attempts and timings. Rerunning skips finished jobs."""


_gpus = float_in(0.0, math.inf, "a number >= 0")
# riffusion.batch.MAX_BATCH_SIZE (64); not imported here, so that --help stays quick.
_batch_size = int_in(1, 65, "an integer in [1, 64]")


def _option(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"{text!r} must look like KEY=VALUE")
    return key, value


def add_parser(
    subparsers: Any, *, parents: Sequence[argparse.ArgumentParser] = ()
) -> argparse.ArgumentParser:
    """Add the ``batch`` sub-command to ``subparsers`` (from ``add_subparsers``)."""
    summary = "render many jobs (recipes or prompts) to a folder or URL, locally or on Ray"
    parser = subparsers.add_parser(
        "batch",
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog=_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=list(parents),
    )
    parser.add_argument("jobs", help="JSON Lines file of jobs ('-' reads standard input)")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output folder, or an fsspec URL (s3://..., gs://..., file://...)",
    )
    _add_engine_arguments(parser)
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default=None,
        metavar="ID|DIR",
        help="model id or diffusers folder (default: the recipes' model, else Riffusion's)",
    )
    model.add_argument(
        "--device",
        default="auto",
        help="device of each worker: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps' (default: auto)",
    )
    model.add_argument("--local-files-only", action="store_true", help="never download the model")
    model.add_argument(
        "--adapter-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="let the recipes load LoRA and textual-inversion files from DIR (repeatable); "
        "the jobs file's own folder is allowed too",
    )
    parser.add_argument(
        "--storage-option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec option of the output URL (repeatable), e.g. endpoint_url=http://minio:9000",
    )
    parser.set_defaults(handler=_handler)
    return parser


def _add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``engine`` group of ``riffusion batch``: where and how the jobs run."""
    engine = parser.add_argument_group("engine")
    engine.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: one model in this process; ray: WORKERS Ray actors (default: local)",
    )
    engine.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="Ray cluster to join ('auto', 'ray://head:10001'; default: $RAY_ADDRESS, else a "
        "cluster started here with 'ray start', else a new local Ray)",
    )
    engine.add_argument(
        "--workers", type=int_at_least(1), default=1, metavar="N", help="Ray actors (default: 1)"
    )
    engine.add_argument(
        "--gpus-per-worker",
        type=_gpus,
        default=0.0,
        metavar="G",
        help="GPUs per Ray actor; 0.5 puts two on a GPU (default: 0)",
    )
    engine.add_argument(
        "--cpus-per-worker",
        type=int_at_least(1),
        default=1,
        metavar="C",
        help="CPU cores (and torch threads) per worker, both engines (default: 1)",
    )
    engine.add_argument(
        "--wait-for-resources",
        action="store_true",
        help="let Ray workers wait for nodes an autoscaler adds, instead of failing at once when "
        "no node has --gpus-per-worker GPUs and --cpus-per-worker CPUs",
    )
    engine.add_argument(
        "--batch-size",
        type=_batch_size,
        default=1,
        metavar="N",
        help="render up to N jobs of one window and identical settings except prompt and seed "
        "in one UNet batch (faster; images can differ from one-at-a-time rendering by a grey "
        "level here and there, see docs/batch.md; default: 1, one job at a time)",
    )
    engine.add_argument(
        "--max-retries",
        type=int_at_least(0),
        default=2,
        metavar="K",
        help="extra attempts of a failing job before it is reported (default: 2)",
    )


def _handler(args: argparse.Namespace, console: Any = None) -> int:
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run ``riffusion batch``; returns 0 when every job is done, 1 when some failed.

    Raises:
        RiffusionError: bad jobs or arguments (reported by the command line's main).
    """
    from riffusion.batch import MANIFEST_NAME, load_jobs, render
    from riffusion.errors import ParameterError

    quiet = getattr(args, "quiet", False)
    if args.engine == "local" and (
        args.workers != 1 or args.gpus_per_worker or args.address or args.wait_for_resources
    ):
        raise ParameterError(
            "--workers, --gpus-per-worker, --address and --wait-for-resources need --engine ray "
            "(got --engine local)"
        )
    jobs = load_jobs(args.jobs, model=args.model)

    def status(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)

    status(f"{len(jobs)} job(s) -> {args.output} (engine {args.engine})")
    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="job", desc="batch", file=sys.stderr, leave=False)
    try:
        result = render(
            jobs,
            args.output,
            engine=args.engine,
            model=args.model,
            device=args.device,
            workers=args.workers,
            gpus_per_worker=args.gpus_per_worker,
            cpus_per_worker=args.cpus_per_worker,
            address=args.address,
            wait_for_resources=args.wait_for_resources,
            max_retries=args.max_retries,
            batch_size=args.batch_size,
            storage_options=dict(args.storage_option) or None,
            local_files_only=args.local_files_only,
            adapter_dirs=[
                *args.adapter_dir,
                *([os.path.dirname(os.path.abspath(args.jobs))] if args.jobs != "-" else []),
            ],
            on_result=(lambda entry: bar.update()) if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.close()
    for entry in result.entries:
        if entry.status == "failed":
            print(
                f"riffusion: job {entry.id} failed after {entry.attempts} attempt(s): "
                f"{entry.error}",
                file=sys.stderr,
            )
    status(
        f"{len(result.rendered)} rendered, {len(result.skipped)} already done, "
        f"{len(result.failed)} failed in {result.elapsed_s:.1f} s; manifest "
        f"{result.output_dir.rstrip('/')}/{MANIFEST_NAME}"
    )
    return 0 if result.ok else 1
