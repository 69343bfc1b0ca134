"""Fixtures the server tests share: the tiny model's Riffuser and a TestClient on its app.

``tests/conftest.py`` loads this module as a plugin, so every test module can ask for them; both
are module-scoped, so each module gets its own server, worker and clip store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.diffusion_fixtures import single_thread_riffuser

LOCAL = "http://127.0.0.1:3013"
"""The Host the server answers by default (not TestClient's ``testserver``)."""

ATTACKER = "https://attacker.example"
"""A foreign origin the server must refuse."""


@pytest.fixture(scope="module")
def riffuser() -> Iterator[Any]:
    """The tiny model on the CPU, one torch thread (bitwise reproducible clips)."""
    with single_thread_riffuser() as riffuser:
        yield riffuser


@pytest.fixture(scope="module")
def client(riffuser: Any) -> Iterator[Any]:
    """A TestClient on ``create_app(riffuser)`` with its defaults, at :data:`LOCAL`."""
    from fastapi.testclient import TestClient

    from riffusion.server import create_app

    with TestClient(create_app(riffuser), base_url=LOCAL) as client:
        yield client
