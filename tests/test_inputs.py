"""riffusion.inputs: the web app's request values, parsed from untrusted JSON."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from riffusion.errors import ParameterError
from riffusion.inputs import (
    MAX_NUM_INFERENCE_STEPS,
    InferenceInput,
    InferenceOutput,
    InferencePrompt,
    InputError,
    check_asset_id,
)
from riffusion.testing import web_app_request

ROOT = Path(__file__).resolve().parents[1]


def _data(**changes):
    defaults = {
        "alpha": 0.5,
        "start.prompt": "a",
        "start.seed": 1,
        "end.prompt": "b",
        "end.seed": 2,
    }
    return web_app_request(**{**defaults, **changes})


def test_parses_the_web_apps_json_with_javascript_numbers():
    parsed = InferenceInput.from_json(_data(alpha=1, num_inference_steps=50.0))
    assert parsed.alpha == 1.0 and isinstance(parsed.alpha, float)
    assert parsed.num_inference_steps == 50 and isinstance(parsed.num_inference_steps, int)
    assert parsed.start == InferencePrompt(prompt="a", seed=1, denoising=0.75, guidance=7.0)
    assert isinstance(parsed.start.guidance, float)
    assert parsed.to_dict()["end"] == {
        "prompt": "b",
        "seed": 2,
        "denoising": 0.75,
        "guidance": 7.0,
        "negative_prompt": None,
    }


@pytest.mark.parametrize("mask", [None, ""])
def test_null_and_empty_mask_mean_none(mask):
    assert InferenceInput.from_json(_data(mask_image_id=mask)).mask_image_id is None
    data = _data()
    del data["mask_image_id"]
    assert InferenceInput.from_json(data).mask_image_id is None


def test_defaults_of_optional_fields():
    data = _data()
    for key in ("num_inference_steps", "seed_image_id", "mask_image_id"):
        del data[key]
    data["start"] = {"prompt": "a", "seed": 3}
    parsed = InferenceInput.from_json(data)
    assert (parsed.num_inference_steps, parsed.seed_image_id) == (50, "og_beat")
    assert (parsed.start.denoising, parsed.start.guidance) == (0.75, 7.0)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"alpha": float("nan")}, "alpha"),
        ({"alpha": float("inf")}, "alpha"),
        ({"num_inference_steps": MAX_NUM_INFERENCE_STEPS + 1}, "num_inference_steps"),
        ({"start": {"prompt": "a", "seed": 2**63}}, "start.seed"),
        ({"start": {"prompt": "a\x00b", "seed": 1}}, "start.prompt"),
        ({"end": {"prompt": "a", "seed": 1, "negative_prompt": 3}}, "end.negative_prompt"),
        ({"end": "b"}, "end"),
    ],
)
def test_errors_name_the_field(changes, field):
    with pytest.raises(InputError) as error:
        InferenceInput.from_json(_data(**changes))
    assert error.value.field == field
    assert isinstance(error.value, ParameterError) and isinstance(error.value, ValueError)
    assert str(error.value).startswith(f"{field}: ")


def test_direct_construction_validates_too():
    with pytest.raises(InputError, match="seed"):
        InferencePrompt(prompt="a", seed=-1)
    with pytest.raises(InputError, match="alpha"):
        InferenceInput(start=InferencePrompt("a", 1), end=InferencePrompt("b", 2), alpha=2)
    with pytest.raises(InputError, match="audio"):
        InferenceOutput(
            image="data:image/jpeg;base64,", audio="data:audio/wav;base64,", duration_s=1
        )


@pytest.mark.parametrize(
    "value", ["../og_beat", "/etc/passwd", "og_beat\x00", "C:\\x", "og beat", "", "a" * 65, None]
)
def test_asset_ids_are_never_paths(value):
    with pytest.raises(InputError) as error:
        check_asset_id(value, "seed_image_id", ["og_beat", "vibes"])
    assert error.value.field == "seed_image_id" and "og_beat, vibes" in str(error.value)
    assert check_asset_id("vibes", "seed_image_id", ["og_beat", "vibes"]) == "vibes"


def test_import_needs_neither_torch_nor_diffusers():
    # riffusion/__init__ imports the audio layer (torch) today; load the package shell only,
    # so this checks what riffusion.inputs itself pulls in.
    code = (
        "import sys, types; package = types.ModuleType('riffusion'); "
        f"package.__path__ = [{str(ROOT / 'riffusion')!r}]; sys.modules['riffusion'] = package; "
        "import riffusion.inputs; "
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'numpy') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
