"""The generating sub-commands: each an ``add_*`` function (its parser) over one library call.

text-to-audio, audio-to-audio, interpolate, stream, loop and render call the matching
:class:`~riffusion.Riffuser` method; progress comes from :meth:`~riffusion.Riffuser.on_progress`.
random-prompt calls :func:`riffusion.random_prompt`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING

from riffusion._checks import check_integer, finite_float
from riffusion.cli._base import (
    Commands,
    _add_crossfade,
    _add_generation,
    _add_output,
    _Console,
    _duration_float,
    _example,
    _images,
    _load_audio,
    _load_riffuser,
    _mask_image,
    _model_parent,
    _non_negative_float,
    _output_path,
    _seed,
    _seed_image,
    _seed_int,
    _unit_float,
    _write_clips,
)
from riffusion.commands._types import int_at_least, positive_int
from riffusion.defaults import RECIPE_URL_PREFIX
from riffusion.errors import ParameterError

if TYPE_CHECKING:
    from riffusion.recipe import Recipe


def add_text_to_audio(command: Commands) -> None:
    """Add ``text-to-audio`` to the parser (handler: :func:`_text_to_audio`)."""
    model = command.model
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


def add_audio_to_audio(command: Commands) -> None:
    """Add ``audio-to-audio`` to the parser (handler: :func:`_audio_to_audio`)."""
    model = command.model
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


def add_interpolate(command: Commands) -> None:
    """Add ``interpolate`` to the parser (handler: :func:`_interpolate`)."""
    model = command.model
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
        type=int_at_least(2),
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


def add_stream(command: Commands) -> None:
    """Add ``stream`` to the parser (handler: :func:`_stream`)."""
    model = command.model
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
        type=positive_int,
        default=8,
        help="clips to generate, 5.11 s each (default: 8)",
    )
    group.add_argument(
        "--steps-per-transition",
        type=positive_int,
        default=4,
        metavar="N",
        help="clips per move to the next prompt (default: 4); then the seed walks on",
    )
    _add_crossfade(group)
    sub.set_defaults(handler=_stream)


def add_loop(command: Commands) -> None:
    """Add ``loop`` to the parser (handler: :func:`_loop`)."""
    model = command.model
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
        type=positive_int,
        default=1,
        metavar="N",
        help="write the loop played N times in a row (default: 1)",
    )
    sub.set_defaults(handler=_loop)


def add_render(command: Commands) -> None:
    """Add ``render`` to the parser (handler: :func:`_render`)."""
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
        "--adapter-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="let the recipe load LoRA and textual-inversion files from DIR (repeatable); a "
        "recipe file's own folder is allowed too, a recipe string's nothing else",
    )
    group.add_argument(
        "--save-image",
        action="store_true",
        help="also write the spectrogram beside the output (same name, .png)",
    )
    sub.set_defaults(handler=_render)


def _text_to_audio(args: argparse.Namespace, console: _Console) -> int:
    output = _output_path(args.output, "audio")
    seed_image, mask_image = _images(args)
    seed = _seed(args.seed)
    riffuser = _load_riffuser(args, console)
    console.status(
        f"Generating {args.duration:g} s of {args.prompt!r} (seed {seed}, {args.steps} steps)…"
    )
    with console.progress(riffuser):
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
    with console.progress(riffuser):
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
    from riffusion.inputs import PromptInput

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
    with console.progress(riffuser, args.num_clips):
        clips = riffuser.interpolate(
            start,
            end,
            args.num_clips,
            num_inference_steps=args.steps,
            seed_image=seed_image,
            mask_image=mask_image,
        )
    return _write_clips(
        args, console, output, clips, command="interpolate", crossfade_s=args.crossfade
    )


def _stream(args: argparse.Namespace, console: _Console) -> int:
    output = _output_path(args.output, "audio")
    seed_image, mask_image = _images(args)
    from riffusion.inputs import PromptInput

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
    with console.progress(riffuser, args.num_clips):
        clips = list(
            riffuser.stream(
                prompts,
                steps_per_transition=args.steps_per_transition,
                max_clips=args.num_clips,
                endless=True,
                num_inference_steps=args.steps,
                seed_image=seed_image,
                mask_image=mask_image,
            )
        )
    return _write_clips(args, console, output, clips, command="stream", crossfade_s=args.crossfade)


def _loop(args: argparse.Namespace, console: _Console) -> int:
    output = _output_path(args.output, "audio")
    seed_image = _seed_image(args.seed_image)
    seed = _seed(args.seed)
    riffuser = _load_riffuser(args, console)
    console.status(f"Generating a loop of {args.prompt!r} (seed {seed}, {args.steps} steps)…")
    with console.progress(riffuser):
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


_MAX_RECIPE_FILE_BYTES = 16 * 1024 * 1024


def _read_recipes(text: str) -> tuple[list[Recipe], float, int]:
    """Parse ``render``'s argument: a riffusion:1: URL, a Recipe JSON file or an envelope."""
    # Recipes are read and checked without the model code (riffusion.recipe, not riffuser).
    from riffusion.recipe import Recipe

    if text.startswith(RECIPE_URL_PREFIX):
        return [Recipe.parse(text)], 0.0, 1
    path = Path(text)
    if not path.is_file():
        raise ParameterError(f"recipe file {text!r} does not exist or is not a regular file")
    if path.stat().st_size > _MAX_RECIPE_FILE_BYTES:
        raise ParameterError(
            f"recipe file {text!r} is {path.stat().st_size} bytes; at most "
            f"{_MAX_RECIPE_FILE_BYTES} (a recipe is a few hundred)"
        )
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
        if finite_float(crossfade_s) is None:
            raise ParameterError(f"recipe file {text!r}: crossfade_s={crossfade_s!r} is invalid")
        try:
            check_integer("repeat", repeat)
        except ParameterError as error:
            raise ParameterError(f"recipe file {text!r}: {error}") from None
        return [Recipe.parse(clip) for clip in clips], float(crossfade_s), repeat
    return [Recipe.parse(data)], 0.0, 1


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
    # A recipe names files: only those under folders the user chose are read.
    adapter_dirs = list(args.adapter_dir)
    if not args.recipe.startswith(RECIPE_URL_PREFIX):
        adapter_dirs.append(os.path.dirname(os.path.abspath(args.recipe)))
    riffuser = _load_riffuser(args, console, model=args.model or recipes[0].model)
    console.status(f"Rendering {len(recipes)} clip(s)…")
    with console.progress(riffuser, len(recipes)):
        clips = [
            riffuser.use_adapters(recipe.adapters, adapter_dirs=adapter_dirs).render(
                recipe, seed_image=seed_image, mask_image=mask_image, audio=audio
            )
            for recipe in recipes
        ]
    return _write_clips(
        args, console, output, clips, command="render", crossfade_s=crossfade_s, repeat=repeat
    )


def add_random_prompt(command: Commands) -> None:
    """Add ``random-prompt`` to the parser (handler: :func:`_random_prompt`)."""
    sub = command(
        "random-prompt",
        "print random prompt ideas (genre, instrument, mood)",
        _example("riffusion random-prompt --count 3 --seed 7"),
    )
    sub.add_argument(
        "--count", type=positive_int, default=1, metavar="N", help="prompts (default: 1)"
    )
    sub.add_argument(
        "--seed",
        type=_seed_int,
        default=None,
        metavar="N",
        help="the same seed prints the same prompts (default: random)",
    )
    sub.set_defaults(handler=_random_prompt)


def _random_prompt(args: argparse.Namespace, console: _Console) -> int:
    from riffusion.prompts import random_prompt

    # One seed picks the whole list: each prompt's seed is drawn from a generator seeded once.
    draws = random.Random(_seed(args.seed))
    for _ in range(args.count):
        print(random_prompt(draws.randrange(2**63)))
    return 0
