"""Malformed calls to the library: each ends in a valid result or a RiffusionError that names
the argument, its value and what was expected — never OverflowError, TypeError, AttributeError,
an OSError, an IndexError deep inside torch, or an error raised only after work was done.

The explicit cases are the classes found by hostile-input testing (issue 23); the properties
(hypothesis, default profile: 40 cases each) sweep the same families over the public functions:
extreme floats and ints (±1e±308, 10**400, denormals, 2**63), wrong types, and file-system
failures (names too long, folders, missing folders, FIFOs and devices, read-only folders).
"""

from __future__ import annotations

import contextlib
import io
import os
import stat

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import riffusion
from riffusion import (
    Audio,
    AudioFileError,
    ImageFormatError,
    ModelLoadError,
    ParameterError,
    PromptInput,
    Recipe,
    RiffusionError,
    SpectrogramParams,
    audio_to_image,
    image_to_audio,
)
from riffusion._files import check_allowed_file
from riffusion.image import load_image, mel_to_image, save_image
from riffusion.recipe import Adapter
from riffusion.schedule import stream_schedule
from riffusion.tempo import trim_to_bars

FAST = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

EXTREME = [
    10**400,
    -(10**400),
    2**63,
    2**64,
    -1,
    1e308,
    -1e308,
    5e-324,  # the smallest denormal
    1e-310,
    float("inf"),
    float("-inf"),
    float("nan"),
    True,
    None,
    "7",
    b"7",
    [7],
    {"x": 7},
    np.float64(1e308),
]
extreme = st.sampled_from(EXTREME) | st.floats() | st.integers(-(2**70), 2**70)


def _error(expected: type[Exception], call, /, *args, **kwargs) -> str:
    with pytest.raises(expected) as info:
        call(*args, **kwargs)
    assert isinstance(info.value, RiffusionError)
    return str(info.value)


def _tone(seconds: float = 1.0, rate: int = 44100, channels: int = 1) -> Audio:
    time = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * 440 * time).astype(np.float32)
    return Audio(np.repeat(wave[None], channels, axis=0), rate)


# ------------------------------------------------------------ the classes found, one each
def test_overflowing_numbers_are_parameter_errors_naming_the_field():
    message = _error(ParameterError, PromptInput, prompt="rock", guidance=10**400)
    assert message.startswith("guidance=(an integer of 1329 bits)") and ">= 0" in message
    message = _error(ParameterError, PromptInput, prompt="rock", denoising=-(10**400))
    assert message.startswith("denoising=-(an integer of 1329 bits)")
    message = _error(
        ParameterError,
        Recipe,
        kind="riffuse",
        model="m",
        scheduler="default",
        start=PromptInput("a"),
        duration_s=10**400,
    )
    assert message.startswith("duration_s=") and "seconds" in message
    message = _error(ParameterError, SpectrogramParams, step_size_ms=1e308)
    assert message.startswith("step_size_ms=1e+308") and "at most" in message
    message = _error(ParameterError, SpectrogramParams, window_duration_ms=10**400)
    assert message.startswith("window_duration_ms=") and "positive finite" in message


def test_from_exif_and_image_to_audio_check_their_argument_types():
    message = _error(ParameterError, SpectrogramParams.from_exif, {}, base="x")
    assert "base must be a SpectrogramParams" in message and "str" in message
    message = _error(ParameterError, SpectrogramParams.from_exif, ["x"])
    assert "exif must be a mapping" in message
    image = audio_to_image(_tone())
    message = _error(ParameterError, image_to_audio, image, params="x")
    assert "params must be a riffusion.SpectrogramParams" in message and "str" in message


def test_a_vanishing_mel_band_is_refused_when_the_params_are_made():
    message = _error(
        ParameterError, SpectrogramParams, min_frequency_hz=1e-300, max_frequency_hz=1e-299
    )
    assert "narrower than one STFT bin" in message and "1e-299" in message
    # Read from an image's EXIF, the same is an ImageFormatError naming the tags.
    exif = {11050: 1e-300, 11060: 1e-299}
    with pytest.raises(ImageFormatError):
        SpectrogramParams.from_exif(exif)


