"""Shared pieces of the browser tests: headless Chromium, a uvicorn server in a thread, and a
stand-in for ``riffusion serve`` that answers in a set time and records what the page sends.

``RIFFUSION_PLAYGROUND_STATIC=DIR`` serves the page from DIR instead of the package's
``riffusion/server/static``: point it at an older copy of the page to see which tests that
page fails (``git show HEAD~1:riffusion/server/static/playground.js`` and so on).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import os
import shutil
import socket
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# CI sets it: a missing browser then fails instead of skipping.
REQUIRE_BROWSER = "RIFFUSION_REQUIRE_BROWSER"
STATIC_OVERRIDE = "RIFFUSION_PLAYGROUND_STATIC"
SAMPLE_RATE = 44100
# A 1×1 PNG: the stand-in's spectrogram picture.
PIXEL_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9Q"
    "DwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def static_dir() -> Path:
    """The folder the page is served from (the package's, unless overridden for a check)."""
    from riffusion.server.routes_pages import STATIC_DIR

    override = os.environ.get(STATIC_OVERRIDE)
    return Path(override) if override else STATIC_DIR


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yields ``http://127.0.0.1:PORT``."""
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def chromium(width: int = 1200, height: int = 1500) -> Iterator[Any]:
    """Headless Chromium through chromedriver; skips (or fails under
    ``RIFFUSION_REQUIRE_BROWSER=1``) when either is missing."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing:
        reason = (
            f"headless Chromium not found ({', '.join(missing)}): "
            "apt-get install chromium chromium-driver to run the playground's browser test"
        )
        if os.environ.get(REQUIRE_BROWSER) == "1":
            pytest.fail(f"{reason} ({REQUIRE_BROWSER}=1 forbids skipping it)")
        pytest.skip(reason)
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, script: str, timeout_s: float, what: str) -> Any:
    """Run ``script`` until it returns something truthy; on timeout, fail with the page state."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    state = driver.execute_script(
        "const s = window.playground || {}; return JSON.stringify({t: s.ctx && s.ctx.currentTime, "
        "state: s.ctx && s.ctx.state, n: (s.results || []).length, err: s.lastError, "
        "status: (document.getElementById('buffer-status') || {}).textContent, "
        "error: (document.getElementById('error-text') || {}).textContent})"
    )
    raise AssertionError(f"timed out waiting for {what}; page state {state}")


def set_value(driver: Any, element_id: str, value: str) -> None:
    """Set a settings field as a user would (value, then ``input`` and ``change`` events)."""
    driver.execute_script(
        "const e = document.getElementById(arguments[0]); e.value = arguments[1];"
        "e.dispatchEvent(new Event('input', {bubbles: true}));"
        "e.dispatchEvent(new Event('change', {bubbles: true}));",
        element_id,
        value,
    )


