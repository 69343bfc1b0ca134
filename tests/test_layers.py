"""Layering: every module's imports (read with ``ast``) against the layer table, and what the
light entry points (``import riffusion``, ``riffusion --help``) actually load.

A module may import modules of its own layer or of lower layers, at module level or inside a
function (a lazy import is still a dependency); ``if TYPE_CHECKING:`` blocks are ignored.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Bottom to top; the first matching prefix wins (longest prefixes are listed where they overlap).
LAYERS: list[tuple[str, ...]] = [
    (
        "riffusion.errors",
        "riffusion.limits",
        "riffusion.defaults",
        "riffusion._checks",
        "riffusion._files",
    ),
    ("riffusion.params",),
    # Phase recovery takes every parameter explicitly (magnitudes, grid sizes), so the
    # spectrogram converter builds on it.
    ("riffusion.phase",),
    ("riffusion.spectrogram",),
    # The decoder protocol and registry, the built-in decoders (over the converter's math)
    # registered like any plug-in, and the one dispatch every decode goes through.
    ("riffusion.decoders",),
    ("riffusion.image",),
    ("riffusion.audio", "riffusion.convert"),
    ("riffusion.inputs", "riffusion.seeds", "riffusion.prompts", "riffusion.progress"),
    # The image models: the protocol and loading (models) and one folder per model family
    # (models.sd1: Stable Diffusion 1.x, the riffusion checkpoint's).
    ("riffusion.models",),
    ("riffusion.joins", "riffusion.tempo", "riffusion.schedule"),
    ("riffusion.recipe", "riffusion.adapters"),
    # The music algorithms over any image model and decoder.
    ("riffusion.compose",),
    ("riffusion.riffuser", "riffusion.model_holder", "riffusion.calls"),
    (
        "riffusion.cli",
        "riffusion.commands",
        "riffusion.server",
        "riffusion.batch",
        "riffusion.dataset",
        "riffusion.training",
        "riffusion.testing",
        "riffusion.__main__",
    ),
]

# The image models work on pixels and latents: they must not know the audio side.
MODELS_MAY_IMPORT = (
    "riffusion.errors",
    "riffusion.defaults",
    "riffusion.progress",
    "riffusion.models",
    "riffusion.limits",
    "riffusion._checks",
    "riffusion._files",
    "riffusion.inputs",
)


def _graph() -> dict[str, dict[str, bool]]:
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts/import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.graph()


GRAPH = _graph()


def layer_of(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and docs/layers.md)")


def test_every_module_has_a_layer():
    for module in GRAPH:
        if module != "riffusion":
            layer_of(module)


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m != "riffusion"))
def test_imports_point_down(module):
    own = layer_of(module)
    upward = [
        target
        for target in GRAPH[module]
        if target.startswith("riffusion") and target != "riffusion" and layer_of(target) > own
    ]
    assert upward == [], f"{module} (layer {own}) imports higher layers: {upward}"


def test_the_package_shell_imports_only_errors_eagerly():
    eager = sorted(t for t, top in GRAPH["riffusion"].items() if top)
    assert eager == ["riffusion.errors"]


def test_the_image_models_do_not_know_audio():
    for module, edges in GRAPH.items():
        if module.startswith("riffusion.models"):
            for target in edges:
                if target.startswith("riffusion"):
                    assert target.startswith(MODELS_MAY_IMPORT), (module, target)


def test_the_table_catches_an_upward_import():
    # The check itself must fail on a leak: spectrogram importing an image model.
    assert layer_of("riffusion.models.sd1.pipeline") > layer_of("riffusion.spectrogram")
    assert layer_of("riffusion.riffuser") > layer_of("riffusion.schedule")
    assert layer_of("riffusion.cli.main") == len(LAYERS) - 1


def _loaded(code: str) -> list[str]:
    probe = (
        f"{code}\nimport sys\n"
        "print(sorted(m for m in ('torch', 'torchaudio', 'diffusers', 'transformers') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return eval(done.stdout.strip().splitlines()[-1])  # a printed list of str


BELOW_DIFFUSION = [
    "riffusion.errors",
    "riffusion.limits",
    "riffusion._checks",
    "riffusion._files",
    "riffusion.params",
    "riffusion.spectrogram",
    "riffusion.decoders",
    "riffusion.image",
    "riffusion.audio",
    "riffusion.convert",
    "riffusion.inputs",
    "riffusion.seeds",
    "riffusion.prompts",
    "riffusion.joins",
    "riffusion.tempo",
    "riffusion.schedule",
    "riffusion.defaults",
    "riffusion.progress",
]


def test_lower_layers_import_neither_diffusers_nor_transformers():
    code = "import riffusion\n" + "\n".join(f"import {m}" for m in BELOW_DIFFUSION)
    code += "\nfrom riffusion import Audio, PromptInput, SpectrogramParams, stitch, estimate_tempo"
    # Recipes are read and checked (render, batch, server) without loading the model code.
    code += "\nfrom riffusion import Recipe, Clip\nimport riffusion.recipe"
    assert _loaded(code) == ["torch", "torchaudio"]


def test_import_riffusion_and_value_types_do_not_import_torch():
    code = (
        "import riffusion, riffusion.inputs, riffusion.schedule, riffusion.prompts, "
        "riffusion.models.sd1\nfrom riffusion import PromptInput, RiffusionError"
    )
    assert _loaded(code) == []


def test_cli_help_does_not_import_torch():
    code = (
        "from riffusion.cli import build_parser, main\nbuild_parser()\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
    )
    assert _loaded(code) == []


def test_the_front_door_and_recipes_load_no_model_code():
    # Riffuser talks to the image-model protocol: diffusers comes with the first
    # RiffusionPipeline (from_pretrained), not with the front door, a recipe or its checks.
    code = (
        "from riffusion import Riffuser, Recipe, PromptInput\nimport riffusion.compose.replay\n"
        "Recipe(kind='loop', model='m', scheduler='DPMSolverMultistepScheduler', "
        "start=PromptInput('a')).to_url()"
    )
    assert _loaded(code) == ["torch", "torchaudio"]


def test_the_pipeline_does_load_diffusers():
    # The probe can see a heavy import (so the empty lists above mean something).
    assert "diffusers" in _loaded("from riffusion.models.sd1 import RiffusionPipeline")


def test_submodules_are_attributes_after_import_riffusion():
    # As in an eager package: the README's `riffusion.seeds.synthesize_seed_audio(...)` right
    # after `import riffusion`, in a fresh process.
    code = (
        "import riffusion\nassert riffusion.seeds.DEFAULT_SEED_IMAGE == 'straight_beat'\n"
        "assert callable(riffusion.joins.stitch) and riffusion.limits.MAX_SAMPLE_RATE > 0\n"
        "try:\n    riffusion.no_such_module\nexcept AttributeError:\n    pass\n"
        "else:\n    raise SystemExit('no AttributeError')"
    )
    assert _loaded(code) == ["torch", "torchaudio"]
