"""The playground in a real browser: headless Chromium against a real uvicorn server.

Drives Debian's ``chromium`` through ``chromedriver`` (selenium), with the tiny model and two
denoising steps per clip. Without Chromium and its driver the test skips with a line saying how to
enable it, so the README's ``pytest`` passes on a machine with nothing extra installed. CI installs
both (``.ci/run``) and sets ``RIFFUSION_REQUIRE_BROWSER=1``, which turns a missing browser into a
failure: there the test can not silently stop running.

The second test mounts the app under ``/riff`` in a parent app. The page's behaviour in detail
(settings, errors, live changes, phone width) is tested against a stand-in server in
``test_browser_live.py``, which also takes the docs' screenshots.
"""

from __future__ import annotations

import contextlib
import itertools
import urllib.parse
import urllib.request

import pytest
import torch

# Plain imports, not importorskip: the [dev] extra installs both, and this test must not skip.
import uvicorn  # noqa: F401
from selenium import webdriver  # noqa: F401

from tests.browser_fixtures import chromium, serve, static_dir, wait_for
from tests.diffusion_fixtures import tiny_model_dir

STEPS = 2


@pytest.fixture(scope="module")
def riffuser():
    from riffusion import Riffuser

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    riffuser = Riffuser.from_pretrained(tiny_model_dir(), device="cpu")
    riffuser.pipeline.set_progress_bar_config(disable=True)
    yield riffuser
    torch.set_num_threads(before)


@contextlib.contextmanager
def _page_from(folder):
    """Serve the page from ``folder`` while in the block (``static_dir()`` is the package's
    folder unless ``RIFFUSION_PLAYGROUND_STATIC`` overrides it for a check)."""
    from riffusion.server import routes_pages

    saved = routes_pages.STATIC_DIR
    routes_pages.STATIC_DIR = folder
    try:
        yield
    finally:
        routes_pages.STATIC_DIR = saved


@pytest.fixture(scope="module")
def server(riffuser):
    from riffusion.server import create_app

    with _page_from(static_dir()), serve(create_app(riffuser)) as url:
        yield url


@pytest.fixture(scope="module")
def mounted(riffuser):
    """The app mounted under ``/riff`` in a parent app, as an embedding would."""
    from fastapi import FastAPI

    from riffusion.server import create_app

    with _page_from(static_dir()):
        sub = create_app(riffuser)

        @contextlib.asynccontextmanager
        async def lifespan(parent):
            async with sub.router.lifespan_context(sub):  # the parent runs the app's lifespan
                yield

        parent = FastAPI(lifespan=lifespan)

        @parent.get("/")
        async def home():
            return {"hello": "the parent app"}

        parent.mount("/riff", sub)
        with serve(parent) as url:
            yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


def _wait(driver, script: str, timeout_s: float, what: str):
    return wait_for(driver, script, timeout_s, what)


def test_play_schedules_clips_back_to_back_and_share_link_reopens(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    # Buffer three clips before the clock starts: this shared CPU is slower than real time.
    browser.get(f"{server}/?steps={STEPS}&prebuffer=3")
    _wait(browser, "return document.getElementById('seed-image').options.length > 0", 30, "seeds")
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("funky bass groove")
    browser.find_element(By.ID, "open-settings").click()
    seed = browser.find_element(By.ID, "seed")
    seed.clear()
    seed.send_keys("7")
    browser.find_element(By.ID, "open-settings").click()  # closed again
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
    # (The debug panel is closed: its text is read as textContent.)
    cells = [c.get_attribute("textContent") for c in rows[1].find_elements(By.TAG_NAME, "td")]
    assert cells[1] == "0.25" and "funky bass groove (8)" in cells[3]
    assert cells[-2:] == ["og_beat", "0.75"]  # seed image and denoising

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


def test_page_works_mounted_under_a_sub_path(browser, mounted, tmp_path):
    """Issue 27, finding 6: under ``parent.mount("/riff", ...)`` the page loads its CSS and JS,
    calls the API under the prefix and plays; ``/riff`` redirects to ``/riff/``."""
    browser.get(f"{mounted}/riff?steps={STEPS}&prompt=church%20bells&seed=3")
    assert urllib.parse.urlsplit(browser.current_url).path == "/riff/"
    _wait(browser, "return document.getElementById('seed-image').options.length > 0", 30, "seeds")
    # The stylesheet applied (the page's dark background) and the server's health shown.
    background = browser.execute_script(
        "return getComputedStyle(document.body.parentElement).backgroundColor"
    )
    assert background == "rgb(18, 15, 24)"
    _wait(
        browser, "return document.getElementById('health').textContent.includes('ok')", 10, "health"
    )
    browser.find_element("id", "play").click()
    _wait(
        browser,
        "const s = window.playground; return s.results.length >= 2 && s.ctx.state === 'running'"
        " && s.ctx.currentTime > s.results[0].startTime + 0.5",
        120,
        "two clips playing under /riff",
    )
    files = browser.execute_script("return window.playground.results[0].files")
    assert all(url.startswith("/riff/api/clips/") for url in files.values()), files
    share = browser.find_element("id", "share-link").get_attribute("value")
    assert share.startswith(f"{mounted}/riff/?prompt=church+bells")
    # A second prompt goes up next.
    prompt = browser.find_element("id", "prompt")
    prompt.clear()
    prompt.send_keys("jazz piano trio\n")
    _wait(
        browser,
        "return document.getElementById('up-next').textContent.includes('jazz piano trio')",
        10,
        "the new prompt up next",
    )


def test_api_docs_render_offline_under_the_mount(browser, mounted):
    """Issue 27, finding 7: ``/docs`` leads to Swagger UI, which renders with the server's own
    files only (this machine reaches no CDN) and shows a request body for ``POST /api/clip``."""
    browser.get(f"{mounted}/riff/docs")
    assert urllib.parse.urlsplit(browser.current_url).path == "/riff/api/docs"
    operations = _wait(
        browser,
        "const ops = document.querySelectorAll('.opblock'); return ops.length >= 10 && ops.length",
        30,
        "Swagger UI's operations",
    )
    assert operations >= 10
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(entry => entry.name)"
    )
    assert loaded and all(url.startswith(f"{mounted}/riff/") for url in loaded), loaded
    browser.execute_script(
        "document.querySelector('.opblock-post [data-path=\"/api/clip\"]')"
        ".closest('.opblock-summary').querySelector('button').click()"
    )
    body = _wait(
        browser,
        "const b = document.querySelector('.opblock.is-open .opblock-section-request-body');"
        " return b && b.textContent",
        10,
        "the request body of POST /api/clip",
    )
    assert "application/json" in body
