"""``riffusion train-lora DATASET -o OUT``: fine-tune LoRA adapters on a prepared dataset."""

from __future__ import annotations

import argparse
import math
from typing import Any

from riffusion.commands._types import float_in, int_at_least, positive_int
from riffusion.defaults import DEFAULT_MODEL

__all__ = ["add_parser", "run"]


EXAMPLE = """Example:
  riffusion prepare-dataset my_music/ -o my_dataset/
  riffusion train-lora my_dataset/ -o my_lora/ --steps 2000 --rank 16 --mixed-precision fp16 \\
      --validation-prompt "my style, funky bass" --validate-every 250
  riffusion train-lora my_dataset/ -o my_lora/ --steps 4000 --resume   # continue to 4000"""


_positive_float = float_in(0.0, math.inf, "a positive number", open_low=True)


def add_parser(subparsers: Any, **kwargs: Any) -> argparse.ArgumentParser:
    """Define ``train-lora`` on ``subparsers``; ``kwargs`` go to ``add_parser``."""
    summary = "fine-tune LoRA adapters on a prepared dataset"
    parser = subparsers.add_parser(
        "train-lora",
        help=summary,
        description=summary[0].upper() + summary[1:] + " (the Stable Diffusion objective).",
        epilog=EXAMPLE,
        **kwargs,
    )
    parser.add_argument("dataset", help="folder from prepare-dataset (metadata.jsonl + images)")
    parser.add_argument(
        "-o", "--output", required=True, metavar="DIR", help="folder for weights, log and state"
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="ID|DIR",
        help=f"base checkpoint: hub id or diffusers folder (default: {DEFAULT_MODEL})",
    )
    group = parser.add_argument_group("training")
    group.add_argument("--steps", type=positive_int, default=1000, help="optimizer steps")
    group.add_argument("--rank", type=positive_int, default=4, help="LoRA rank (default: 4)")
    group.add_argument(
        "--all-targets",
        action="store_true",
        help="adapters on the UNet's convolutions and projections too, not only attention",
    )
    group.add_argument(
        "--learning-rate", type=_positive_float, default=1e-4, metavar="LR", help="(default: 1e-4)"
    )
    group.add_argument(
        "--lr-warmup-steps", type=int_at_least(0), default=0, metavar="N", help="(default: 0)"
    )
    group.add_argument("--batch-size", type=positive_int, default=1, metavar="N")
    group.add_argument("--gradient-accumulation", type=positive_int, default=1, metavar="N")
    group.add_argument(
        "--mixed-precision", choices=("no", "fp16", "bf16"), default="no", help="(default: no)"
    )
    group.add_argument("--gradient-checkpointing", action="store_true", help="save memory")
    group.add_argument("--train-text-encoder", action="store_true", help="adapt CLIP as well")
    group.add_argument("--seed", type=int_at_least(0), default=0, help="(default: 0)")
    group.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    group.add_argument("--local-files-only", action="store_true", help="never download")
    group = parser.add_argument_group("checkpoints and validation")
    group.add_argument(
        "--resume", action="store_true", help="continue the training state in the output folder"
    )
    group.add_argument("--checkpoint-every", type=positive_int, default=None, metavar="N")
    group.add_argument(
        "--validation-prompt",
        action="append",
        default=[],
        metavar="PROMPT",
        help="render this prompt (PNG + WAV) at each validation; repeatable",
    )
    group.add_argument("--validate-every", type=positive_int, default=None, metavar="N")
    group.add_argument("--validation-steps", type=positive_int, default=20, metavar="N")
    parser.set_defaults(handler=lambda args, console=None: run(args))
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``train-lora``; returns the exit status."""
    from riffusion.training import UNET_ALL_TARGETS, UNET_TARGETS, train_lora

    quiet = getattr(args, "quiet", False)
    result = train_lora(
        args.dataset,
        args.model,
        args.output,
        rank=args.rank,
        target_modules=UNET_ALL_TARGETS if args.all_targets else UNET_TARGETS,
        learning_rate=args.learning_rate,
        lr_warmup_steps=args.lr_warmup_steps,
        steps=args.steps,
        batch_size=args.batch_size,
        gradient_accumulation=args.gradient_accumulation,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing,
        seed=args.seed,
        train_text_encoder=args.train_text_encoder,
        validation_prompts=args.validation_prompt,
        validate_every=args.validate_every,
        validation_steps=args.validation_steps,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        device=args.device,
        local_files_only=args.local_files_only,
        progress=not quiet,
    )
    if not quiet:
        last = result.losses[-10:]
        mean = f"{sum(last) / len(last):.4f}" if last else "n/a"
        print(
            f"step {result.step} (from {result.start_step}); mean loss of the last "
            f"{len(last)} steps {mean}; weights: {result.weights}"
        )
    return 0
