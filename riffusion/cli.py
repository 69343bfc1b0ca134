"""The ``riffusion`` command line (also ``python -m riffusion``).

Sub-commands::

    text-to-audio   PROMPT -o OUT            music from a text prompt
    audio-to-audio  INPUT PROMPT -o OUT      restyle existing audio with a prompt
    interpolate     START END -o OUT         clips morphing from one prompt to another, joined
    stream          PROMPT [PROMPT ...] -o OUT   the web app's endless stream, N clips joined
    loop            PROMPT -o OUT            a seamless loop (optionally played N times)
    render          RECIPE -o OUT            make a clip again from its ``--recipe`` JSON or URL
    audio-to-image  INPUT -o OUT.png         audio → spectrogram image
    image-to-audio  IMAGE -o OUT             spectrogram image → audio
    seed-images                              list the built-in seed images and masks
    print-exif      IMAGE                    show an image's spectrogram parameters
    sample-clips    INPUT -o DIR             random clips of a given duration from a long file
    prepare-dataset IN -o OUT                a folder of audio → spectrogram windows to train on
    train-lora      DATASET -o OUT           fine-tune LoRA adapters on a prepared dataset

Conventions: inputs are positional, the output is ``-o/--output`` and its extension picks the
format (.wav, .flac, .ogg, .mp3 for audio; .png for images). Errors print one line,
``riffusion: error: ...``, and exit 1 (2 for usage errors); ``--debug`` shows the traceback
instead. Outputs are written atomically, so a failed or interrupted run never leaves a partial
file. Progress goes to stderr; ``--quiet`` silences everything but errors.

The model-free commands (audio-to-image, image-to-audio, seed-images, print-exif, sample-clips)
never import
diffusers or transformers: everything diffusion-related is imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from riffusion.errors import DeviceError, ImageFormatError, ParameterError, RiffusionError

if TYPE_CHECKING:
    from riffusion.audio import Audio
    from riffusion.riffuser import Clip, Recipe, Riffuser

__all__ = ["build_parser", "main"]

PROG = "riffusion"

# Same value as riffusion.diffusion.DEFAULT_MODEL; spelled out because importing that module
# loads diffusers, which would slow down every command (``--help`` included).
DEFAULT_MODEL = "riffusion/riffusion-model-v1"

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
# PNG only: the 8-bit pixels *are* the spectrogram, so a lossy format (JPEG) would corrupt it.
IMAGE_EXTENSIONS = (".png",)

_MAX_SEED = 2**63  # PromptInput's bound
_MAX_DURATION_S = 600.0  # Riffuser.text_to_audio's bound
_DEFAULT_SEED_IMAGE = "straight_beat"  # riffusion.seeds.DEFAULT_SEED_IMAGE
_URL_PREFIX = "riffusion:1:"


# ------------------------------------------------------------------------------- parsing
class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (argparse prints a usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see '{self.prog} --help')\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-wrapped examples of the epilogs; a bit wider option column."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        # argparse measures sub-command names without the extra indent it prints them with, so
        # the longer names would wrap onto their own line; count that indent.
        if isinstance(action, argparse._SubParsersAction) and action.choices:
            longest = max(len(name) for name in action.choices)
            self._action_max_length = max(
                self._action_max_length, longest + self._current_indent + self._indent_increment
            )


def _one_line(message: str) -> str:
    """``message`` with all whitespace runs (newlines included) collapsed to single spaces."""
    return " ".join(str(message).split())


def _int_in(low: int, high: int | None, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value >= high):
            raise argparse.ArgumentTypeError(f"{text} must be {what}")
        return value

    return parse


def _float_in(
    low: float, high: float, what: str, *, open_low: bool = False
) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        too_low = value <= low if open_low else value < low
        if not math.isfinite(value) or too_low or value > high:
            raise argparse.ArgumentTypeError(f"{text} must be {what}")
        return value

    return parse


_positive_int = _int_in(1, None, "a positive integer")
_seed_int = _int_in(0, _MAX_SEED, "an integer in [0, 2**63)")
_unit_float = _float_in(0.0, 1.0, "a number in [0, 1]")
_non_negative_float = _float_in(0.0, math.inf, "a finite number >= 0")
_positive_float = _float_in(0.0, math.inf, "a finite number > 0", open_low=True)
_duration_float = _float_in(
    0.0, _MAX_DURATION_S, f"a duration in (0, {_MAX_DURATION_S:g}] seconds", open_low=True
)


def _example(*lines: str) -> str:
    return "Example:\n" + "\n".join(f"  {line}" for line in lines)


def _common_parent() -> argparse.ArgumentParser:
    """``--quiet`` and ``--debug``, accepted before or after the sub-command.

    SUPPRESS defaults: a sub-parser's default would otherwise overwrite a flag given before the
    sub-command (``riffusion --quiet loop ...``).
    """
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("output control")
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress bars or status lines; only errors",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback of an error",
    )
    return parent


def _model_parent(
    *, model_default: str | None = DEFAULT_MODEL, scheduler: bool = True
) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("model")
    shown = model_default or "the recipe's model"
    group.add_argument(
        "--model",
        default=model_default,
        metavar="ID|DIR",
        help=f"Hugging Face model id or local diffusers folder (default: {shown})",
    )
    group.add_argument(
        "--device",
        default="auto",
        help="'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda', 'cuda:N' or 'mps' (default: auto)",
    )
    if scheduler:  # render takes the scheduler from the recipe
        group.add_argument(
            "--scheduler",
            default=None,
            metavar="NAME",
            help="sampling scheduler: default, ddim, dpm++, euler, euler_ancestral, lms, pndm "
            "(default: the model's own)",
        )
    group.add_argument(
        "--local-files-only",
        action="store_true",
        help="never download: use the Hugging Face cache only",
    )
    return parent


def _add_output(parser: argparse.ArgumentParser, kind: str) -> None:
    extensions = AUDIO_EXTENSIONS if kind == "audio" else IMAGE_EXTENSIONS
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help=f"file to write; the extension picks the format ({', '.join(extensions)})",
    )


def _add_generation(
    parser: argparse.ArgumentParser,
    *,
    denoising: float,
    seed_image: bool = True,
    mask_image: bool = True,
    recipe: bool = True,
    save_image: bool = True,
) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("generation")
    group.add_argument(
        "--seed",
        type=_seed_int,
        default=None,
        metavar="N",
        help="noise seed (default: random, reported and recorded in the recipe)",
    )
    group.add_argument(
        "--steps",
        type=_positive_int,
        default=50,
        metavar="N",
        help="diffusion steps of a full run (default: 50; img2img runs denoising × steps)",
    )
    group.add_argument(
        "--denoising",
        type=_unit_float,
        default=denoising,
        metavar="X",
        help=f"img2img strength in [0, 1]; lower keeps more of the seed (default: {denoising})",
    )
    group.add_argument(
        "--guidance",
        type=_non_negative_float,
        default=7.0,
        metavar="X",
        help="classifier-free guidance scale (default: 7)",
    )
    group.add_argument(
        "--negative-prompt", default=None, metavar="TEXT", help="what to steer away from"
    )
    if seed_image:
        group.add_argument(
            "--seed-image",
            default=_DEFAULT_SEED_IMAGE,
            metavar="NAME|FILE",
            help="built-in seed image (see 'riffusion seed-images'), an image or audio file, "
            f"or 'none' for pure text-to-image (default: {_DEFAULT_SEED_IMAGE})",
        )
    if mask_image:
        group.add_argument(
            "--mask-image",
            default=None,
            metavar="NAME|FILE",
            help="built-in mask or mask image (white = regenerate, black = keep the seed image)",
        )
    if recipe:
        group.add_argument(
            "--recipe",
            action="store_true",
            help="also write the recipe beside the output (same name, .json); "
            "'riffusion render' makes the clip again from it",
        )
    if save_image:
        group.add_argument(
            "--save-image",
            action="store_true",
            help="also write the spectrogram beside the output (same name, .png)",
        )
    return group


def _add_crossfade(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--crossfade",
        type=_non_negative_float,
        default=0.05,
        metavar="SECONDS",
        help="equal-power crossfade between consecutive clips (default: 0.05)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``riffusion`` argument parser (each sub-command stores its handler in ``handler``)."""
    common = _common_parent()
    model = _model_parent()
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
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, summary: str, example: str, *, parents=(), **kwargs: Any):
        sub = commands.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=example,
            formatter_class=_Formatter,
            parents=[*parents, common],
            **kwargs,
        )
        return sub

    # -- text-to-audio
    sub = command(
        "text-to-audio",
        "generate music from a text prompt",
        _example(
            'riffusion text-to-audio "funky bass groove" --seed 42 -o funk.wav',
            'riffusion text-to-audio "ambient piano" --duration 15 --seed-image pad_pulse '
            "--recipe -o piano.flac",
        ),
        parents=[model],
    )
    sub.add_argument("prompt", help="what to play; (word:1.3) emphasises a word")
    _add_output(sub, "audio")
    group = _add_generation(sub, denoising=0.75)
    group.add_argument(
        "--duration",
        type=_duration_float,
        default=5.11,
        metavar="SECONDS",
        help="length in seconds; the output has exactly round(seconds × 44100) samples. One "
        "model window is 5.11 s (512 columns, (512 − 1) × 441 samples, as Riffusion's); beyond "
        "it the music is continued window by window (default: 5.11)",
    )
    sub.set_defaults(handler=_text_to_audio)

    # -- audio-to-audio
    sub = command(
        "audio-to-audio",
        "restyle existing audio with a text prompt",
        _example('riffusion audio-to-audio song.wav "jazz piano" --denoising 0.4 -o jazz.wav'),
        parents=[model],
    )
    sub.add_argument("input", help="audio file (WAV, FLAC, OGG, MP3, ...)")
    sub.add_argument("prompt", help="what it should sound like")
    _add_output(sub, "audio")
    _add_generation(sub, denoising=0.5, seed_image=False, mask_image=False)
    sub.set_defaults(handler=_audio_to_audio)

    # -- interpolate
    sub = command(
        "interpolate",
        "morph between two prompts in clips joined into one file",
        _example(
            'riffusion interpolate "jazz" "rock" --num-clips 4 --seed 1 --end-seed 2 -o morph.wav'
        ),
        parents=[model],
    )
    sub.add_argument("start", help="the prompt at the beginning")
    sub.add_argument("end", help="the prompt at the end")
    _add_output(sub, "audio")
    group = _add_generation(sub, denoising=0.75, save_image=False)
    group.add_argument(
        "--num-clips",
        type=_int_in(2, None, "an integer >= 2"),
        default=5,
        help="clips from start to end inclusive, 5.11 s each (default: 5)",
    )
    group.add_argument(
        "--end-seed", type=_seed_int, default=None, help="seed of the end (default: --seed)"
    )
    group.add_argument(
        "--end-denoising",
        type=_unit_float,
        default=None,
        help="denoising at the end (default: --denoising)",
    )
    group.add_argument(
        "--end-guidance",
        type=_non_negative_float,
        default=None,
        help="guidance at the end (default: --guidance)",
    )
    _add_crossfade(group)
    sub.set_defaults(handler=_interpolate)

    # -- stream
    sub = command(
        "stream",
        "N clips of the web app's endless stream, joined into one file",
        _example(
            'riffusion stream "jazz" "rock" --num-clips 8 --steps-per-transition 4 -o stream.wav'
        ),
        parents=[model],
    )
    sub.add_argument("prompts", nargs="+", metavar="prompt", help="prompts to move through")
    _add_output(sub, "audio")
    group = _add_generation(sub, denoising=0.75, save_image=False)
    group.add_argument(
        "--num-clips",
        type=_positive_int,
        default=8,
        help="clips to generate, 5.11 s each (default: 8)",
    )
    group.add_argument(
        "--steps-per-transition",
        type=_positive_int,
        default=4,
        metavar="N",
        help="clips per move to the next prompt (default: 4); then the seed walks on",
    )
    _add_crossfade(group)
    sub.set_defaults(handler=_stream)

    # -- loop
    sub = command(
        "loop",
        "generate a 5.12 s clip (two bars, 512 columns) that loops seamlessly",
        _example('riffusion loop "techno beat" --seed 3 --repeat 4 -o techno.wav'),
        parents=[model],
    )
    sub.add_argument("prompt", help="what to play")
    _add_output(sub, "audio")
    group = _add_generation(sub, denoising=0.75, mask_image=False)
    group.add_argument(
        "--repeat",
        type=_positive_int,
        default=1,
        metavar="N",
        help="write the loop played N times in a row (default: 1)",
    )
    sub.set_defaults(handler=_loop)

    # -- render
    sub = command(
        "render",
        "reproduce a clip from its recipe JSON or riffusion:1: URL",
        _example(
            'riffusion text-to-audio "funky bass" --recipe -o funk.wav   # writes funk.json',
            "riffusion render funk.json -o funk_again.wav",
        ),
        parents=[_model_parent(model_default=None, scheduler=False)],
    )
    sub.add_argument("recipe", help="recipe JSON file, or a riffusion:1:... recipe string")
    _add_output(sub, "audio")
    group = sub.add_argument_group("inputs the recipe refers to")
    group.add_argument("--audio", metavar="FILE", help="input audio of an audio-to-audio recipe")
    group.add_argument("--seed-image", metavar="FILE", help="the custom seed image it used")
    group.add_argument("--mask-image", metavar="FILE", help="the custom mask image it used")
    group.add_argument(
        "--save-image",
        action="store_true",
        help="also write the spectrogram beside the output (same name, .png)",
    )
    sub.set_defaults(handler=_render)

    # -- audio-to-image
    sub = command(
        "audio-to-image",
        "encode audio as a spectrogram image with EXIF parameters",
        _example("riffusion audio-to-image loop.wav -o loop.png"),
    )
    sub.add_argument("input", help="audio file (any rate and channels)")
    _add_output(sub, "image")
    sub.add_argument(
        "--stereo", action="store_true", help="encode left and right (G and B channels)"
    )
    spectrogram = sub.add_argument_group(
        "spectrogram parameters (Riffusion's defaults; all stored in the image's EXIF)"
    )
    for option, kind, default, text in (
        ("--step-size-ms", _positive_float, 10.0, "hop between columns in ms"),
        ("--num-frequencies", _positive_int, 512, "mel bins = image height"),
        ("--min-frequency", _non_negative_float, 0.0, "lowest mel frequency in Hz"),
        ("--max-frequency", _positive_float, 10000.0, "highest mel frequency in Hz"),
        ("--window-duration-ms", _positive_float, 100.0, "Hann window length in ms"),
        ("--padded-duration-ms", _positive_float, 400.0, "zero-padded FFT length in ms"),
        ("--power-for-image", _positive_float, 0.25, "exponent before 8-bit quantisation"),
    ):
        spectrogram.add_argument(
            option, type=kind, default=default, metavar="X", help=f"{text} (default: {default:g})"
        )
    spectrogram.add_argument(
        "--keep-sample-rate",
        action="store_true",
        help="encode at the input's sample rate, as Riffusion's CLI does (default: resample to "
        "44100 Hz, the model's)",
    )
    sub.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda[:N]'")
    sub.set_defaults(handler=_audio_to_image)

    # -- image-to-audio
    sub = command(
        "image-to-audio",
        "decode a spectrogram image to audio (phase recovery)",
        _example("riffusion image-to-audio loop.png --method reference -o loop.wav"),
    )
    sub.add_argument("image", help="spectrogram image (parameters read from its EXIF)")
    _add_output(sub, "audio")
    sub.add_argument(
        "--method",
        choices=("fast", "reference"),
        default="fast",
        help="phase recovery: fast, or Riffusion's slower reference (default: fast)",
    )
    sub.add_argument(
        "--iterations",
        type=_positive_int,
        default=None,
        metavar="N",
        help="Griffin-Lim iterations (default: the method's own)",
    )
    sub.add_argument(
        "--seed", type=_seed_int, default=0, help="seed of the initial phase (default: 0)"
    )
    sub.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda[:N]'")
    sub.set_defaults(handler=_image_to_audio)

    # -- seed-images
    sub = command(
        "seed-images",
        "list the built-in seed images and masks",
        _example(
            "riffusion seed-images",
            'riffusion text-to-audio "dub reggae" --seed-image breakbeat -o dub.wav',
        ),
    )
    sub.set_defaults(handler=_seed_images)

    # -- print-exif
    sub = command(
        "print-exif",
        "show the spectrogram parameters stored in an image's EXIF",
        _example("riffusion print-exif loop.png"),
    )
    sub.add_argument("image", help="spectrogram image")
    sub.add_argument(
        "--format",
        choices=("table", "riffusion"),
        default="table",
        help="table: tags, parameters and duration; riffusion: the original CLI's "
        "'NAME = value' lines (default: table)",
    )
    sub.set_defaults(handler=_print_exif)

    # -- sample-clips
    sub = command(
        "sample-clips",
        "cut random clips of a given duration from a long audio file",
        _example("riffusion sample-clips album.flac -o clips --num-clips 20 --seed 1 --mono"),
    )
    sub.add_argument("input", help="audio file to sample from")
    sub.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write to")
    sub.add_argument(
        "--duration-ms",
        type=_positive_int,
        default=5000,
        metavar="MS",
        help="length of each clip in ms (default: 5000)",
    )
    sub.add_argument(
        "--num-clips", type=_positive_int, default=1, metavar="N", help="clips (default: 1)"
    )
    sub.add_argument(
        "--seed",
        type=_seed_int,
        default=None,
        help="seed of the clip positions; the same seed cuts the same clips (default: random)",
    )
    sub.add_argument("--mono", action="store_true", help="mix the clips down to one channel")
    sub.add_argument(
        "--extension",
        default="wav",
        metavar="EXT",
        help="file format by extension: wav, flac, ogg, mp3, aiff, au, caf, w64 … any format "
        "libsndfile writes (default: wav)",
    )
    sub.set_defaults(handler=_sample_clips)
    from riffusion.commands import serve

    serve.add_parser(commands, formatter_class=_Formatter, parents=[common])
    # -- batch (parser and handler in riffusion.commands.batch)
    from riffusion.commands import batch as batch_command

    batch_command.add_parser(commands, parents=[common])
    # -- prepare-dataset, train-lora (riffusion.commands; their handlers import the library)
    from riffusion.commands import dataset as dataset_command
    from riffusion.commands import train as train_command

    for module in (dataset_command, train_command):
        module.add_parser(commands, formatter_class=_Formatter, parents=[common])
    return parser