def test_file_system_failures_are_named(tmp_path):
    audio = _tone(0.1)
    long_name = tmp_path / ("x" * 300 + ".wav")
    message = _error(AudioFileError, audio.save, long_name)
    assert "x" * 20 in message and ("long" in message or "not usable" in message)
    message = _error(AudioFileError, audio.save, tmp_path / ("d" * 5000) / "a.wav")
    assert "not usable" in message
    message = _error(AudioFileError, audio.save, tmp_path / "missing" / "a.wav")
    assert "does not exist" in message
    message = _error(ImageFormatError, image_to_audio, tmp_path)
    assert "is a folder, not a file" in message
    message = _error(ImageFormatError, load_image, tmp_path / ("y" * 5000 + ".png"))
    assert "cannot be opened" in message
    for special in ("/dev/zero", "/dev/null"):
        if os.path.exists(special):
            assert "not a regular file" in _error(AudioFileError, Audio.load, special)
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    assert "not a regular file" in _error(AudioFileError, Audio.load, fifo)  # no hang
    assert "not a regular file" in _error(ImageFormatError, load_image, fifo)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_an_audio_file_error(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert "cannot write" in _error(AudioFileError, _tone(0.1).save, folder / "a.wav")
    finally:
        folder.chmod(stat.S_IRWXU)


def test_extreme_levels_do_not_overflow_inside():
    quiet = Audio(np.full((1, 4410), 1e-40, np.float32), 44100)
    normalized = quiet.normalize_peak(-1.0)
    assert normalized.peak == pytest.approx(10 ** (-1 / 20), rel=1e-6)
    # The picture of audio scaled by a power of two is the same, to the last pixel.
    tone = _tone(0.5)
    base = np.asarray(audio_to_image(tone))
    for scale in (2.0**40, 2.0**-100):  # the scaled audio stays normal: no bit is lost
        scaled = Audio(tone.waveform * np.float32(scale), tone.sample_rate)
        assert np.array_equal(np.asarray(audio_to_image(scaled)), base), scale
    loud = Audio(np.full((1, 4410), 3e38, np.float32), 44100)
    assert audio_to_image(loud).size == (11, 512)


def test_documented_channel_conversions_are_accepted():
    three = _tone(0.2, channels=3)
    image = audio_to_image(three, SpectrogramParams(stereo=True))
    assert image.size == (21, 512)
    assert np.array_equal(
        np.asarray(image),
        np.asarray(audio_to_image(_tone(0.2, channels=2), SpectrogramParams(stereo=True))),
    )


def test_stream_schedule_argues_at_the_call():
    message = _error(ParameterError, stream_schedule, [1, 2])
    assert "PromptInput, str or dict" in message and "int" in message
    message = _error(ParameterError, stream_schedule, ["jazz", {"prompt": "x", "bogus": 1}])
    assert "bogus" in message


def test_limits_derived_from_bytes_refuse_before_allocating():
    # A one-hour silent stereo FLAC is a few hundred KB; its header asks for 1.2 GiB.
    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", 44100, 2, format="FLAC") as handle:
        block = np.zeros((441_000, 2), np.float32)
        for _ in range(360):
            handle.write(block)
    data = buffer.getvalue()
    assert len(data) < 2_000_000
    message = _error(AudioFileError, Audio.load, data, max_bytes=32 << 20)
    assert "3600.0 s" in message and "at most 32 MiB" in message
    # The widest image the format allows would take about 24 GiB to decode: refused at once.
    wide = mel_to_image(np.zeros((1, 512, 65_536), np.float32), SpectrogramParams())
    message = _error(ParameterError, image_to_audio, wide)
    assert "65536 columns" in message and "MAX_DECODE_BYTES" in message
    message = _error(ParameterError, _tone(0.1).with_channels(64).fit_length, 10**9)
    assert "MAX_AUDIO_BYTES" in message


def test_trim_to_bars_takes_numbers_only():
    for value in (10**400, float("nan"), "120", True):
        message = _error(ParameterError, trim_to_bars, _tone(1.0), bpm=value)
        assert message.startswith("bpm=") and "positive number" in message


# ------------------------------------------------------------------- allowed files only
def test_files_named_by_someone_else_are_read_only_in_allowed_folders(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    weights = allowed / "lora.safetensors"
    weights.write_bytes(b"x" * 10)
    assert (
        check_allowed_file(weights, allowed_dirs=[allowed], max_bytes=100, what="LoRA weights")
        == weights.resolve()
    )
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"secret")
    # Outside: refused without looking, so the message is the same whether it exists or not.
    messages = [
        _error(
            ParameterError,
            check_allowed_file,
            path,
            allowed_dirs=[allowed],
            max_bytes=100,
            what="LoRA weights",
        )
        for path in (outside, tmp_path / "missing.bin")
    ]
    assert all("outside the folders allowed" in m for m in messages)
    assert messages[0].replace("secret.bin", "X") == messages[1].replace("missing.bin", "X")
    # A link inside pointing outside is outside.
    link = allowed / "link.safetensors"
    link.symlink_to(outside)
    assert "outside" in _error(
        ParameterError, check_allowed_file, link, allowed_dirs=[allowed], max_bytes=100, what="w"
    )
    assert "outside" in _error(
        ParameterError,
        check_allowed_file,
        allowed / ".." / "secret.bin",
        allowed_dirs=[allowed],
        max_bytes=100,
        what="w",
    )
    fifo = allowed / "pipe"
    os.mkfifo(fifo)
    assert "not a regular file" in _error(
        ParameterError, check_allowed_file, fifo, allowed_dirs=[allowed], max_bytes=100, what="w"
    )
    assert "at most 5" in _error(
        ParameterError, check_allowed_file, weights, allowed_dirs=[allowed], max_bytes=5, what="w"
    )
    assert "none" in _error(
        ParameterError, check_allowed_file, weights, allowed_dirs=[], max_bytes=100, what="w"
    )


def test_a_recipes_adapter_outside_the_allowed_folders_is_never_opened(tmp_path, monkeypatch):
    from riffusion import adapters

    opened = []
    monkeypatch.setattr(adapters, "file_fingerprint", lambda p: opened.append(p) or "0")
    lora = Adapter(kind="lora", path="/dev/zero", fingerprint="0123456789abcdef", scale=1.0)
    message = _error(ModelLoadError, adapters._check_file, lora, [tmp_path])
    assert "outside the folders allowed" in message and opened == []


# ------------------------------------------------------------------------------ properties
@FAST
@given(field=st.sampled_from(["seed", "denoising", "guidance"]), value=extreme)
def test_prompt_input_numbers(field, value):
    try:
        prompt = PromptInput(prompt="jazz", **{field: value})
    except ParameterError as error:
        assert str(error).startswith(f"{field}=")
        return
    assert getattr(prompt, field) == value


@FAST
@given(
    field=st.sampled_from(["alpha", "num_inference_steps", "duration_s", "decode_seed"]),
    value=extreme,
)
def test_recipe_numbers(field, value):
    try:
        Recipe(
            kind="riffuse", model="m", scheduler="default", start=PromptInput("a"), **{field: value}
        )
    except ParameterError as error:
        assert field in str(error)


@FAST
@given(
    field=st.sampled_from(
        [
            "sample_rate",
            "step_size_ms",
            "window_duration_ms",
            "padded_duration_ms",
            "num_frequencies",
            "min_frequency_hz",
            "max_frequency_hz",
            "power_for_image",
            "max_value",
        ]
    ),
    value=extreme,
)
def test_spectrogram_params_numbers(field, value):
    try:
        SpectrogramParams(**{field: value})
    except ParameterError as error:
        assert field in str(error)


@FAST
@given(
    method=st.sampled_from(["normalize_peak", "fit_length", "resample", "with_channels", "slice"]),
    value=extreme,
)
def test_audio_methods_numbers(method, value):
    audio = _tone(0.05)
    try:
        result = getattr(audio, method)(value)
    except ParameterError:
        return
    assert isinstance(result, Audio) and np.isfinite(result.waveform).all()


@FAST
@given(value=extreme)
def test_stitch_crossfade_numbers(value):
    try:
        result = riffusion.stitch([_tone(0.05), _tone(0.05)], crossfade_s=value)
    except ParameterError as error:
        assert "crossfade_s=" in str(error)
        return
    assert np.isfinite(result.waveform).all()


@FAST
@given(
    config=st.dictionaries(
        st.sampled_from(
            [
                "num_train_timesteps",
                "steps_offset",
                "solver_order",
                "beta_start",
                "trained_betas",
                "timestep_spacing",
                "anything",
            ]
        ),
        extreme | st.lists(st.floats(0, 1), max_size=3) | st.text(max_size=80),
        max_size=3,
    )
)
def test_recipe_scheduler_config_is_bounded(config):
    try:
        recipe = Recipe(
            kind="riffuse",
            model="m",
            scheduler="default",
            start=PromptInput("a"),
            scheduler_config=config,
        )
    except ParameterError as error:
        assert "scheduler_config" in str(error)
        return
    steps = recipe.scheduler_config.get("num_train_timesteps", 1)
    assert 1 <= steps <= 10_000


@FAST
@given(
    text=st.text(max_size=40) | st.sampled_from(["\ud800", "a\udfffb", "\x00", "\u202e", "🎸" * 3])
)
def test_prompt_text_is_valid_unicode_or_named(text):
    try:
        PromptInput(prompt=text)
    except ParameterError as error:
        assert str(error).startswith("prompt=")
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@FAST
@given(name=st.text(min_size=1, max_size=300), suffix=st.sampled_from([".wav", ".png", ""]))
def test_hostile_output_names(tmp_path_factory, name, suffix):
    folder = tmp_path_factory.mktemp("names")
    audio = _tone(0.05)
    try:
        written = audio.save(folder / (name + suffix))
    except RiffusionError:
        return
    except ValueError as error:  # pathlib itself refuses some names ("/" only, NUL)
        assert "NUL" in str(error) or "null" in str(error)
        return
    assert written.exists()
    image = audio_to_image(audio)
    with contextlib.suppress(RiffusionError):
        save_image(image, folder / (name + ".png"))


# --------------------------------------------------------------- every public function
_LAYERS = [
    "riffusion",
    "riffusion.audio",
    "riffusion.convert",
    "riffusion.image",
    "riffusion.inputs",
    "riffusion.joins",
    "riffusion.params",
    "riffusion.prompts",
    "riffusion.recipe",
    "riffusion.schedule",
    "riffusion.seeds",
    "riffusion.spectrogram",
    "riffusion.tempo",
]
# Loaders of whole models (their own tests cover their arguments) and type aliases.
_NOT_SWEPT = {"Riffuser", "RiffusionPipeline", "make_tiny_model", "make_tiny_single_file"}
_FIRST_ARGUMENTS = [
    10**400,
    -1,
    1e308,
    float("nan"),
    None,
    "x",
    b"x",
    [1],
    {},
    True,
    "\ud800",
    "/dev/zero",
    object(),
]


def _public_callables():
    import importlib
    import inspect

    seen = set()
    for module_name in _LAYERS:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            value = getattr(module, name)
            if (
                name in _NOT_SWEPT
                or id(value) in seen
                or not callable(value)
                or (inspect.isclass(value) and issubclass(value, BaseException | int))
                or getattr(value, "__module__", "") in ("typing", "collections.abc")
            ):
                continue
            try:
                parameters = inspect.signature(value).parameters.values()
            except (TypeError, ValueError):
                continue
            positional = (
                inspect.Parameter.POSITIONAL_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
            )
            if not any(parameter.kind in positional for parameter in parameters):
                continue  # takes no argument to be hostile with
            seen.add(id(value))
            yield f"{module_name}.{name}", value


@pytest.mark.parametrize(("name", "function"), list(_public_callables()), ids=lambda x: str(x))
def test_every_public_function_takes_a_hostile_first_argument(name, function):
    """Called with one hostile value first (the rest left at their defaults), a public function
    of the lower layers returns, or raises a RiffusionError; a TypeError only for a missing
    required argument (Python's own complaint about the call itself)."""
    for value in _FIRST_ARGUMENTS:
        try:
            function(value)
        except RiffusionError:
            pass
        except TypeError as error:
            assert "required" in str(error) and "argument" in str(error), (name, value, error)
            return
