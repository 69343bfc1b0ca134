"""The README's Python snippets run as written, in order, in an empty folder (offline).

Blocks whose first line is ``# needs: real checkpoint`` are only compiled: they download the
4 GB model. Everything else runs, so a README that rots fails this test.
"""

from __future__ import annotations

import pathlib
import re

import torch

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
REAL_MODEL = "# needs: real checkpoint"


def python_blocks(text: str) -> list[str]:
    """The ```python fenced blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_blocks_are_found():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) == 4
    assert sum(block.startswith(REAL_MODEL) for block in blocks) == 1


def test_readme_snippets_run_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    namespace: dict = {"__name__": "__readme__"}
    try:
        for number, block in enumerate(python_blocks(README.read_text(encoding="utf-8"))):
            code = compile(block, f"README.md block {number + 1}", "exec")
            if block.startswith(REAL_MODEL):
                continue
            exec(code, namespace)  # the README is ours
    finally:
        torch.set_num_threads(before)
    printed = capsys.readouterr().out
    assert "5.12 44100" in printed
    assert re.search(r"text_to_audio: 5\.11 s of audio, dpm\+\+ scheduler, 4 steps", printed)
    for name in ("loop.wav", "loop.png", "loop_roundtrip.wav", "tiny.wav"):
        assert (tmp_path / name).stat().st_size > 1000, name
    from riffusion import Audio

    tiny = Audio.load(tmp_path / "tiny.wav")
    assert tiny.num_samples == 225351 and tiny.peak > 0.5


def test_no_links_to_other_projects():
    # github.com/riffusion/riffusion is the older project PyPI's "riffusion" installs.
    for path in ("pyproject.toml", "mkdocs.yml", "README.md"):
        text = (README.parent / path).read_text(encoding="utf-8")
        assert "github.com/riffusion/riffusion" not in text.replace("riffusion-app", ""), path


def test_every_install_command_installs_the_clone_not_pypis_riffusion():
    """Issue 27, finding 8: PyPI's ``riffusion`` is an unrelated 2022 project, so no ``pip
    install`` the README or the docs show may name it (``riffusion``, ``"riffusion[server]"``);
    ours installs from the clone (``-e .`` / ``-e ".[extra]"``)."""
    paths = [README, *sorted((README.parent / "docs").glob("*.md"))]
    commands = [
        (path.name, match.group(0))
        for path in paths
        for match in re.finditer(r"pip install[^`\n#]*", path.read_text(encoding="utf-8"))
    ]
    assert len(commands) > 10
    # riffusion, "riffusion[server]", riffusion==0.0.5: a bare requirement of that name.
    names_pypi = re.compile(
        r"""(?:^|\s)["']?riffusion(?:\[[^\]]*\])?(?:[=<>~!]\S*)?["']?(?:\s|$)"""
    )
    bad = [(name, command) for name, command in commands if names_pypi.search(command)]
    assert not bad, bad
    assert any('pip install -e ".[dev]"' in command for _, command in commands)