# ------------------------------------------------------------------------------- console
@dataclass
class _Console:
    """Status lines and progress bars on stderr, silenced by ``--quiet``."""

    quiet: bool = False

    def status(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def progress(self, total: int, desc: str, unit: str = "clip") -> Any:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, disable=self.quiet, file=sys.stderr)


def _quiet_libraries() -> None:
    """Silence huggingface_hub, transformers and diffusers: logging and their progress bars."""
    # The environment variables cover messages emitted while the libraries are imported.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    import diffusers.utils.logging
    import huggingface_hub.utils
    import transformers.utils.logging

    for logging_module in (diffusers.utils.logging, transformers.utils.logging):
        logging_module.set_verbosity_error()
        logging_module.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


# -------------------------------------------------------------------------------- inputs
def _output_path(text: str, kind: str) -> Path:
    """Check the output before any work starts: known extension, existing folder."""
    path = Path(text)
    extensions = AUDIO_EXTENSIONS if kind == "audio" else IMAGE_EXTENSIONS
    suffix = path.suffix.lower()
    if suffix not in extensions:
        shown = f"extension {suffix!r}" if suffix else "no extension"
        raise ParameterError(
            f"output {text!r} has {shown}; an {kind} output needs one of {', '.join(extensions)}"
        )
    if path.is_dir():
        raise ParameterError(f"output {text!r} is a folder; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ParameterError(f"output folder {str(folder)!r} does not exist")
    return path


def _load_audio(text: str) -> Audio:
    from riffusion.audio import Audio

    return Audio.load(text)


def _seed_image(value: str | None) -> Any:
    """Resolve ``--seed-image``: ``none``, an id (built-in, Riffusion alias), or a file.

    Ids come first (see :func:`riffusion.seeds.resolve_seed_id`); anything else must be an
    existing image or audio file, which is read here, before the model is loaded, so a bad one
    fails fast. Riffuser gets the loaded PIL image or Audio: it never takes a string as a path.
    """
    from riffusion.image import load_image
    from riffusion.seeds import resolve_seed_id

    if value is None or value.strip().lower() == "none":
        return None
    if value == "default":
        return _DEFAULT_SEED_IMAGE
    try:
        return resolve_seed_id(value)
    except ParameterError as error:
        path = Path(value)
        if not path.is_file():
            raise ParameterError(f"{error}; nor is {value!r} an existing file") from None
    if path.suffix.lower() in AUDIO_EXTENSIONS:
        return _load_audio(value)
    return load_image(path)


def _mask_image(value: str | None) -> Any:
    """Resolve ``--mask-image``: ``none`` or ``""`` (no mask), a mask id, or an image file."""
    from riffusion.image import load_image
    from riffusion.seeds import resolve_mask_id

    if value is None or value.strip().lower() in ("none", ""):
        return None
    try:
        return resolve_mask_id(value)
    except ParameterError as error:
        if not Path(value).is_file():
            raise ParameterError(f"{error}; nor is {value!r} an existing file") from None
    return load_image(value)


def _images(args: argparse.Namespace) -> tuple[Any, Any]:
    """``--seed-image`` and ``--mask-image`` resolved, and checked to go together."""
    seed_image = _seed_image(args.seed_image)
    mask_image = _mask_image(getattr(args, "mask_image", None))
    if mask_image is not None and seed_image is None:
        raise ParameterError("--mask-image needs a seed image, but --seed-image is 'none'")
    return seed_image, mask_image


def _seed(value: int | None) -> int:
    # Drawn here rather than inside Riffuser so the status line can report it.
    return secrets.randbelow(2**31) if value is None else value


def _check_scheduler(name: str | None) -> None:
    if name is None:
        return
    from riffusion.diffusion import SCHEDULER_NAMES

    if name not in SCHEDULER_NAMES:
        raise ParameterError(
            f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULER_NAMES)}"
        )


