"""The ``riffusion`` command line, end to end.

Model commands run as real subprocesses (``python -m riffusion``) on the tiny random model, a few
at a time: each pays 3–6 s of torch/diffusers imports, so they are started together once per
module (:func:`runs`) and the tests only inspect the results. Model-free commands and the error
paths run in-process through :func:`riffusion.cli.main`, which returns the exit status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

import riffusion
from riffusion import Audio
from riffusion.cli import build_parser, main
from riffusion.image import load_image, params_from_image, save_image
from tests.conftest import SAMPLE_RATE, music_like
from tests.diffusion_fixtures import tiny_model_dir

REPO = Path(__file__).resolve().parent.parent
STEPS = "2"
INPUT_S = 3.0
CLIP_S = 225351 / 44100  # one window: (512 − 1) × 441 samples = 5.11 s, as Riffusion's
LOOP_S = 5.12  # one period of 512 columns: 512 × 441 samples

COMMANDS = (
    "text-to-audio",
    "audio-to-audio",
    "interpolate",
    "stream",
    "loop",
    "render",
    "audio-to-image",
    "image-to-audio",
    "seed-images",
    "print-exif",
    "sample-clips",
)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # In-process decoding: small shared CI machines are much slower with contending threads.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A work folder holding a 3 s input clip (mono, 44.1 kHz)."""
    path = tmp_path_factory.mktemp("cli")
    Audio(music_like(INPUT_S), SAMPLE_RATE).save(path / "in.wav")
    return path


@dataclass
class Run:
    """What a command did: exit status and everything it printed."""

    returncode: int
    stdout: str
    stderr: str


