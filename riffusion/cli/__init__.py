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
    random-prompt                            print random prompt ideas
    serve                                    the web app's server and a playground
    batch           JOBS -o DIR              render many jobs (locally or with Ray)
    prepare-dataset IN -o OUT                a folder of audio → spectrogram windows to train on
    train-lora      DATASET -o OUT           fine-tune LoRA adapters on a prepared dataset

Conventions: inputs are positional, the output is ``-o/--output`` and its extension picks the
format (.wav, .flac, .ogg, .mp3 for audio; .png for images). Errors print one line,
``riffusion: error: ...``, and exit 1 (2 for usage errors); ``--debug`` shows the traceback
instead. Outputs are written atomically, so a failed or interrupted run never leaves a partial
file. Progress goes to stderr; ``--quiet`` silences everything but errors.

Layout: the sub-commands are a table (:data:`riffusion.cli.main.COMMANDS`) of ``add_*``
functions, each adding one sub-parser whose handler calls the library:
:mod:`riffusion.cli.generate` (the Riffuser calls), :mod:`riffusion.cli.tools` (model-free),
:mod:`riffusion.commands` (serve, batch, prepare-dataset, train-lora);
:mod:`riffusion.cli._base` holds the shared argument types, the console and the output
writing. Building the parser (``--help``) imports no torch; the model-free commands never
import diffusers or transformers.
"""

from riffusion.cli.main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