def _load_riffuser(
    args: argparse.Namespace, console: _Console, model: str | None = None
) -> Riffuser:
    """Load the model (after every cheap check has passed) with progress set up."""
    if console.quiet:
        _quiet_libraries()
    scheduler = getattr(args, "scheduler", None)
    _check_scheduler(scheduler)
    from riffusion.riffuser import Riffuser

    model = model or args.model
    if os.path.isdir(os.path.expanduser(model)):
        # Recorded in recipes: absolute, so 'render' works from any folder.
        model = str(Path(model).expanduser().resolve())
    console.status(f"Loading model {model} (device {args.device})…")
    riffuser = Riffuser.from_pretrained(
        model,
        device=args.device,
        scheduler=scheduler,
        local_files_only=args.local_files_only,
    )
    # leave=False: the per-clip denoising bars disappear when done, keeping the log short.
    riffuser.pipeline.set_progress_bar_config(
        disable=console.quiet, leave=False, desc="denoising", file=sys.stderr
    )
    return riffuser


def _plain_device(name: str) -> str:
    """Device of the model-free commands (resolved here: riffusion.diffusion imports diffusers).

    ``auto`` means CUDA when there is one, else the CPU (MPS lacks some FFT operations).
    """
    import torch

    text = name.strip().lower()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise DeviceError(
            f"device {name!r} is not valid; use 'auto', 'cpu' or 'cuda[:N]'"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r}: CUDA is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {name!r} is not supported here; use 'auto', 'cpu' or 'cuda'")
    return str(device)


