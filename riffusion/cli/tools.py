"""The model-free sub-commands: audio-to-image, image-to-audio, seed-images, print-exif,
sample-clips. They never import diffusers or transformers.
"""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from riffusion.cli._base import (
    Commands,
    _add_output,
    _Console,
    _describe,
    _example,
    _load_audio,
    _non_negative_float,
    _output_path,
    _plain_device,
    _positive_float,
    _seed_int,
)
from riffusion.commands._types import positive_int
from riffusion.errors import ImageFormatError, ParameterError

if TYPE_CHECKING:
    pass


def add_audio_to_image(command: Commands) -> None:
    """Add ``audio-to-image`` to the parser (handler: :func:`_audio_to_image`)."""
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
        ("--num-frequencies", positive_int, 512, "mel bins = image height"),
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


def add_image_to_audio(command: Commands) -> None:
    """Add ``image-to-audio`` to the parser (handler: :func:`_image_to_audio`)."""
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
        type=positive_int,
        default=None,
        metavar="N",
        help="Griffin-Lim iterations (default: the method's own)",
    )
    sub.add_argument(
        "--seed", type=_seed_int, default=0, help="seed of the initial phase (default: 0)"
    )
    sub.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda[:N]'")
    sub.set_defaults(handler=_image_to_audio)


def add_seed_images(command: Commands) -> None:
    """Add ``seed-images`` to the parser (handler: :func:`_seed_images`)."""
    sub = command(
        "seed-images",
        "list the built-in seed images and masks",
        _example(
            "riffusion seed-images",
            'riffusion text-to-audio "dub reggae" --seed-image breakbeat -o dub.wav',
        ),
    )
    sub.set_defaults(handler=_seed_images)


def add_print_exif(command: Commands) -> None:
    """Add ``print-exif`` to the parser (handler: :func:`_print_exif`)."""
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


def add_sample_clips(command: Commands) -> None:
    """Add ``sample-clips`` to the parser (handler: :func:`_sample_clips`)."""
    sub = command(
        "sample-clips",
        "cut random clips of a given duration from a long audio file",
        _example("riffusion sample-clips album.flac -o clips --num-clips 20 --seed 1 --mono"),
    )
    sub.add_argument("input", help="audio file to sample from")
    sub.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write to")
    sub.add_argument(
        "--duration-ms",
        type=positive_int,
        default=5000,
        metavar="MS",
        help="length of each clip in ms (default: 5000)",
    )
    sub.add_argument(
        "--num-clips", type=positive_int, default=1, metavar="N", help="clips (default: 1)"
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
