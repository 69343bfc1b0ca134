"""``riffusion prepare-dataset IN -o OUT``: a folder of audio → spectrogram windows for training."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from riffusion.commands._types import float_in, int_at_least, positive_int

__all__ = ["add_parser", "run"]

EXAMPLE = """Example:
  riffusion prepare-dataset my_music/ -o my_dataset/
  riffusion prepare-dataset my_music/ -o my_dataset/ --hop-px 256 --captions captions.csv
  riffusion prepare-dataset my_music/ -o my_dataset/ --shard 0/4   # one of four machines
  riffusion prepare-dataset my_music/ -o my_dataset/ --caption-template "{genre}, {title}"
  riffusion prepare-dataset my_music/ -o my_dataset/ --engine ray --address auto"""


_finite_float = float_in(-math.inf, math.inf, "finite")


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} must be I/N, e.g. 0/4") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"{text}: I/N needs 0 <= I < N")
    return index, count


def add_parser(subparsers: Any, **kwargs: Any) -> argparse.ArgumentParser:
    """Define ``prepare-dataset`` on ``subparsers``; ``kwargs`` go to ``add_parser``."""
    summary = "cut a folder of audio into spectrogram windows for training"
    parser = subparsers.add_parser(
        "prepare-dataset",
        help=summary,
        description=summary[0].upper() + summary[1:] + " (Hugging Face imagefolder layout).",
        epilog=EXAMPLE,
        **kwargs,
    )
    parser.add_argument("input", metavar="IN", help="folder of audio files (searched recursively)")
    parser.add_argument(
        "-o", "--output", required=True, metavar="DIR", help="dataset folder (created or resumed)"
    )
    parser.add_argument(
        "--window-px",
        type=positive_int,
        default=512,
        metavar="PX",
        help="window width in pixels (default: 512, the model's 5.11 s)",
    )
    parser.add_argument(
        "--hop-px",
        type=positive_int,
        default=None,
        metavar="PX",
        help="step between windows in pixels (default: the window width, no overlap)",
    )
    parser.add_argument(
        "--captions",
        default=None,
        metavar="FILE",
        help="CSV (file,text) or JSONL mapping audio paths to captions",
    )
    parser.add_argument(
        "--template",
        default=None,
        help="caption when nothing else gives one; {stem} and {folder} are filled in "
        "(default: 'music')",
    )
    parser.add_argument(
        "--caption-template",
        default=None,
        metavar="TEMPLATE",
        help="caption from the files' tags, e.g. '{genre}, {title}' ({title}, {artist}, "
        "{album}, {genre}, {stem}, {folder}); used after sidecars and --captions, for files "
        "that have every tag it names",
    )
    parser.add_argument(
        "--no-folder-names", action="store_true", help="do not caption files by their folders"
    )
    parser.add_argument("--stereo", action="store_true", help="encode left and right channels")
    parser.add_argument(
        "--no-tail",
        action="store_true",
        help="drop each file's last partial window (default: keep it, aligned to the file's end)",
    )
    parser.add_argument(
        "--keep-duplicates",
        action="store_true",
        help="keep windows whose image repeats an earlier one of the same file",
    )
    parser.add_argument(
        "--random-crop",
        type=int_at_least(0),
        default=0,
        metavar="N",
        help="N extra windows per file at seeded random offsets (default: 0)",
    )
    parser.add_argument(
        "--seed", type=int_at_least(0), default=0, help="seed of --random-crop (default: 0)"
    )
    parser.add_argument(
        "--min-loudness-db",
        type=_finite_float,
        default=None,
        metavar="LUFS",
        help="skip windows quieter than this (default: -50)",
    )
    parser.add_argument(
        "--shard", type=_shard, default=(0, 1), metavar="I/N", help="process shard I of N"
    )
    parser.add_argument(
        "--workers", type=positive_int, default=1, metavar="N", help="processes (default: 1)"
    )
    parser.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="local processes or Ray"
    )
    parser.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="Ray cluster to join with --engine ray ('auto', 'HOST:6379', 'ray://HOST:10001'; "
        "default: $RAY_ADDRESS or a running 'ray start' cluster, else a new local Ray)",
    )
    parser.set_defaults(handler=lambda args, console=None: run(args))
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``prepare-dataset``; returns the exit status (1 when no window was produced)."""
    from riffusion.dataset import DEFAULT_MIN_LOUDNESS_DB, DEFAULT_TEMPLATE, prepare

    quiet = getattr(args, "quiet", False)
    result = prepare(
        args.input,
        args.output,
        window_px=args.window_px,
        hop_px=args.hop_px,
        captions=args.captions,
        use_folder_names=not args.no_folder_names,
        template=args.template if args.template is not None else DEFAULT_TEMPLATE,
        stereo=args.stereo,
        min_loudness_db=(
            args.min_loudness_db if args.min_loudness_db is not None else DEFAULT_MIN_LOUDNESS_DB
        ),
        shard=args.shard,
        workers=args.workers,
        engine=args.engine,
        address=args.address,
        caption_template=args.caption_template,
        keep_tail=not args.no_tail,
        skip_duplicates=not args.keep_duplicates,
        random_crop=args.random_crop,
        seed=args.seed,
        progress=not quiet,
    )
    if not quiet:
        print(
            f"{result.num_records} windows in {result.out_dir}/metadata.jsonl "
            f"({result.windows_written} written, {result.windows_reused} reused, "
            f"{result.windows_silent} silent and {result.windows_duplicate} duplicate skipped; "
            f"{result.files_done} files done, "
            f"{result.files_skipped} already done, {len(result.failures)} failed)"
        )
    for source, reason in result.failures:
        print(f"riffusion: skipped {source}: {reason}", file=sys.stderr)
    if result.num_records == 0:
        print("riffusion: error: no windows were produced", file=sys.stderr)
        return 1
    return 0