@functools.cache
def spectrogram_png(variant: int) -> str:
    """A PNG data URL that looks like a spectrogram: harmonic bands over noise, varied by
    ``variant`` (seeded, so every run draws the same picture)."""
    from PIL import Image

    rng = np.random.default_rng(variant)
    rows, columns = 256, 256
    height = np.arange(rows)[:, None]
    time_s = np.arange(columns)[None, :] / columns
    picture = rng.random((rows, columns)) * 40
    fundamental = 14 + 3 * variant
    for k in range(1, 12):
        row = rows - 1 - k * fundamental
        if row < 0:
            break
        pulse = 0.55 + 0.45 * np.cos(2 * np.pi * (4 * time_s + 0.1 * k * variant)) ** 8
        picture += 215 / k**0.5 * np.exp(-((height - row) ** 2) / 4.0) * pulse
    picture += 120 * (rng.random((1, columns)) < 0.08) * np.exp(-(rows - 1 - height) / 60)
    image = Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def tone_wav(duration_s: float, frequency_hz: float) -> bytes:
    """A 16-bit mono WAV of a sine tone."""
    time_s = np.arange(int(duration_s * SAMPLE_RATE)) / SAMPLE_RATE
    samples = (0.2 * np.sin(2 * np.pi * frequency_hz * time_s) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


class FakeServer:
    """A stand-in for ``riffusion serve``: the same routes the page calls, answered after
    ``delay_s`` with a ``clip_s`` tone, recording every ``/api/clip`` body.

    Args:
        clip_s: duration of every clip (s).
        delay_s: time to "generate" a clip (s); change it between steps of a test.
    """

    def __init__(self, *, clip_s: float = 1.0, delay_s: float = 0.05) -> None:
        self.clip_s = clip_s
        self.delay_s = delay_s
        self.bodies: list[dict[str, Any]] = []
        self.cancelled = 0
        self.seeds = [
            {"id": "og_beat", "description": "a beat", "thumbnail": PIXEL_PNG},
            {"id": "vibes", "description": "vibes", "thumbnail": PIXEL_PNG},
        ]

    def reset(self, *, delay_s: float | None = None) -> None:
        self.bodies.clear()
        self.cancelled = 0
        if delay_s is not None:
            self.delay_s = delay_s

    def app(self) -> Any:
        app = FastAPI()
        folder = static_dir()

        @app.get("/")
        async def page() -> Any:
            return FileResponse(folder / "index.html", media_type="text/html")

        app.mount("/static", StaticFiles(directory=folder), name="static")

        @app.get("/health")
        async def health() -> dict[str, Any]:
            return {
                "status": "ok",
                "version": "fake",
                "model": "stand-in",
                "device": "fake",
                "dtype": "float32",
                "scheduler": "dpmsolver++",
                "schedulers": ["default", "ddim", "dpmsolver++"],
                "queue_depth": 0,
                "max_queue": 8,
                "seconds_per_clip": self.delay_s,
                "audio_format": "wav",
                "limits": {
                    "max_num_inference_steps": 200,
                    "max_prompt_chars": 1000,
                    "max_body_bytes": 65536,
                    "max_upload_bytes": 16 << 20,
                },
            }

        @app.get("/seed_images")
        async def seed_images() -> list[dict[str, str]]:
            return self.seeds

        @app.get("/random_prompt")
        async def random_prompt() -> dict[str, str]:
            return {"prompt": "church bells on sunday"}

        @app.post("/api/seed_image")
        async def seed_image(request: Request) -> dict[str, str]:
            await request.body()
            upload = f"upload-{len(self.seeds)}"
            self.seeds.append({"id": upload, "description": "your audio", "thumbnail": PIXEL_PNG})
            return {"id": upload}

        @app.post("/api/clip")
        async def clip(request: Request) -> Any:
            body = await request.json()
            self.bodies.append(body)
            steps = body.get("num_inference_steps")
            if not isinstance(steps, int) or not 1 <= steps <= 200:
                return JSONResponse(
                    {
                        "error": f"{steps} must be an integer in [1, 200]",
                        "field": "num_inference_steps",
                    },
                    status_code=400,
                )
            if "forbidden" in body["start"]["prompt"]:
                return JSONResponse(
                    {"error": "is not allowed here", "field": "start.prompt"}, status_code=400
                )
            await asyncio.sleep(self.delay_s)
            if await request.is_disconnected():
                self.cancelled += 1
            index = len(self.bodies) - 1
            root = str(request.scope.get("root_path", "")).rstrip("/")
            base = f"{root}/api/clips/{index}"
            recipe = {
                "alpha": body["alpha"],
                "start": body["start"],
                "end": body["end"],
                "num_inference_steps": steps,
                "seed_image": body["seed_image_id"],
            }
            return {
                "id": str(index),
                "image": spectrogram_png(index % 5),
                "duration_s": self.clip_s,
                "recipe": recipe,
                "recipe_url": f"riffusion:1:fake{index}",
                "debug": {"timings_s": {"total": self.delay_s}},
                "device": "fake",
                "files": {
                    key: f"{base}/{name}"
                    for key, name in [
                        ("wav", "audio.wav"),
                        ("mp3", "audio.mp3"),
                        ("png", "image.png"),
                        ("recipe", "recipe.json"),
                    ]
                },
            }

        @app.get("/api/clips/{index}/audio.wav")
        async def audio(index: int) -> Response:
            return Response(
                tone_wav(self.clip_s, 220.0 + 20 * (index % 10)), media_type="audio/wav"
            )

        return app
