"""Shared pieces of the command line: argument types and groups, the console, inputs, outputs.

Nothing here imports torch or diffusers at module level: ``riffusion --help`` stays light.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from riffusion.commands._types import float_in, int_in, positive_int
from riffusion.defaults import (
    DEFAULT_MODEL,
    DEFAULT_SEED_IMAGE,
    MAX_CLIP_DURATION_S,
    SCHEDULER_NAMES,
)
from riffusion.errors import ModelLoadError, ParameterError
from riffusion.inputs import MAX_SEED

if TYPE_CHECKING:
    from riffusion.audio import Audio
    from riffusion.progress import Progress
    from riffusion.recipe import Clip
    from riffusion.riffuser import Riffuser


PROG = "riffusion"

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
# PNG only: the 8-bit pixels *are* the spectrogram, so a lossy format (JPEG) would corrupt it.
IMAGE_EXTENSIONS = (".png",)

_MAX_SEED = MAX_SEED  # PromptInput's bound


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


_seed_int = int_in(0, _MAX_SEED, "an integer in [0, 2**63)")
_unit_float = float_in(0.0, 1.0, "a number in [0, 1]")
_non_negative_float = float_in(0.0, math.inf, "a finite number >= 0")
_positive_float = float_in(0.0, math.inf, "a finite number > 0", open_low=True)
_duration_float = float_in(
    0.0, MAX_CLIP_DURATION_S, f"a duration in (0, {MAX_CLIP_DURATION_S:g}] seconds", open_low=True
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
            help="sampling scheduler: default, ddim, dpm++, euler, euler_ancestral, lms, pndm, "
            "unipc, dpm++2m-karras, lcm, tcd "
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
        type=positive_int,
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
            default=DEFAULT_SEED_IMAGE,
            metavar="NAME|FILE",
            help="built-in seed image (see 'riffusion seed-images'), an image or audio file, "
            f"or 'none' for pure text-to-image (default: {DEFAULT_SEED_IMAGE})",
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


class Commands:
    """What a sub-command's ``add_*`` function gets: call it to add a sub-parser.

    ``command(name, summary, example, parents=[...])`` adds a sub-command with the shared
    ``--quiet``/``--debug`` options; :attr:`model` is the ``--model/--device/--scheduler``
    parent, :attr:`common` the output-control parent and :attr:`subparsers` argparse's
    sub-parser action (for modules with their own ``add_parser``).
    """

    def __init__(self, subparsers: Any, common: argparse.ArgumentParser) -> None:
        self.subparsers = subparsers
        self.common = common
        self.model = _model_parent()

    def __call__(
        self, name: str, summary: str, example: str, *, parents: Sequence[Any] = (), **kwargs: Any
    ) -> argparse.ArgumentParser:
        return self.subparsers.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=example,
            formatter_class=_Formatter,
            parents=[*parents, self.common],
            **kwargs,
        )


# ------------------------------------------------------------------------------- console
@dataclass
class _Console:
    """Status lines and progress bars on stderr, silenced by ``--quiet``."""

    quiet: bool = False

    def status(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    @contextmanager
    def progress(self, riffuser: Riffuser, num_clips: int = 1) -> Iterator[None]:
        """Show the denoising steps of the clips made in this block, one bar per window.

        Fed by :meth:`riffusion.Riffuser.on_progress`; each bar is labelled
        ``clip 2/5, window 1/1`` (``window 2/4`` for a single clip), so a long clip reads as
        its windows rather than as anonymous ``0/38`` bars.
        """
        if self.quiet:
            yield
            return
        from tqdm import tqdm

        state: dict[str, Any] = {"bar": None, "clip": 0, "key": None}

        def report(progress: Progress) -> None:
            if progress.window == 1 and progress.step == 1:
                state["clip"] += 1
            key = (state["clip"], progress.window)
            if key != state["key"]:
                if state["bar"] is not None:
                    state["bar"].close()
                label = f"window {progress.window}/{progress.num_windows}"
                if num_clips > 1:
                    label = f"clip {state['clip']}/{num_clips}, {label}"
                state["bar"] = tqdm(
                    total=progress.num_steps, desc=label, unit="step", leave=False, file=sys.stderr
                )
                state["key"] = key
            state["bar"].update(progress.step - state["bar"].n)

        try:
            with riffuser.on_progress(report):
                yield
        finally:
            if state["bar"] is not None:
                state["bar"].close()


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
        return DEFAULT_SEED_IMAGE
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
    try:
        riffuser = Riffuser.from_pretrained(
            model,
            device=args.device,
            scheduler=scheduler,
            local_files_only=args.local_files_only,
        )
    except ModelLoadError as error:
        raise ModelLoadError(
            f"{_one_line(str(error))} — check --model (a Hugging Face id or a local diffusers "
            "folder) and --local-files-only (set it to use the download cache only); to try "
            "things offline, make a tiny random model with "
            "'python -c \"from riffusion.testing import make_tiny_model; "
            "make_tiny_model('tiny')\"' and pass --model tiny"
        ) from None
    # Progress comes from Riffuser.on_progress (labelled by window); diffusers' own bars are off.
    riffuser.pipeline.set_progress_bar_config(disable=True)
    return riffuser


def _plain_device(name: str) -> str:
    """Device of the model-free commands: :func:`riffusion.models.sd1.resolve_device`, with the
    decode rule of :class:`~riffusion.Riffuser` (MPS lacks some FFT operations: CPU there)."""
    from riffusion.models.sd1.devices import resolve_device

    device, _ = resolve_device(name)
    return "cpu" if device.type == "mps" else str(device)


# ------------------------------------------------------------------------------- outputs
def _assemble(audios: Sequence[Audio], crossfade_s: float, repeat: int) -> Audio:
    """Join clips (equal-power crossfades), then play the result ``repeat`` times."""
    import numpy as np

    from riffusion.audio import Audio

    if len(audios) == 1:
        audio = audios[0]
    else:
        from riffusion.joins import stitch

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