# ------------------------------------------------------------------------------- outputs
def _assemble(audios: Sequence[Audio], crossfade_s: float, repeat: int) -> Audio:
    """Join clips (equal-power crossfades), then play the result ``repeat`` times."""
    import numpy as np

    from riffusion.audio import Audio

    if len(audios) == 1:
        audio = audios[0]
    else:
        from riffusion.looping import stitch

        audio = stitch(list(audios), crossfade_s=crossfade_s)
    if repeat > 1:
        # Plain tiling: a loop's last sample already runs on into its first.
        audio = Audio(np.tile(audio.waveform, (1, repeat)), audio.sample_rate)
    return audio


def _recipe_json(clips: Sequence[Clip], command: str, crossfade_s: float, repeat: int) -> str:
    """One clip: the library's Recipe JSON as is; several (or repeated): an envelope."""
    if len(clips) == 1 and repeat == 1:
        return clips[0].recipe.to_json()
    envelope = {
        "command": command,
        "crossfade_s": crossfade_s,
        "repeat": repeat,
        "clips": [clip.recipe.to_dict() for clip in clips],
    }
    return json.dumps(envelope, indent=2)


def _write_text(path: Path, text: str) -> None:
    from riffusion._files import atomic_output

    with atomic_output(path) as temporary:
        temporary.write_text(text + "\n", encoding="utf-8")


