"""``riffusion train-lora DATASET -o OUT``: fine-tune LoRA adapters on a prepared dataset."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from riffusion.commands._types import float_in, int_at_least, positive_int
from riffusion.defaults import DEFAULT_MODEL, LR_SCHEDULERS, OPTIMIZERS, REPORT_TO

__all__ = ["add_parser", "run"]


EXAMPLE = """Example:
  riffusion prepare-dataset my_music/ -o my_dataset/
  riffusion train-lora my_dataset/ -o my_lora/ --steps 2000 --rank 16 --mixed-precision fp16 \\
      --validation-prompt "my style, funky bass" --validate-every 250
  riffusion train-lora my_dataset/ -o my_lora/ --steps 4000 --resume   # continue to 4000
  riffusion train-lora my_dataset/ -o my_lora/ --steps 4000 --resume my_lora/checkpoint-1500

Ctrl-C (SIGINT) or SIGTERM stops at the end of the step under way, saves a checkpoint and exits
with status 130 (SIGINT) or 143 (SIGTERM); --resume continues exactly where it stopped. A second
Ctrl-C aborts at once without saving."""



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
    _add_training_arguments(parser.add_argument_group("training"))
    _add_checkpoint_arguments(parser.add_argument_group("checkpoints and validation"))
    parser.set_defaults(handler=lambda args, console=None: run(args))
    return parser


def _add_training_arguments(group: Any) -> None:
    """The flags of the objective, the adapters and the optimizer."""
    group.add_argument(
        "--steps", type=positive_int, default=1000, help="optimizer steps (default: 1000)"
    )
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
        "--lr-scheduler",
        choices=LR_SCHEDULERS,
        default="constant_with_warmup",
        help="diffusers' learning-rate schedule (default: constant_with_warmup)",
    )
    group.add_argument(
        "--lr-warmup-steps",
        type=int_at_least(0),
        default=0,
        metavar="N",
        help="linear warm-up from 0 over N steps (default: 0)",
    )
    group.add_argument(
        "--lora-alpha",
        type=_positive_float,
        default=None,
        metavar="ALPHA",
        help="LoRA alpha: adapters scaled by alpha / rank (default: the rank)",
    )
    group.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default="adamw",
        help="adamw8bit needs bitsandbytes and a CUDA GPU (default: adamw)",
    )
    group.add_argument("--batch-size", type=positive_int, default=1, metavar="N")
    group.add_argument("--gradient-accumulation", type=positive_int, default=1, metavar="N")
    group.add_argument(
        "--max-grad-norm",
        type=_positive_float,
        default=1.0,
        metavar="NORM",
        help="gradient clipping norm (default: 1.0)",
    )
    group.add_argument(
        "--snr-gamma",
        type=_positive_float,
        default=None,
        metavar="GAMMA",
        help="min-SNR loss weighting with this gamma (5.0 recommended; default: off)",
    )
    group.add_argument(
        "--noise-offset",
        type=float_in(0.0, math.inf, "a number >= 0"),
        default=0.0,
        metavar="X",
        help="noise offset per example and channel, e.g. 0.05 (default: 0, off)",
    )
    group.add_argument(
        "--mixed-precision", choices=("no", "fp16", "bf16"), default="no", help="(default: no)"
    )
    group.add_argument("--gradient-checkpointing", action="store_true", help="save memory")
    group.add_argument("--train-text-encoder", action="store_true", help="adapt CLIP as well")
    group.add_argument("--seed", type=int_at_least(0), default=0, help="(default: 0)")
    group.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    group.add_argument("--local-files-only", action="store_true", help="never download")


def _add_checkpoint_arguments(group: Any) -> None:
    """The flags of checkpoints, resuming, validation and logging."""
    group.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CHECKPOINT",
        help="continue from the latest checkpoint in the output folder, or from CHECKPOINT "
        "(a checkpoint-<step> folder); give it after DATASET",
    )
    group.add_argument(
        "--checkpoint-every",
        type=int_at_least(0),
        default=500,
        metavar="N",
        help="save a checkpoint-<step> folder every N steps; 0: only at the end (default: 500)",
    )
    group.add_argument(
        "--checkpoints-total-limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="keep the N newest checkpoints, delete older ones (default: keep all)",
    )
    group.add_argument(
        "--validation-prompt",
        action="append",
        default=[],
        metavar="PROMPT",
        help="render this prompt (PNG + WAV) at each validation; repeatable",
    )
    group.add_argument(
        "--validate-every",
        type=positive_int,
        default=None,
        metavar="N",
        help="steps between validations: clips and held-out loss (default: only at the end)",
    )
    group.add_argument("--validation-steps", type=positive_int, default=20, metavar="N")
    group.add_argument(
        "--validation-split",
        type=float_in(0.0, 1.0, "a fraction in [0, 1)"),
        default=0.0,
        metavar="FRACTION",
        help="hold out this share of the windows; their loss is logged at each validation",
    )
    group.add_argument(
        "--report-to",
        choices=REPORT_TO,
        default="csv",
        help="also log to tensorboard or wandb (needs it installed; default: csv only)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``train-lora``; returns the exit status."""
    from riffusion.training import (
        UNET_ALL_TARGETS,
        UNET_TARGETS,
        TrainingInterrupted,
    )

    quiet = getattr(args, "quiet", False)
    try:
        result = _train(args, UNET_ALL_TARGETS if args.all_targets else UNET_TARGETS, quiet)
    except TrainingInterrupted as stopped:
        print(f"riffusion train-lora: {stopped}", file=sys.stderr)
        return stopped.exit_status
    if not quiet and _is_main_process():
        last = result.losses[-10:]
        mean = f"{sum(last) / len(last):.4f}" if last else "n/a"
        print(
            f"step {result.step} (from {result.start_step}); mean loss of the last "
            f"{len(last)} steps {mean}; weights: {result.weights}"
        )
    return 0


def _is_main_process() -> bool:
    """Whether this is the process that reports (the main one under ``accelerate launch``)."""
    from accelerate import PartialState

    return PartialState().is_main_process


def _train(args: argparse.Namespace, target_modules: tuple[str, ...], quiet: bool) -> Any:
    """``train_lora`` with the command line's arguments."""
    from riffusion.training import train_lora

    return train_lora(
        args.dataset,
        args.model,
        args.output,
        rank=args.rank,
        target_modules=target_modules,
        lora_alpha=args.lora_alpha,
        learning_rate=args.learning_rate,
        lr_scheduler=args.lr_scheduler,
        lr_warmup_steps=args.lr_warmup_steps,
        optimizer=args.optimizer,
        steps=args.steps,
        batch_size=args.batch_size,
        gradient_accumulation=args.gradient_accumulation,
        max_grad_norm=args.max_grad_norm,
        snr_gamma=args.snr_gamma,
        noise_offset=args.noise_offset,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing,
        seed=args.seed,
        train_text_encoder=args.train_text_encoder,
        validation_prompts=args.validation_prompt,
        validate_every=args.validate_every,
        validation_steps=args.validation_steps,
        validation_split=args.validation_split,
        report_to=args.report_to,
        checkpoint_every=args.checkpoint_every or None,
        checkpoints_total_limit=args.checkpoints_total_limit,
        resume=args.resume,
        device=args.device,
        local_files_only=args.local_files_only,
        progress=not quiet,
    )
