"""The ``riffusion`` entry point: the table of sub-commands, the parser built from it, ``main``."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

from riffusion.cli import generate, tools
from riffusion.cli._base import (
    PROG,
    Commands,
    _common_parent,
    _Console,
    _example,
    _Formatter,
    _one_line,
    _Parser,
    _quiet_libraries,
)
from riffusion.errors import RiffusionError

__all__ = ["COMMANDS", "Subcommand", "build_parser", "main"]


def _add_serve(command: Commands) -> None:
    """Add ``serve`` (parser and handler in :mod:`riffusion.commands.serve`)."""
    from riffusion.commands import serve

    serve.add_parser(command.subparsers, formatter_class=_Formatter, parents=[command.common])


def _add_batch(command: Commands) -> None:
    """Add ``batch`` (parser and handler in :mod:`riffusion.commands.batch`)."""
    from riffusion.commands import batch

    batch.add_parser(command.subparsers, parents=[command.common])


def _add_prepare_dataset(command: Commands) -> None:
    """Add ``prepare-dataset`` (parser and handler in :mod:`riffusion.commands.dataset`)."""
    from riffusion.commands import dataset

    dataset.add_parser(command.subparsers, formatter_class=_Formatter, parents=[command.common])


def _add_train_lora(command: Commands) -> None:
    """Add ``train-lora`` (parser and handler in :mod:`riffusion.commands.train`)."""
    from riffusion.commands import train

    train.add_parser(command.subparsers, formatter_class=_Formatter, parents=[command.common])


class Subcommand(NamedTuple):
    """One row of :data:`COMMANDS`: the name and the function adding its sub-parser (which
    stores the handler, ``handler(args, console) -> exit status``, as the ``handler`` default)."""

    name: str
    add: Callable[[Commands], None]


COMMANDS: tuple[Subcommand, ...] = (
    Subcommand("text-to-audio", generate.add_text_to_audio),
    Subcommand("audio-to-audio", generate.add_audio_to_audio),
    Subcommand("interpolate", generate.add_interpolate),
    Subcommand("stream", generate.add_stream),
    Subcommand("loop", generate.add_loop),
    Subcommand("render", generate.add_render),
    Subcommand("audio-to-image", tools.add_audio_to_image),
    Subcommand("image-to-audio", tools.add_image_to_audio),
    Subcommand("seed-images", tools.add_seed_images),
    Subcommand("print-exif", tools.add_print_exif),
    Subcommand("sample-clips", tools.add_sample_clips),
    Subcommand("random-prompt", generate.add_random_prompt),
    Subcommand("serve", _add_serve),
    Subcommand("batch", _add_batch),
    Subcommand("prepare-dataset", _add_prepare_dataset),
    Subcommand("train-lora", _add_train_lora),
)
"""The sub-commands, in the order ``riffusion --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The ``riffusion`` argument parser (each sub-command stores its handler in ``handler``)."""
    common = _common_parent()
    parser = _Parser(
        prog=PROG,
        description="Make music with Stable Diffusion on images of sound (mel spectrograms).",
        formatter_class=_Formatter,
        parents=[common],
        epilog=_example(
            'riffusion text-to-audio "funky bass groove" --seed 42 -o funk.wav',
            "riffusion audio-to-image funk.wav -o funk.png",
            "riffusion COMMAND --help   # options and an example of each command",
        ),
    )
    from riffusion import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.set_defaults(handler=None)
    command = Commands(parser.add_subparsers(title="commands", metavar="COMMAND"), common)
    for row in COMMANDS:
        row.add(command)
    return parser


def _error_message(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.filename}: {error.strerror}"
    return _one_line(str(error)) or type(error).__name__


# --quiet for everything the command starts, worker processes included: tqdm's bars (tqdm reads
# TQDM_* variables for its defaults), the hub's, and transformers' and diffusers' logging.
_QUIET_ENVIRONMENT = {
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
}


@contextmanager
def _warnings_silenced(quiet: bool) -> Iterator[None]:
    # catch_warnings restores the filters, and the environment is put back, which matters when
    # main() runs inside another program.
    saved = {name: os.environ.get(name) for name in _QUIET_ENVIRONMENT}
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
            os.environ.update(_QUIET_ENVIRONMENT)
            if {"diffusers", "transformers"} & set(sys.modules):
                _quiet_libraries()  # already imported: their settings are read at import
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 1 error, 2 usage, 130 ^C)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else 1
    if args.handler is None:
        parser.print_help(sys.stderr)
        return 2
    debug = getattr(args, "debug", False)
    console = _Console(quiet=getattr(args, "quiet", False))
    try:
        with _warnings_silenced(console.quiet):
            return int(args.handler(args, console))
    except BrokenPipeError:
        # The reader went away (``riffusion seed-images | head -1``): not an error worth a
        # message. Point stdout at devnull so the interpreter's final flush stays quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
    except (RiffusionError, OSError) as error:
        if debug:
            raise
        print(f"{PROG}: error: {_error_message(error)}", file=sys.stderr)
        return 1
    except Exception as error:  # a bug or an unforeseen failure: still one line, with a hint
        if debug:
            raise
        print(
            f"{PROG}: error: unexpected {type(error).__name__}: {_error_message(error)} "
            "(run again with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