def _describe(audio: Audio) -> str:
    channels = {1: "mono", 2: "stereo"}.get(audio.num_channels, f"{audio.num_channels} channels")
    return f"{audio.duration_s:.2f} s, {audio.sample_rate} Hz, {channels}"


def _write_clips(
    args: argparse.Namespace,
    console: _Console,
    output: Path,
    clips: Sequence[Clip],
    *,
    command: str,
    crossfade_s: float = 0.0,
    repeat: int = 1,
) -> int:
    audio = _assemble([clip.audio for clip in clips], crossfade_s, repeat)
    audio.save(output)
    console.status(f"Wrote {output} ({_describe(audio)})")
    if getattr(args, "save_image", False) and len(clips) == 1:
        from riffusion.image import save_image

        image_path = output.with_suffix(".png")
        save_image(clips[0].image, image_path)
        console.status(f"Wrote {image_path} (spectrogram)")
    if getattr(args, "recipe", False) is True:
        recipe_path = output.with_suffix(".json")
        _write_text(recipe_path, _recipe_json(clips, command, crossfade_s, repeat))
        console.status(f"Wrote {recipe_path} (recipe: riffusion render {recipe_path} -o FILE)")
    return 0


# ------------------------------------------------------------------------------ commands
def _text_to_audio(args: argparse.Namespace, console: _Console) -> int:
    output = _output_path(args.output, "audio")
    seed_image, mask_image = _images(args)
    seed = _seed(args.seed)
    riffuser = _load_riffuser(args, console)
    console.status(
        f"Generating {args.duration:g} s of {args.prompt!r} (seed {seed}, {args.steps} steps)…"
    )
    clip = riffuser.text_to_audio(
        args.prompt,
        seed=seed,
        negative_prompt=args.negative_prompt,
        denoising=args.denoising,
        guidance=args.guidance,
        num_inference_steps=args.steps,
        seed_image=seed_image,
        mask_image=mask_image,
        duration_s=args.duration,
    )
    return _write_clips(args, console, output, [clip], command="text-to-audio")


