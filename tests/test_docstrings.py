"""Docstrings: every public function with arguments documents them (``Args:``), and the lower
layers' examples run (doctest)."""

from __future__ import annotations

import doctest
import importlib
import inspect
import re

import pytest

# The modules whose ``__all__`` is public API (``riffusion`` itself included).
PUBLIC_MODULES = [
    "riffusion",
    "riffusion.params",
    "riffusion.spectrogram",
    "riffusion.decoders",
    "riffusion.decoders.decode",
    "riffusion.decoders.fast",
    "riffusion.decoders.reference",
    "riffusion.decoders.registry",
    "riffusion.image",
    "riffusion.audio",
    "riffusion.convert",
    "riffusion.inputs",
    "riffusion.seeds",
    "riffusion.prompts",
    "riffusion.models.sd1",
    "riffusion.joins",
    "riffusion.tempo",
    "riffusion.schedule",
    "riffusion.recipe",
    "riffusion.progress",
    "riffusion.adapters",
    "riffusion.models",
    "riffusion.models.loading",
    "riffusion.compose.replay",
    "riffusion.compose.windows",
    "riffusion.compose.continuation",
    "riffusion.compose.audio_windows",
    "riffusion.compose.interpolation",
    "riffusion.compose.loops",
    "riffusion.compose.stream",
    "riffusion.compose.stream_stages",
    "riffusion.compose.inputs",
    "riffusion.compose.canvas",
    "riffusion.calls",
    "riffusion.model_holder",
    "riffusion.riffuser",
    "riffusion.testing",
    "riffusion.batch",
    "riffusion.dataset",
    "riffusion.training",
]

# Lower layers whose docstring examples run as doctests.
DOCTEST_MODULES = [
    "riffusion.params",
    "riffusion.spectrogram",
    "riffusion.phase",
    "riffusion.decoders.decode",
    "riffusion.image",
    "riffusion.audio",
    "riffusion.convert",
    "riffusion.joins",
    "riffusion.tempo",
]


def public_callables() -> dict[str, object]:
    """Qualified name -> function, for public functions and public methods of public classes."""
    found: dict[str, object] = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for attribute in module.__all__:
            value = getattr(module, attribute)
            if inspect.isfunction(value):
                found[f"{value.__module__}.{value.__qualname__}"] = value
            elif inspect.isclass(value) and value.__module__.startswith("riffusion"):
                # The class's own methods and those of its riffusion bases (mixins such as
                # the pipeline's GenerationMixin, or Riffuser's ModelHolder), each once.
                for base in value.__mro__:
                    if not base.__module__.startswith("riffusion"):
                        continue
                    for name, member in vars(base).items():
                        if name.startswith("_"):
                            continue
                        function = getattr(member, "__func__", member)
                        if inspect.isfunction(function):
                            found[f"{base.__module__}.{base.__qualname__}.{name}"] = function
    return found


CALLABLES = public_callables()


def _arguments(function: object) -> list[str]:
    parameters = inspect.signature(inspect.unwrap(function)).parameters.values()
    return [p.name for p in parameters if p.name not in ("self", "cls")]


def _args_section(doc: str) -> str:
    match = re.search(r"^Args:\n((?:[ \t]+.*\n?|\n)+)", doc, re.MULTILINE)
    return match.group(1) if match else ""


def test_the_walk_finds_the_api():
    # A guard against a walk that silently finds nothing.
    assert "riffusion.convert.image_to_audio" in CALLABLES
    assert "riffusion.riffuser.Riffuser.text_to_audio" in CALLABLES
    assert "riffusion.audio.Audio.fit_length" in CALLABLES
    assert len(CALLABLES) > 80


@pytest.mark.parametrize(
    "name", sorted(name for name, function in CALLABLES.items() if _arguments(function))
)
def test_public_functions_document_every_argument(name):
    function = CALLABLES[name]
    doc = inspect.getdoc(inspect.unwrap(function)) or ""
    section = _args_section(doc)
    assert section, f"{name}: the docstring has no Args: section"
    missing = [arg for arg in _arguments(function) if not re.search(rf"\b{arg}\b", section)]
    assert missing == [], f"{name}: Args: does not describe {missing}"


def test_the_check_catches_a_missing_argument():
    def documented(a, b):
        """Sum.

        Args:
            a: first.
        """

    assert _args_section(inspect.getdoc(documented)).strip() == "a: first."
    assert not re.search(r"\bb\b", _args_section(inspect.getdoc(documented)))


@pytest.mark.parametrize("module_name", DOCTEST_MODULES)
def test_lower_layer_doctests(module_name):
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        pytest.skip(f"{module_name} does not exist on this branch")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
