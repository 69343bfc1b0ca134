"""A ``riffusion serve`` subprocess on the tiny random model, for the server benchmarks.

``bench/serve.py`` and ``bench/hostile.py`` start one with :func:`start` and read its memory from
``/proc`` (:func:`rss_mib`, :func:`peak_rss_mib`), so the server's numbers are its own.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from riffusion.testing import make_tiny_model

__all__ = ["free_port", "peak_rss_mib", "rss_mib", "start", "stop"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _status_field(pid: int, name: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {name} for process {pid}")


def rss_mib(pid: int) -> float:
    """Resident memory of a process (in MiB), from /proc."""
    return _status_field(pid, "VmRSS")


def peak_rss_mib(pid: int) -> float:
    """The highest resident memory a process has had (in MiB), from /proc."""
    return _status_field(pid, "VmHWM")


def start(*, max_queue: int, threads: int = 1) -> tuple[subprocess.Popen, str, dict[str, Any]]:
    """Build the tiny model, start ``riffusion serve`` on a free port, wait for ``/health``.

    Args:
        max_queue: the server's ``--max-queue``.
        threads: torch threads in the server (``OMP_NUM_THREADS``).

    Returns:
        ``(process, base URL, the /health answer)``.
    """
    folder = tempfile.mkdtemp(prefix="riffusion-bench-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    model = make_tiny_model(Path(folder) / "tiny")
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "riffusion",
        "serve",
        "--model",
        str(model),
        "--device",
        "cpu",
        "--port",
        str(port),
        "--max-queue",
        str(max_queue),
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    server = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                return server, base, json.load(response)
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                stop(server)
                raise SystemExit("the server did not start") from None
            time.sleep(0.25)


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
