"""The playground in a real browser: headless Chromium against a real uvicorn server.

Drives Debian's ``chromium`` through ``chromedriver`` (selenium), with the tiny model and two
denoising steps per clip. Without Chromium and its driver the test skips with a line saying how to
enable it, so the README's ``pytest`` passes on a machine with nothing extra installed. CI installs
both (``.ci/run``) and sets ``RIFFUSION_REQUIRE_BROWSER=1``, which turns a missing browser into a
failure: there the test can not silently stop running.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import torch

# Plain imports, not importorskip: the [dev] extra installs both, and this test must not skip.
import uvicorn
from selenium import webdriver

from tests.diffusion_fixtures import tiny_model_dir

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# RIFFUSION_UPDATE_SCREENSHOT=1 refreshes the picture in the docs; otherwise it goes to tmp.
# CI sets it: a missing browser then fails instead of skipping.
REQUIRE_BROWSER = "RIFFUSION_REQUIRE_BROWSER"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "assets" / "playground.png"
STEPS = 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    from riffusion import Riffuser
    from riffusion.server import create_app

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    riffuser = Riffuser.from_pretrained(tiny_model_dir(), device="cpu")
    riffuser.pipeline.set_progress_bar_config(disable=True)
    port = _free_port()
    config = uvicorn.Config(create_app(riffuser), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def browser():
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
        "--window-size=1200,1500",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def _wait(driver, script: str, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.2)
    state = driver.execute_script(
        "const s = window.playground; return JSON.stringify({t: s.ctx && s.ctx.currentTime, "
        "state: s.ctx && s.ctx.state, n: s.results.length, err: s.lastError, "
        "status: document.getElementById('buffer-status').textContent})"
    )
    raise AssertionError(f"timed out waiting for {what}; page state {state}")


def test_play_schedules_clips_back_to_back_and_share_link_reopens(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    # Buffer three clips before the clock starts: this shared CPU is slower than real time.
    browser.get(f"{server}/?steps={STEPS}&prebuffer=3")
    _wait(browser, "return document.getElementById('seed-image').options.length > 0", 30, "seeds")
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("funky bass groove")
    seed = browser.find_element(By.ID, "seed")
    seed.clear()
    seed.send_keys("7")
    browser.find_element(By.ID, "play").click()

    # Three clips generated, the audio clock past the first clip's end.
    _wait(
        browser,
        "const s = window.playground; return s.results.length >= 3 && s.ctx.currentTime > "
        "s.results[0].startTime + s.results[0].duration + 0.2;",
        180,
        "three clips and the clock past the first one",
    )
    results = browser.execute_script(
        "return window.playground.results.map(r => ({counter: r.counter, alpha: r.alpha, "
        "start: r.start, end: r.end, startTime: r.startTime, duration: r.duration}));"
    )
    first = results[0]
    assert first["start"]["prompt"] == "funky bass groove" and first["start"]["seed"] == 7
    assert first["end"] is None and first["alpha"] == 0
    # The web app's schedule: then the seed walk to seed 8 at alpha 0.25, 0.5, ...
    assert [r["alpha"] for r in results[1:3]] == [0.25, 0.5]
    assert all(r["end"]["seed"] == 8 and r["start"]["seed"] == 7 for r in results[1:3])
    # Back to back on the Web Audio clock: each clip starts where the previous one ends.
    durations = [r["duration"] for r in results]
    assert all(abs(d - durations[0]) < 1e-6 and d > 5.0 for d in durations)
    back_to_back = [
        abs(later["startTime"] - (earlier["startTime"] + earlier["duration"])) < 1e-6
        for earlier, later in itertools.pairwise(results)
    ]
    assert back_to_back[:2] == [True, True], results
    clock = browser.execute_script("return window.playground.ctx.currentTime")
    assert clock > first["startTime"] + first["duration"]

    # The debug panel lists every clip with its alpha.
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    listed = {
        int(r.get_attribute("data-counter")): float(r.get_attribute("data-alpha")) for r in rows
    }
    for r in results:
        assert listed[r["counter"]] == r["alpha"]
    cells = rows[1].find_elements(By.TAG_NAME, "td")
    assert cells[1].text == "0.25" and "funky bass groove (8)" in cells[3].text
    screenshot = tmp_path / "playground.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("RIFFUSION_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)

    # Share link of the clip playing now (start prompt/seed of its transition) reopens them.
    share = _wait(browser, "return document.getElementById('share-link').value", 20, "share link")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(share).query)
    assert query["prompt"] == ["funky bass groove"]
    assert set(query) == {"prompt", "seed", "denoising", "seedImageId"}
    exact = browser.find_element(By.ID, "exact-link").get_attribute("value")
    assert "recipe=riffusion%3A1%3A" in exact
    browser.get(share)
    _wait(browser, "return document.getElementById('seed-image').options.length > 0", 30, "page")
    assert browser.find_element(By.ID, "prompt").get_attribute("value") == "funky bass groove"
    assert browser.find_element(By.ID, "seed").get_attribute("value") == query["seed"][0]
    assert browser.find_element(By.ID, "seed-image").get_attribute("value") == "og_beat"
    # The page the browser got is the one this package ships.
    with urllib.request.urlopen(f"{server}/") as page:
        assert b"playground.js" in page.read()