def _subprocess(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",  # a 2-thread add was measured 40x slower on small CI boxes
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


# Runs several commands in one fresh interpreter, each through riffusion.cli.main with its own
# captured stdout/stderr: the imports (about 5 s of CPU per process) are paid once. Prints a
# JSON object name -> status, stdout, stderr and the heavy modules loaded so far.
_BATCH = """
import contextlib, io, json, sys
from riffusion.cli import main

results = {}
for name, argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    heavy = sorted({"diffusers", "transformers"} & set(sys.modules))
    results[name] = [status, out.getvalue(), err.getvalue(), heavy]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def runs(folder) -> dict[str, Run]:
    """Every model command, once; the two processes of the reproduction test are real CLIs.

    ``text-to-audio`` and then ``render`` of its recipe run as ``python -m riffusion`` in two
    processes; the other commands share one batch interpreter running alongside.
    """
    model = str(tiny_model_dir())
    gen = ["--model", model, "--steps", STEPS, "--quiet", "--recipe"]
    batch = [
        # Model-free commands first: they must not import diffusers.
        ("audio-to-image", ["audio-to-image", "in.wav", "-o", "m.png", "-q"]),
        ("image-to-audio", ["image-to-audio", "m.png", "-o", "m.wav", "-q"]),
        ("print-exif", ["print-exif", "m.png"]),
        ("seed-images", ["seed-images"]),
        ("bad-seed-image", ["text-to-audio", "x", "--seed-image", "nope", "-o", "bad.wav"]),
        # Not quiet: the status lines and bars go to stderr, the exit status is still 0.
        ("audio-to-audio", ["audio-to-audio", "in.wav", "jazz", "--seed", "3", "-o", "a.ogg",
                            "--model", model, "--steps", STEPS, "--recipe"]),
        ("interpolate", ["interpolate", "jazz", "rock", "--num-clips", "3", "--seed", "1",
                         "--end-seed", "2", "-o", "i.wav", *gen]),
        ("stream", ["stream", "jazz", "rock", "--num-clips", "3", "--steps-per-transition", "2",
                    "--seed", "5", "-o", "s.mp3", *gen]),
        ("loop", ["loop", "techno", "--seed", "4", "--repeat", "3", "-o", "l.flac", *gen]),
        # The loop's recipe is an envelope: one clip played three times.
        ("render-loop", ["render", "l.json", "-o", "l_again.flac", "--quiet"]),
    ]  # fmt: skip
    single = ["text-to-audio", "funky bass", "--seed", "7", "--save-image", "-o", "t.wav", *gen]

    def real_clis() -> dict[str, subprocess.CompletedProcess]:
        first = _subprocess(["-m", "riffusion", *single], folder)
        again = _subprocess(["-m", "riffusion", "render", "t.json", "-o", "t2.wav", "-q"], folder)
        return {"text-to-audio": first, "render": again}

    with ThreadPoolExecutor(max_workers=2) as pool:
        clis = pool.submit(real_clis)
        batched = pool.submit(_subprocess, ["-c", _BATCH, json.dumps(batch)], folder)
        batch_result = batched.result()
        assert batch_result.returncode == 0, batch_result.stderr[-3000:]
        results = {
            name: Run(status, out, err)
            for name, (status, out, err, _) in json.loads(batch_result.stdout).items()
        }
        heavy = {name: modules for name, (*_, modules) in json.loads(batch_result.stdout).items()}
        results["heavy-after-model-free"] = Run(0, " ".join(heavy["bad-seed-image"]), "")
        for name, done in clis.result().items():
            results[name] = Run(done.returncode, done.stdout, done.stderr)
    return results


def _ok(result: Run, *, quiet: bool = True) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == ""
    if quiet:
        assert result.stderr == "", result.stderr[-3000:]


def _check_audio(path: Path, fmt: str, duration_s: float, *, tolerance_s: float = 1e-6) -> None:
    assert path.is_file()
    info = soundfile.info(str(path))
    assert info.format == fmt
    assert info.samplerate == SAMPLE_RATE and info.channels == 1
    assert info.duration == pytest.approx(duration_s, abs=tolerance_s)


# --------------------------------------------------------------------------- model commands
def test_text_to_audio(runs, folder):
    _ok(runs["text-to-audio"])
    _check_audio(folder / "t.wav", "WAV", CLIP_S)
    assert soundfile.info(str(folder / "t.wav")).subtype == "PCM_16"
    image = load_image(folder / "t.png")
    assert image.size == (512, 512) and params_from_image(image).sample_rate == SAMPLE_RATE
    recipe = json.loads((folder / "t.json").read_text())
    assert recipe["kind"] == "text_to_audio" and recipe["start"]["seed"] == 7
    assert recipe["num_inference_steps"] == 2 and recipe["seed_image"] == "straight_beat"
    # Recorded as an absolute folder, so the recipe renders from anywhere.
    assert recipe["model"] == str(tiny_model_dir().resolve())


def test_render_reproduces_the_clip_bit_for_bit(runs, folder):
    # Another process, same thread count: the same samples.
    _ok(runs["render"])
    first, _ = soundfile.read(str(folder / "t.wav"), dtype="int16")
    again, _ = soundfile.read(str(folder / "t2.wav"), dtype="int16")
    assert np.array_equal(first, again)


def test_audio_to_audio_keeps_the_length_and_reports_progress(runs, folder):
    result = runs["audio-to-audio"]
    _ok(result, quiet=False)
    assert "Wrote" in result.stderr and "seed 3" in result.stderr
    _check_audio(folder / "a.ogg", "OGG", INPUT_S, tolerance_s=0.01)
    recipe = json.loads((folder / "a.json").read_text())
    assert recipe["kind"] == "audio_to_audio" and recipe["start"]["denoising"] == 0.5


def test_interpolate_joins_the_clips(runs, folder):
    _ok(runs["interpolate"])
    _check_audio(folder / "i.wav", "WAV", 3 * CLIP_S - 2 * 0.05)
    envelope = json.loads((folder / "i.json").read_text())
    assert envelope["crossfade_s"] == 0.05 and envelope["repeat"] == 1
    assert [clip["alpha"] for clip in envelope["clips"]] == [0.0, 0.5, 1.0]
    assert {clip["start"]["seed"] for clip in envelope["clips"]} == {1}
    assert {clip["end"]["seed"] for clip in envelope["clips"]} == {2}


def test_stream_writes_n_clips_in_one_file(runs, folder):
    _ok(runs["stream"])
    # MP3 frames may pad the end by a few milliseconds.
    _check_audio(folder / "s.mp3", "MP3", 3 * CLIP_S - 2 * 0.05, tolerance_s=0.06)
    clips = json.loads((folder / "s.json").read_text())["clips"]
    assert [clip["alpha"] for clip in clips] == [0.0, 0.5, 0.0]
    assert [clip["start"]["prompt"] for clip in clips] == ["jazz", "jazz", "rock"]


def test_loop_repeated(runs, folder):
    _ok(runs["loop"])
    _check_audio(folder / "l.flac", "FLAC", 3 * LOOP_S)
    samples, _ = soundfile.read(str(folder / "l.flac"), dtype="int16")
    third = len(samples) // 3
    assert np.array_equal(samples[:third], samples[third : 2 * third])
    envelope = json.loads((folder / "l.json").read_text())
    assert envelope["repeat"] == 3 and envelope["clips"][0]["kind"] == "loop"
    _ok(runs["render-loop"])
    again, _ = soundfile.read(str(folder / "l_again.flac"), dtype="int16")
    assert np.array_equal(samples, again)


def test_model_free_commands_do_not_import_diffusers(runs, folder):
    for name in ("audio-to-image", "image-to-audio", "print-exif", "seed-images"):
        assert runs[name].returncode == 0, runs[name].stderr
    assert runs["heavy-after-model-free"].stdout == ""
    assert "SAMPLE_RATE" in runs["print-exif"].stdout
    assert "straight_beat" in runs["seed-images"].stdout
    assert "og_beat" in runs["seed-images"].stdout  # listed as an alias
    _check_audio(folder / "m.wav", "WAV", INPUT_S)


def test_bad_argument_before_any_work_is_one_line(runs, folder):
    result = runs["bad-seed-image"]
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "'nope'" in result.stderr
    assert result.stderr.startswith("riffusion: error: ")
    assert not (folder / "bad.wav").exists()


def _fail_half_way(monkeypatch, owner: object, name: str, written: list[int]) -> None:
    """Make the writer ``owner.name`` (its first path argument is the destination) write the
    whole file, cut it in half and fail as a full disk does; ``written`` gets the size left."""
    real = getattr(owner, name)

    def half_then_fail(*args, **kwargs):
        real(*args, **kwargs)
        target = Path(next(arg for arg in args if isinstance(arg, str | os.PathLike)))
        size = target.stat().st_size
        with open(target, "r+b") as handle:
            handle.truncate(size // 2)
        written.append(size // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(owner, name, half_then_fail)


@pytest.mark.parametrize("command", ["audio-to-image", "image-to-audio"])
def test_a_write_failing_half_way_leaves_no_file(command, tmp_path, monkeypatch, capsys):
    source = Audio(music_like(0.5), SAMPLE_RATE)
    if command == "audio-to-image":
        source.save(tmp_path / "in.wav")
        argv, output = ["audio-to-image", str(tmp_path / "in.wav")], tmp_path / "out.png"
        owner, name = Image.Image, "save"
    else:
        save_image(riffusion.audio_to_image(source), tmp_path / "in.png")
        argv, output = ["image-to-audio", str(tmp_path / "in.png")], tmp_path / "out.wav"
        owner, name = soundfile, "write"
    before = sorted(os.listdir(tmp_path))
    written: list[int] = []
    _fail_half_way(monkeypatch, owner, name, written)
    assert main([*argv, "-o", str(output), "-q"]) == 1
    assert written and written[0] > 0  # a partial file did exist on disk
    err = capsys.readouterr().err
    assert err.startswith("riffusion: error: ") and "No space left on device" in err
    assert str(output) in err
    # Neither the half-written temporary file nor the output is left in the folder.
    assert sorted(os.listdir(tmp_path)) == before


# ---------------------------------------------------------------------- model-free, in-process
def test_audio_to_image_and_back(folder, capsys):
    assert main(["audio-to-image", str(folder / "in.wav"), "-o", str(folder / "x.png")]) == 0
    assert "Wrote" in capsys.readouterr().err
    image = load_image(folder / "x.png")
    assert image.size == (round(INPUT_S * 100) + 1, 512)  # n // hop + 1 columns
    assert params_from_image(image).stereo is False
    output = folder / "x.flac"
    assert main(["image-to-audio", str(folder / "x.png"), "-o", str(output), "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    _check_audio(output, "FLAC", INPUT_S)


def test_audio_to_image_stereo_and_print_exif(folder, capsys):
    output = folder / "stereo.png"
    assert (
        main(["--quiet", "audio-to-image", str(folder / "in.wav"), "--stereo", "-o", str(output)])
        == 0
    )
    assert params_from_image(load_image(output)).stereo is True
    capsys.readouterr()
    assert main(["print-exif", str(output)]) == 0
    out = capsys.readouterr().out
    assert "11005  STEREO" in out and "stereo               True" in out
    assert "Duration: 3.00 s" in out


def test_seed_images_lists_seeds_and_masks(capsys):
    from riffusion.seeds import mask_images, seed_images

    assert main(["seed-images"]) == 0
    out = capsys.readouterr().out
    for item in [*seed_images(), *mask_images()]:
        assert item.name in out and item.description in out
    assert "93.75 BPM" in out


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_with_an_example(command, capsys):
    argv = [command, "--help"] if command else ["--help"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Example:" in out and "--quiet" in out
    if command:
        assert f"riffusion {command}" in out


def test_no_command_prints_the_help(capsys):
    assert main([]) == 2
    assert "text-to-audio" in capsys.readouterr().err


def test_version(capsys):
    import riffusion

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"riffusion {riffusion.__version__}"


def test_console_script_is_declared():
    text = (REPO / "pyproject.toml").read_text()
    assert 'riffusion = "riffusion.cli:main"' in text


# ------------------------------------------------------------------------------ errors
# (argv, exit status, text the one-line message must contain); run inside the work folder.
BAD_ARGUMENTS = [
    (["text-to-audio", "x", "--steps", "-3", "-o", "out.wav"], 2, "--steps: -3 must be a positive"),
    (["text-to-audio", "x", "--steps", "two", "-o", "out.wav"], 2, "'two' is not an integer"),
    (["text-to-audio", "x", "--denoising", "1.5", "-o", "out.wav"], 2, "1.5 must be a number in"),
    (["text-to-audio", "x", "--seed", "-1", "-o", "out.wav"], 2, "--seed: -1 must be"),
    (["text-to-audio", "x", "--duration", "0", "-o", "out.wav"], 2, "--duration: 0 must be"),
    (["text-to-audio", "x"], 2, "required: -o/--output"),
    (["text-to-audio", "x", "--seed-image", "nope", "-o", "out.wav"], 1, "seed image 'nope'"),
    (["text-to-audio", "x", "--mask-image", "nope", "-o", "out.wav"], 1, "mask image 'nope'"),
    (
        [
            "text-to-audio",
            "x",
            "--seed-image",
            "none",
            "--mask-image",
            "keep_bass",
            "-o",
            "out.wav",
        ],
        1,
        "--mask-image needs a seed image",
    ),
    (["text-to-audio", "x", "-o", "out.xyz"], 1, "'.xyz'; an audio output needs one of .wav"),
    (["text-to-audio", "x", "-o", "no/out.wav"], 1, "output folder 'no' does not exist"),
    (["audio-to-audio", "missing.wav", "jazz", "-o", "out.wav"], 1, "'missing.wav' does not exist"),
    (["interpolate", "a", "b", "--num-clips", "1", "-o", "out.wav"], 2, "must be an integer >= 2"),
    (["stream", "-o", "out.wav"], 2, "required: prompt"),
    (["loop", "x", "--repeat", "0", "-o", "out.wav"], 2, "--repeat: 0 must be"),
    (["render", "missing.json", "-o", "out.wav"], 1, "'missing.json' does not exist"),
    (["render", "riffusion:1:garbage", "-o", "out.wav"], 1, "recipe string is corrupt"),
    (["audio-to-image", "missing.wav", "-o", "out.png"], 1, "'missing.wav' does not exist"),
    (["audio-to-image", "in.wav", "-o", "out.wav"], 1, "an image output needs one of .png"),
    (["image-to-audio", "missing.png", "-o", "out.wav"], 1, "'missing.png' does not exist"),
    (["image-to-audio", "in.wav", "-o", "out.wav"], 1, "cannot read image 'in.wav'"),
    (["image-to-audio", "x.png", "--method", "slow", "-o", "out.wav"], 2, "choice: 'slow'"),
    (["print-exif", "missing.png"], 1, "'missing.png' does not exist"),
    (["no-such-command"], 2, "invalid choice: 'no-such-command'"),
]


@pytest.mark.parametrize(
    ("argv", "status", "needle"), BAD_ARGUMENTS, ids=[" ".join(c[0])[:40] for c in BAD_ARGUMENTS]
)
def test_bad_arguments_exit_non_zero_with_one_line(
    argv, status, needle, folder, capsys, monkeypatch
):
    monkeypatch.chdir(folder)
    assert main(argv) == status
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("riffusion") and ": error: " in lines[0]
    assert needle in lines[0]
    assert not (folder / "out.wav").exists() and not (folder / "out.png").exists()


def test_model_errors_are_one_line(folder, capsys, monkeypatch):
    import riffusion.cli._base

    # --quiet would turn library logging down for the rest of this test process.
    monkeypatch.setattr(riffusion.cli._base, "_quiet_libraries", lambda: None)
    out = str(folder / "out.wav")
    model = str(tiny_model_dir())  # built (with its progress bars) before stderr is read
    capsys.readouterr()
    argv = ["text-to-audio", "x", "-o", out, "-q", "--model", model]
    assert main([*argv, "--scheduler", "bogus"]) == 1
    assert main(["text-to-audio", "x", "-o", out, "-q", "--model", str(folder / "nothing")]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert "unknown scheduler 'bogus'" in lines[0] and "nothing" in lines[1]
    assert not (folder / "out.wav").exists()


def test_image_without_exif(folder, capsys):
    path = folder / "plain.png"
    Image.new("RGB", (8, 512), "white").save(path)
    assert main(["print-exif", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no Riffusion EXIF tags" in err


def test_debug_shows_the_traceback(folder):
    from riffusion import AudioFileError

    with pytest.raises(AudioFileError):
        main(["audio-to-image", str(folder / "missing.wav"), "-o", "x.png", "--debug"])


def test_unexpected_errors_and_interrupts(monkeypatch, capsys):
    import riffusion.cli.tools

    def boom(args, console):
        raise RuntimeError("first line\nsecond line")

    monkeypatch.setattr(riffusion.cli.tools, "_seed_images", boom)
    assert main(["seed-images"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unexpected RuntimeError: first line second line" in err and "--debug" in err

    def interrupted(args, console):
        raise KeyboardInterrupt

    monkeypatch.setattr(riffusion.cli.tools, "_seed_images", interrupted)
    assert main(["seed-images"]) == 130
    assert "interrupted" in capsys.readouterr().err


# ------------------------------------------------------------------ parity with the original
def test_audio_to_image_takes_the_spectrogram_parameters(folder, capsys):
    output = folder / "params.png"
    argv = [
        "audio-to-image", str(folder / "in.wav"), "-o", str(output), "-q",
        "--step-size-ms", "20", "--num-frequencies", "128", "--min-frequency", "30",
        "--max-frequency", "8000", "--window-duration-ms", "50", "--padded-duration-ms", "200",
        "--power-for-image", "0.5", "--stereo",
    ]  # fmt: skip
    assert main(argv) == 0
    image = load_image(output)
    params = params_from_image(image)
    assert params == riffusion.SpectrogramParams(
        sample_rate=44100,
        stereo=True,
        step_size_ms=20,
        num_frequencies=128,
        min_frequency_hz=30,
        max_frequency_hz=8000,
        window_duration_ms=50,
        padded_duration_ms=200,
        power_for_image=0.5,
    )
    # 3 s at a 882-sample hop: 132,300 // 882 + 1 = 151 columns, 128 rows.
    assert image.size == (151, 128)
    # The image is exactly what the library makes with those parameters.
    expected = riffusion.audio_to_image(Audio.load(folder / "in.wav"), params)
    assert np.array_equal(np.asarray(image), np.asarray(expected))


def test_audio_to_image_keeps_the_sample_rate_when_asked(folder):
    source = folder / "in22k.wav"
    Audio(music_like(2.0, sample_rate=22050), 22050).save(source)
    kept, resampled = folder / "kept.png", folder / "resampled.png"
    assert main(["audio-to-image", str(source), "-o", str(kept), "-q", "--keep-sample-rate"]) == 0
    assert main(["audio-to-image", str(source), "-o", str(resampled), "-q"]) == 0
    kept_params = params_from_image(load_image(kept))
    assert kept_params.sample_rate == 22050 and kept_params.hop_length == 220
    assert load_image(kept).width == 44100 // 220 + 1
    assert params_from_image(load_image(resampled)).sample_rate == 44100
    assert load_image(resampled).width == 201
    with pytest.raises(SystemExit):
        build_parser().parse_args(["audio-to-image", "a", "-o", "b", "--step-size-ms", "0"])


def test_print_exif_in_the_original_format(folder, capsys):
    image = folder / "exif.png"
    assert main(["audio-to-image", str(folder / "in.wav"), "-o", str(image), "-q"]) == 0
    capsys.readouterr()
    assert main(["print-exif", str(image), "--format", "riffusion"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:9] == [
        "SAMPLE_RATE          =           44100",
        "STEREO               =               0",
        "STEP_SIZE_MS         =              10",
        "WINDOW_DURATION_MS   =             100",
        "PADDED_DURATION_MS   =             400",
        "NUM_FREQUENCIES      =             512",
        "MIN_FREQUENCY        =               0",
        "MAX_FREQUENCY        =           10000",
        "POWER_FOR_IMAGE      =            0.25",
    ]
    assert len(lines) == 10 and lines[9].startswith("MAX_VALUE            = ")
    assert main(["print-exif", str(image), "--format", "table"]) == 0
    assert "Spectrogram parameters:" in capsys.readouterr().out


def _clip_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_sample_clips_seeded_mono_any_extension(folder, capsys):
    source = folder / "long.wav"
    stereo = np.stack([music_like(4.0), music_like(4.0, seed=9)])
    Audio(stereo, SAMPLE_RATE).save(source)
    first, again, other = folder / "c1", folder / "c2", folder / "c3"
    common = ["sample-clips", str(source), "--duration-ms", "1500", "--num-clips", "3", "-q"]
    assert main([*common, "-o", str(first), "--seed", "4"]) == 0
    assert main([*common, "-o", str(again), "--seed", "4"]) == 0
    assert main([*common, "-o", str(other), "--seed", "5"]) == 0
    names = _clip_files(first)
    assert names == _clip_files(again) != _clip_files(other)
    assert len(names) == 3
    original, _ = soundfile.read(str(source), dtype="int16")
    for name in names:
        # The original's names: clip_{i}_start_{ms}_ms_duration_{ms}_ms.{ext}
        index, start_ms = int(name.split("_")[1]), int(name.split("_")[3])
        assert name == f"clip_{index}_start_{start_ms}_ms_duration_1500_ms.wav"
        assert 0 <= start_ms <= 2500
        samples, rate = soundfile.read(str(first / name), dtype="int16")
        assert rate == SAMPLE_RATE and samples.shape == (66150, 2)
        start = start_ms * 441 // 10
        assert np.array_equal(samples, original[start : start + 66150])
    # --mono mixes down; --extension picks any format libsndfile writes.
    for extension, fmt in (("flac", "FLAC"), ("aiff", "AIFF"), ("au", "AU"), ("ogg", "OGG")):
        out = folder / f"mono_{extension}"
        argv = [*common, "-o", str(out), "--seed", "4", "--mono", "--extension", extension]
        assert main(argv) == 0
        files = sorted(out.iterdir())
        assert [path.suffix for path in files] == [f".{extension}"] * 3
        info = soundfile.info(str(files[0]))
        assert info.format == fmt and info.channels == 1 and info.frames == 66150
    assert main([*common, "-o", str(folder / "bad"), "--extension", "docx"]) == 1
    assert "not a format libsndfile writes" in capsys.readouterr().err
    too_long = ["sample-clips", str(source), "-o", str(folder / "x"), "--duration-ms", "5000"]
    assert main(too_long) == 1
    assert "longer than" in capsys.readouterr().err


def test_seed_and_mask_ids_on_the_command_line():
    from riffusion.cli._base import _mask_image, _seed_image

    assert _seed_image("og_beat") == "straight_beat" and _seed_image("marim") == "marimba_arp"
    assert _mask_image("") is None and _mask_image("none") is None
    assert _mask_image("mask_top_third_75") == "top_third_75"
    with pytest.raises(riffusion.ParameterError, match="nor is '../nope.png' an existing file"):
        _seed_image("../nope.png")


# ------------------------------------------------------------------ table, prompts, progress
def test_every_subcommand_comes_from_the_table():
    import argparse

    from riffusion.cli import COMMANDS

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(subparsers.choices) == [row.name for row in COMMANDS]
    for name, sub in subparsers.choices.items():
        assert callable(sub.get_default("handler")), name


def test_random_prompt_prints_prompts_from_the_list(capsys):
    from riffusion.prompts import PROMPTS

    assert main(["random-prompt", "--count", "4", "--seed", "5"]) == 0
    first = capsys.readouterr().out.splitlines()
    assert len(first) == 4 and all(line in PROMPTS for line in first)
    assert main(["random-prompt", "--count", "4", "--seed", "5"]) == 0
    assert capsys.readouterr().out.splitlines() == first
    assert main(["random-prompt", "--count", "0"]) == 2


def test_a_model_that_cannot_load_is_one_line_naming_the_options(tmp_path, capsys):
    missing = tmp_path / "no_such_model"
    missing.mkdir()
    status = main(
        [
            "text-to-audio",
            "jazz",
            "-o",
            str(tmp_path / "x.wav"),
            "--model",
            str(missing),
            "--local-files-only",
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert status == 1
    assert err.count("\n") == 1 and err.startswith("riffusion: error: ")
    for part in ("--model", "--local-files-only", "make_tiny_model", "Traceback"):
        assert (part in err) == (part != "Traceback"), (part, err)
    assert not (tmp_path / "x.wav").exists()


def test_progress_is_labelled_by_clip_and_window(capsys):
    import contextlib

    from riffusion.cli._base import _Console
    from riffusion.progress import Progress

    class FakeRiffuser:
        callback = None

        @contextlib.contextmanager
        def on_progress(self, callback):
            self.callback = callback
            yield

    riffuser = FakeRiffuser()
    with _Console(quiet=False).progress(riffuser, num_clips=2):
        for _clip in range(2):
            for window in (1, 2):
                for step in (1, 2, 3):
                    riffuser.callback(Progress(window, 2, step, 3))
    err = capsys.readouterr().err
    for label in ("clip 1/2, window 1/2", "clip 1/2, window 2/2", "clip 2/2, window 2/2"):
        assert label in err
    assert "clip 3/2" not in err and "/3 [" in err  # each bar counts the window's 3 steps
    with _Console(quiet=True).progress(riffuser, num_clips=2):
        pass
    assert capsys.readouterr().err == ""


def test_serve_without_the_server_extra_says_how_to_install_it(monkeypatch, capsys):
    # A base install has no FastAPI: `riffusion serve` must say how to add it from the clone
    # (`pip install "riffusion[server]"` would fetch PyPI's unrelated 2022 project).
    for name in [m for m in sys.modules if m.split(".")[:2] == ["riffusion", "server"]]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # `import fastapi` raises ImportError
    assert main(["serve", "--local-files-only"]) == 1
    error = capsys.readouterr().err
    assert 'pip install -e ".[server]"' in error and "fastapi" in error
    assert "riffusion[server]" not in error