def _audio_to_audio(args: argparse.Namespace, console: _Console) -> int:
    output = _output_path(args.output, "audio")
    audio = _load_audio(args.input)
    seed = _seed(args.seed)
    riffuser = _load_riffuser(args, console)
    console.status(
        f"Restyling {args.input} ({audio.duration_s:.2f} s) as {args.prompt!r} "
        f"(seed {seed}, {args.steps} steps)…"
    )
    clip = riffuser.audio_to_audio(
        audio,
        args.prompt,
        denoising=args.denoising,
        seed=seed,
        negative_prompt=args.negative_prompt,
        guidance=args.guidance,
        num_inference_steps=args.steps,
    )
    return _write_clips(args, console, output, [clip], command="audio-to-audio")


def _interpolate(args: argparse.Namespace, console: _Console) -> int:
    output = _output_path(args.output, "audio")
    seed_image, mask_image = _images(args)
    from riffusion.diffusion import PromptInput

    seed = _seed(args.seed)
    start = PromptInput(
        prompt=args.start,
        seed=seed,
        negative_prompt=args.negative_prompt,
        denoising=args.denoising,
        guidance=args.guidance,
    )
    end = PromptInput(
        prompt=args.end,
        seed=seed if args.end_seed is None else args.end_seed,
        negative_prompt=args.negative_prompt,
        denoising=args.denoising if args.end_denoising is None else args.end_denoising,
        guidance=args.guidance if args.end_guidance is None else args.end_guidance,
    )
    riffuser = _load_riffuser(args, console)
    console.status(
        f"Interpolating {args.start!r} (seed {start.seed}) → {args.end!r} (seed {end.seed}) "
        f"in {args.num_clips} clips…"
    )
    clips = []
    with console.progress(args.num_clips, "clips") as bar:
        for index in range(args.num_clips):
            alpha = index / (args.num_clips - 1)
            clips.append(
                riffuser.riffuse(
                    start,
                    end,
                    alpha,
                    num_inference_steps=args.steps,
                    seed_image=seed_image,
                    mask_image=mask_image,
                )
            )
            bar.update()
    return _write_clips(
        args, console, output, clips, command="interpolate", crossfade_s=args.crossfade
    )


def _stream(args: argparse.Namespace, console: _Console) -> int:
    output = _output_path(args.output, "audio")
    seed_image, mask_image = _images(args)
    from riffusion.diffusion import PromptInput

    seed = _seed(args.seed)
    # Prompt k starts from seed + k, as the schedule does for plain strings, but from --seed.
    prompts = [
        PromptInput(
            prompt=prompt,
            seed=seed + index,
            negative_prompt=args.negative_prompt,
            denoising=args.denoising,
            guidance=args.guidance,
        )
        for index, prompt in enumerate(args.prompts)
    ]
    riffuser = _load_riffuser(args, console)
    console.status(
        f"Streaming {len(prompts)} prompt(s) from seed {seed}: {args.num_clips} clips, "
        f"{args.steps_per_transition} per transition…"
    )
    clips = []
    with console.progress(args.num_clips, "clips") as bar:
        for clip in riffuser.stream(
            prompts,
            steps_per_transition=args.steps_per_transition,
            max_clips=args.num_clips,
            endless=True,
            num_inference_steps=args.steps,
            seed_image=seed_image,
            mask_image=mask_image,
        ):
            clips.append(clip)
            bar.update()
    return _write_clips(args, console, output, clips, command="stream", crossfade_s=args.crossfade)


