"""Griffe extension: adapt riffusion's docstrings to what mkdocstrings renders.

1. Sphinx roles. The Google-style docstrings cross-reference with Sphinx roles (for example
   :class:`~riffusion.audio.Audio`), which Markdown would show verbatim. Each role becomes inline
   code: a ``~`` target keeps its last component, ``text <target>`` keeps the text, anything else
   is kept whole; the Sphinx "escaped space" after a role (used before a plural "s") is dropped.
2. Grouped arguments. Napoleon accepts ``a, b, c: description`` in an ``Args:`` section; griffe
   does not, so such a line becomes one entry per name with the same description.
3. Literal blocks. reStructuredText's ``text::`` before an indented block becomes ``text:``; the
   indented block is already a Markdown code block.

Loaded by the mkdocstrings options in mkdocs.yml.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_KINDS = "class|func|meth|mod|data|attr|exc|obj|const|type"
_ROLE = re.compile(rf":(?:py:)?(?:{_KINDS}):`([^`]+)`(?:\\ )?")
_LITERAL = re.compile(r"(?<=\S)::$", re.MULTILINE)
_GROUPED = re.compile(r"^(?P<indent>[ \t]+)(?P<names>\w+(?:, \w+)+): (?P<text>.*)$", re.MULTILINE)


def _role(match: re.Match[str]) -> str:
    target = match.group(1).strip()
    explicit = re.fullmatch(r"(.+?)\s*<[^>]+>", target)
    if explicit:
        text = explicit.group(1)
    elif target.startswith("~"):
        text = target[1:].rsplit(".", 1)[-1]
    else:
        text = target
    return f"`{text}`"


def _grouped(match: re.Match[str]) -> str:
    indent, text = match.group("indent"), match.group("text")
    return "\n".join(f"{indent}{name}: {text}" for name in match.group("names").split(", "))


def rewrite(text: str) -> str:
    """The docstring ``text`` with roles, literal-block markers and grouped arguments rewritten."""
    text = _LITERAL.sub(":", _ROLE.sub(_role, text))
    return _GROUPED.sub(_grouped, text)


class SphinxRoles(griffe.Extension):
    """Rewrite each docstring (see the module docstring) before it is parsed."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
