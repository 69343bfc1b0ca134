"""Hostile input to the upper layers: recipes, prompt inputs, the stream schedule, the CLI.

Same contract as ``test_robustness.py``: a valid result or a ``RiffusionError`` that names the
problem; never another exception type, never a hang. Recipes and JSON come from other people
(share links, a server), so their parsers are fuzzed with random and deeply nested documents.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from itertools import islice

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riffusion import Audio, ParameterError, PromptInput, Recipe, RiffusionError, estimate_tempo
from riffusion.schedule import stream_schedule

FAST = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
recipe_keys = st.sampled_from(
    ["kind", "model", "scheduler", "start", "end", "alpha", "num_inference_steps", "seed_image",
     "mask_image", "duration_s", "input_audio", "decode_method", "decode_seed", "params",
     "version", "scheduler_config", "unknown"]
)
prompt_dicts = st.dictionaries(
    st.sampled_from(["prompt", "seed", "denoising", "guidance", "negative_prompt", "bogus"]),
    json_values,
    max_size=5,
)


def _valid_recipe() -> dict:
    return {
        "kind": "text_to_audio",
        "model": "riffusion/riffusion-model-v1",
        "scheduler": "default",
        "start": {"prompt": "jazz", "seed": 1, "denoising": 0.75, "guidance": 7.0},
    }


@FAST
@given(changes=st.dictionaries(recipe_keys, json_values, max_size=4))
def test_recipe_json_is_a_recipe_or_a_parameter_error(changes):
    document = {**_valid_recipe(), **changes}
    text = json.dumps(document, allow_nan=True)
    try:
        recipe = Recipe.from_json(text)
    except ParameterError as error:
        assert "recipe" in str(error) or any(key in str(error) for key in document)
        return
    # A recipe that parses is fully valid: it round-trips and has finite numbers.
    assert Recipe.from_json(recipe.to_json()) == recipe
    assert math.isfinite(recipe.alpha) and 0 <= recipe.alpha <= 1
    assert recipe.num_inference_steps >= 1 and recipe.duration_s > 0


@FAST
@given(start=prompt_dicts)
def test_recipe_start_fields_are_validated(start):
    try:
        recipe = Recipe.from_dict({**_valid_recipe(), "start": start})
    except ParameterError:
        return
    assert isinstance(recipe.start.prompt, str)
    assert 0 <= recipe.start.seed < 2**63


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,  # nesting deeper than the parser's recursion
        '{"kind": "text_to_audio", "start": {"prompt": "x", "seed": ' + "9" * 5000 + "}}",
        "x" * 10,
        "",
        "null",
        '"a string"',
    ],
)
def test_hostile_recipe_documents_raise_parameter_errors(text):
    with pytest.raises(ParameterError, match="recipe"):
        Recipe.from_json(text)


def test_recipe_url_and_dict_entry_points_refuse_wrong_types():
    for bad in (None, 5, b"{}", ["kind"]):
        with pytest.raises(ParameterError, match="recipe"):
            Recipe.from_json(bad)  # type: ignore[arg-type]
        with pytest.raises(ParameterError, match="recipe"):
            Recipe.from_dict(bad)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="recipe"):
        Recipe.from_url("riffusion:???")


@FAST
@given(fields=prompt_dicts)
def test_prompt_input_is_valid_or_names_the_field(fields):
    try:
        prompt = PromptInput(**fields)
    except ParameterError as error:
        assert any(name in str(error) for name in fields) or "prompt" in str(error)
        return
    assert isinstance(prompt.prompt, str) and 0 <= prompt.seed < 2**63
    assert 0 <= prompt.denoising <= 1 and math.isfinite(prompt.guidance)


def test_prompt_input_names_unknown_fields():
    with pytest.raises(ParameterError, match="bogus"):
        PromptInput(prompt="x", bogus=1)  # type: ignore[call-arg]


@FAST
@given(
    prompts=st.one_of(
        st.integers(), st.none(), st.text(max_size=5), st.lists(json_values, max_size=3)
    ),
    seed=st.one_of(st.integers(-5, 2**64), st.floats(), st.none()),
)
def test_stream_schedule_is_valid_or_a_parameter_error(prompts, seed):
    try:
        steps = list(islice(stream_schedule(prompts, seed=seed), 12))
    except ParameterError as error:
        assert "prompts" in str(error) or "seed" in str(error)
        return
    for step in steps:
        for side in (step.start, step.end):
            if side is not None:
                assert 0 <= side.seed < 2**63


def test_stream_schedule_near_the_largest_seed_wraps_instead_of_failing():
    steps = list(islice(stream_schedule(["a", "b"], seed=2**63 - 1), 12))
    seeds = {side.seed for step in steps for side in (step.start, step.end) if side is not None}
    assert all(0 <= seed < 2**63 for seed in seeds) and len(seeds) > 1


def test_estimate_tempo_refuses_non_audio():
    with pytest.raises(ParameterError, match="audio"):
        estimate_tempo(None)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="2 s"):
        estimate_tempo(Audio(np.zeros(10, np.float32), sample_rate=44100))


# ---------------------------------------------------------------------------- command line
cli_words = st.sampled_from(
    ["audio-to-image", "image-to-audio", "print-exif", "seed-images", "sample-clips",
     "render", "--help", "-o", "out.wav", "x.png", "--seed", "-1", "99999999999999999999999",
     "nan", "--step-size-ms", "0", "--num-frequencies", "100000", "--format", "riffusion",
     "../../etc/passwd", "", "\x00", "--stereo", "--duration-ms", "1e309"]
)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(argv=st.lists(cli_words, max_size=6))
def test_command_line_exits_cleanly_on_any_arguments(tmp_path_factory, argv):
    from riffusion.cli import main

    folder = tmp_path_factory.mktemp("cli")
    stdout, stderr = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                status = main(argv)
            except SystemExit as exit_:  # argparse's own exits
                status = exit_.code
    finally:
        os.chdir(previous)
    assert status in (0, 1, 2), (argv, status, stderr.getvalue())
    assert "Traceback" not in stderr.getvalue()
    assert "unexpected error" not in stderr.getvalue().lower(), stderr.getvalue()
    # Nothing half-written is left behind.
    assert not [p for p in folder.rglob("*") if ".partial" in p.name]


def test_riffusion_error_is_the_family():
    assert issubclass(ParameterError, RiffusionError)