def _loop(args: argparse.Namespace, console: _Console) -> int:
    output = _output_path(args.output, "audio")
    seed_image = _seed_image(args.seed_image)
    seed = _seed(args.seed)
    riffuser = _load_riffuser(args, console)
    console.status(f"Generating a loop of {args.prompt!r} (seed {seed}, {args.steps} steps)…")
    clip = riffuser.loop(
        args.prompt,
        seed=seed,
        negative_prompt=args.negative_prompt,
        denoising=args.denoising,
        guidance=args.guidance,
        num_inference_steps=args.steps,
        seed_image=seed_image,
    )
    return _write_clips(args, console, output, [clip], command="loop", repeat=args.repeat)


def _read_recipes(text: str) -> tuple[list[Recipe], float, int]:
    """Parse ``render``'s argument: a riffusion:1: URL, a Recipe JSON file or an envelope."""
    from riffusion.riffuser import Recipe

    if text.startswith(_URL_PREFIX):
        return [Recipe.from_url(text)], 0.0, 1
    path = Path(text)
    if not path.is_file():
        raise ParameterError(f"recipe file {text!r} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ParameterError(f"recipe file {text!r} is not valid JSON: {error}") from None
    if isinstance(data, dict) and "clips" in data:
        clips = data["clips"]
        if not isinstance(clips, list) or not clips:
            raise ParameterError(f"recipe file {text!r}: 'clips' must be a non-empty list")
        crossfade_s = data.get("crossfade_s", 0.0)
        repeat = data.get("repeat", 1)
        if not isinstance(crossfade_s, int | float) or not math.isfinite(crossfade_s):
            raise ParameterError(f"recipe file {text!r}: crossfade_s={crossfade_s!r} is invalid")
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            raise ParameterError(f"recipe file {text!r}: repeat={repeat!r} is invalid")
        return [Recipe.from_dict(clip) for clip in clips], float(crossfade_s), repeat
    return [Recipe.from_dict(data)], 0.0, 1


def _render(args: argparse.Namespace, console: _Console) -> int:
    output = _output_path(args.output, "audio")
    recipes, crossfade_s, repeat = _read_recipes(args.recipe)
    # Everything the recipes refer to is checked before the model loads.
    audio = None
    if any(recipe.kind == "audio_to_audio" for recipe in recipes):
        if args.audio is None:
            raise ParameterError("this recipe restyles audio: give the input with --audio FILE")
        audio = _load_audio(args.audio)
    seed_image = mask_image = None
    for recipe in recipes:
        for identity, given, option in (
            (recipe.seed_image, args.seed_image, "--seed-image"),
            (recipe.mask_image, args.mask_image, "--mask-image"),
        ):
            if identity and identity.startswith("custom:") and given is None:
                raise ParameterError(
                    f"this recipe used a custom image ({identity}): give it with {option} FILE"
                )
    if args.seed_image is not None:
        seed_image = _seed_image(args.seed_image)
    if args.mask_image is not None:
        mask_image = _mask_image(args.mask_image)
    riffuser = _load_riffuser(args, console, model=args.model or recipes[0].model)
    console.status(f"Rendering {len(recipes)} clip(s)…")
    clips = []
    with console.progress(len(recipes), "clips") as bar:
        for recipe in recipes:
            clips.append(
                riffuser.render(recipe, seed_image=seed_image, mask_image=mask_image, audio=audio)
            )
            bar.update()
    return _write_clips(
        args, console, output, clips, command="render", crossfade_s=crossfade_s, repeat=repeat
    )


def _audio_to_image(args: argparse.Namespace, console: _Console) -> int:
    from riffusion.convert import audio_to_image
    from riffusion.image import save_image
    from riffusion.params import SpectrogramParams

    output = _output_path(args.output, "image")
    audio = _load_audio(args.input)
    device = _plain_device(args.device)
    params = SpectrogramParams(
        sample_rate=audio.sample_rate if args.keep_sample_rate else 44100,
        stereo=args.stereo,
        step_size_ms=args.step_size_ms,
        window_duration_ms=args.window_duration_ms,
        padded_duration_ms=args.padded_duration_ms,
        num_frequencies=args.num_frequencies,
        min_frequency_hz=args.min_frequency,
        max_frequency_hz=args.max_frequency,
        power_for_image=args.power_for_image,
    )
    console.status(f"Encoding {args.input} ({_describe(audio)})…")
    image = audio_to_image(audio, params, device=device)
    save_image(image, output)
    console.status(f"Wrote {output} ({image.width}×{image.height})")
    return 0


def _image_to_audio(args: argparse.Namespace, console: _Console) -> int:
    from riffusion.convert import image_to_audio
    from riffusion.image import load_image, params_from_image

    output = _output_path(args.output, "audio")
    image = load_image(args.image)
    params = params_from_image(image)
    device = _plain_device(args.device)
    seconds = params.samples_for_width(image.width) / params.sample_rate
    console.status(
        f"Decoding {args.image} ({image.width}×{image.height}, {seconds:.2f} s) with "
        f"{args.method} phase recovery…"
    )
    audio = image_to_audio(
        image,
        params,
        method=args.method,
        num_iterations=args.iterations,
        seed=args.seed,
        device=device,
    )
    audio.save(output)
    console.status(f"Wrote {output} ({_describe(audio)})")
    return 0


def _seed_images(args: argparse.Namespace, console: _Console) -> int:
    from riffusion.seeds import RIFFUSION_ALIASES, mask_images, seed_images

    seeds, masks = seed_images(), mask_images()
    width = max(len(item) for item in [*(x.name for x in [*seeds, *masks]), *RIFFUSION_ALIASES])
    print("Seed images (--seed-image NAME; 512 columns = two bars of 4/4 at 93.75 BPM):")
    for seed in seeds:
        print(f"  {seed.name:<{width}}  {seed.bpm:g} BPM  {seed.description}")
    print("Masks (--mask-image NAME; white = regenerate, black = keep, grey = partly):")
    for mask in masks:
        print(f"  {mask.name:<{width}}  {mask.description}")
    print("Riffusion web app ids (aliases of the images above, not Riffusion's pictures):")
    for alias, target in RIFFUSION_ALIASES.items():
        print(f"  {alias:<{width}}  → {target}")
    return 0


def _print_exif(args: argparse.Namespace, console: _Console) -> int:
    from riffusion.image import load_image, params_from_image
    from riffusion.params import ExifTag

    image = load_image(args.image)
    exif = image.getexif()
    found = {tag: exif[int(tag)] for tag in ExifTag if int(tag) in exif}
    if not found:
        raise ImageFormatError(
            f"image {args.image!r} has no Riffusion EXIF tags (ids {min(ExifTag):d}–"
            f"{max(ExifTag):d}); it would decode with the default spectrogram parameters"
        )
    if args.format == "riffusion":
        # The original CLI's lines: every Riffusion tag the image holds, by name.
        for tag, value in found.items():
            print(f"{tag.name:<20} = {value:>15}")
        return 0
    params = params_from_image(image)
    print(f"{args.image}: {image.width}×{image.height} {image.mode}")
    print("Riffusion EXIF tags:")
    for tag in ExifTag:
        value = found.get(tag, "(absent: default)")
        print(f"  {int(tag)}  {tag.name:<20} {value}")
    print("Spectrogram parameters:")
    for name, value in vars(params).items():
        print(f"  {name:<20} {value}")
    if ExifTag.MAX_VALUE in found:
        # Two different numbers share the name; say which is which.
        print("  (MAX_VALUE is the encoder's peak; decoding uses max_value, like Riffusion)")
    samples = params.samples_for_width(image.width)
    print(
        f"Duration: {samples / params.sample_rate:.2f} s ({samples} samples = "
        f"({image.width} − 1) columns × {params.hop_length})"
    )
    return 0


def _soundfile_format(extension: str) -> str:
    """The libsndfile format that writes files with ``extension`` (``"aif"`` → ``"AIFF"``)."""
    import soundfile

    name = extension.lower().lstrip(".")
    formats = soundfile.available_formats()
    aliases = {"aif": "AIFF", "aifc": "AIFF", "snd": "AU", "sf": "IRCAM", "oga": "OGG"}
    chosen = aliases.get(name, name.upper())
    if not name or not name.isalnum() or chosen not in formats:
        known = ", ".join(sorted(key.lower() for key in formats))
        raise ParameterError(
            f"--extension {extension!r} is not a format libsndfile writes: {known}"
        )
    return chosen


def _sample_clips(args: argparse.Namespace, console: _Console) -> int:
    import numpy as np

    from riffusion.audio import Audio

    file_format = _soundfile_format(args.extension)
    extension = args.extension.lower().lstrip(".")
    folder = Path(args.output)
    if folder.exists() and not folder.is_dir():
        raise ParameterError(f"output {args.output!r} exists and is not a folder")
    audio = _load_audio(args.input)
    if args.mono:
        audio = audio.to_mono()
    clip_samples = round(args.duration_ms * audio.sample_rate / 1000)
    total_ms = audio.num_samples * 1000 // audio.sample_rate
    if args.duration_ms > total_ms:
        raise ParameterError(
            f"--duration-ms {args.duration_ms} is longer than {args.input!r} ({total_ms} ms)"
        )
    seed = secrets.randbelow(2**31) if args.seed is None else args.seed
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    console.status(
        f"Cutting {args.num_clips} clip(s) of {args.duration_ms} ms from {args.input} "
        f"({_describe(audio)}, seed {seed})…"
    )
    for index in range(args.num_clips):
        start_ms = int(rng.integers(0, total_ms - args.duration_ms + 1))
        start = start_ms * audio.sample_rate // 1000
        clip = Audio(audio.waveform[:, start : start + clip_samples], audio.sample_rate)
        name = f"clip_{index}_start_{start_ms}_ms_duration_{args.duration_ms}_ms.{extension}"
        clip.save(folder / name, format=file_format)
        console.status(f"Wrote {folder / name}")
    return 0


# ---------------------------------------------------------------------------------- main
def _error_message(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.filename}: {error.strerror}"
    return _one_line(str(error)) or type(error).__name__


@contextmanager
def _warnings_silenced(quiet: bool) -> Iterator[None]:
    # catch_warnings restores the filters, which matters when main() runs inside another program.
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        yield


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
