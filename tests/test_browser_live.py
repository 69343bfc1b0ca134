"""The playground's behaviour in headless Chromium against a stand-in server (issue 27).

The stand-in (:class:`tests.browser_fixtures.FakeServer`) answers the page's calls in a set
time with short tones and records every ``/api/clip`` body, so these tests check what the page
sends and plays, fast and deterministically, without a model. Each guards one finding of the
issue; every one of them fails on the page as it was before the fix (serve an old copy with
``RIFFUSION_PLAYGROUND_STATIC=DIR`` to see it).
"""

from __future__ import annotations

import os
import shutil
import time
import wave
from pathlib import Path

import pytest

from tests.browser_fixtures import FakeServer, chromium, serve, set_value, tone_wav, wait_for

PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
# RIFFUSION_UPDATE_SCREENSHOT=1 refreshes the pictures in the docs; otherwise they go to tmp.
ASSETS = Path(__file__).resolve().parents[1] / "docs" / "assets"
SCREENSHOTS = [("playground.png", 1400, 900), ("playground-phone.png", 390, 844)]


@pytest.fixture(scope="module")
def fake():
    return FakeServer()


@pytest.fixture(scope="module")
def url(fake):
    with serve(fake.app()) as address:
        yield address


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


def _open(browser, url: str, query: str) -> None:
    browser.get(f"{url}/?{query}")
    wait_for(
        browser, "return document.getElementById('seed-image').options.length > 0", 20, "seeds"
    )


def _play(browser) -> None:
    browser.execute_script("document.getElementById('play').click()")


def _wait_requests(fake: FakeServer, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while len(fake.bodies) < count:
        assert time.monotonic() < deadline, f"{len(fake.bodies)} requests, wanted {count}"
        time.sleep(0.05)


def _first_clip_after(browser, change_time: float, timeout_s: float = 20) -> dict:
    """The first clip that started playing after ``change_time`` (audio clock), once it has."""
    script = (
        "const s = window.playground; const t = arguments[0];"
        "const later = s.results.filter(r => r.startTime > t + 0.06)"
        "  .sort((a, b) => a.startTime - b.startTime);"
        "if (!later.length || s.ctx.currentTime < later[0].startTime + 0.02) return null;"
        "const r = later[0]; return {alpha: r.alpha, start: r.start, end: r.end};"
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        clip = browser.execute_script(script, change_time)
        if clip:
            return clip
        time.sleep(0.05)
    raise AssertionError("no clip started after the change")


def _prompt_now(browser, text: str) -> float:
    """Type ``text`` as the next prompt; returns the audio clock at that moment."""
    return browser.execute_script(
        "document.getElementById('prompt').value = arguments[0];"
        "document.getElementById('submit-prompt').click();"
        "return window.playground.ctx.currentTime;",
        text,
    )


def test_settings_changed_while_playing_apply_from_the_next_request(browser, url, fake):
    """Finding 1: denoising and guidance changed during play are sent from the next request."""
    fake.reset(delay_s=0.05)
    fake.clip_s = 1.0
    _open(browser, url, "prompt=lofi%20beat&seed=1&steps=2")
    _play(browser)
    wait_for(browser, "return window.playground.results.length >= 2", 20, "two clips")
    browser.execute_script(
        'document.querySelector(\'input[name="denoising"][value="0.85"]\').click()'
    )
    set_value(browser, "guidance", "3")
    sent = len(fake.bodies)
    _wait_requests(fake, sent + 5, 20)
    later = fake.bodies[sent + 1 :]  # one request may have left before the change
    inputs = [body[key] for body in later for key in ("start", "end") if body[key]]
    assert inputs and all(i["denoising"] == 0.85 and i["guidance"] == 3 for i in inputs), later


def test_no_scheduler_is_sent_unless_the_user_picks_one(browser, url, fake):
    """Finding 2: the server's default scheduler stands unless one is chosen."""
    fake.reset(delay_s=0.05)
    fake.clip_s = 1.0
    _open(browser, url, "prompt=lofi&steps=2")
    wait_for(
        browser, "return document.getElementById('scheduler').options.length > 1", 10, "schedulers"
    )
    _play(browser)
    _wait_requests(fake, 2, 20)
    assert all("scheduler" not in body for body in fake.bodies), fake.bodies
    label = browser.execute_script("return document.getElementById('scheduler').options[0].text")
    assert "dpmsolver++" in label  # says which one the server uses
    set_value(browser, "scheduler", "ddim")
    sent = len(fake.bodies)
    _wait_requests(fake, sent + 2, 20)
    assert fake.bodies[-1]["scheduler"] == "ddim"


def test_errors_stay_until_dismissed_or_the_next_success_and_name_the_field(browser, url, fake):
    """Finding 3: an error names the setting and stays; so does the upload note."""
    fake.reset(delay_s=0.05)
    fake.clip_s = 1.0
    _open(browser, url, "prompt=lofi&steps=500")
    _play(browser)
    shown = (
        "const e = document.getElementById('error');"
        "return e && !e.hidden && document.getElementById('error-text').textContent;"
    )
    text = wait_for(browser, shown, 10, "the error")
    assert text == "Steps: 500 must be an integer in [1, 200]"
    time.sleep(2.5)  # the animation loop runs meanwhile
    assert browser.execute_script(shown) == text
    assert fake.bodies == []  # checked against /health's limits before sending

    # An error only the server knows is shown with the setting's name too.
    set_value(browser, "steps", "2")
    _open(browser, url, "prompt=forbidden%20riff&steps=2")
    _play(browser)
    text = wait_for(browser, shown, 10, "the server's error")
    assert text == "Prompt: is not allowed here"
    time.sleep(2.5)
    assert browser.execute_script(shown) == text
    browser.execute_script("document.getElementById('dismiss-error').click()")
    assert not browser.execute_script(shown)
    # Shown again on the next failure, cleared by the next success.
    wait_for(browser, shown, 10, "the error again")
    _prompt_now(browser, "lofi")
    wait_for(browser, "return window.playground.results.length >= 1", 20, "a clip")
    assert not browser.execute_script(shown)


def test_upload_note_stays_while_playing(browser, url, fake, tmp_path):
    """Finding 3: the "seed image ready" note is not overwritten by the playback status."""
    fake.reset(delay_s=0.05)
    fake.clip_s = 1.0
    audio = tmp_path / "hum.wav"
    audio.write_bytes(tone_wav(0.5, 330.0))
    with wave.open(str(audio)) as check:
        assert check.getnframes() > 0
    _open(browser, url, "prompt=lofi&steps=2")
    _play(browser)
    wait_for(browser, "return window.playground.results.length >= 1", 20, "a clip")
    browser.execute_script("const b = document.getElementById('open-settings'); if (b) b.click()")
    browser.find_element("id", "seed-upload").send_keys(str(audio))
    # (The page before the fix wrote the note into the playback status line.)
    note = (
        "return (document.getElementById('notice') || document.getElementById('buffer-status'))"
        ".textContent"
    )
    ready = f"const t = {note.removeprefix('return ')}; return t.includes('ready') && t"
    text = wait_for(browser, ready, 10, "the note")
    assert "from hum.wav" in text
    time.sleep(2.0)
    assert browser.execute_script(note) == text
    assert browser.find_element("id", "seed-image").get_attribute("value").startswith("upload-")


def test_debug_table_is_bounded_and_transitioning_clears(browser, url, fake):
    """Finding 4: the last clips only, scrollable, with seed image and denoising columns;
    "Transitioning to:" is gone once the new prompt plays."""
    fake.reset(delay_s=0.01)
    fake.clip_s = 0.25
    _open(browser, url, "prompt=lofi&steps=2")
    _play(browser)
    wait_for(browser, "return window.playground.counter >= 26", 30, "26 clips")
    headers = browser.execute_script(
        "return [...document.querySelectorAll('#results th')].map(t => t.textContent)"
    )
    assert "seed image" in headers and "denoising" in headers
    rows = browser.execute_script("return document.querySelectorAll('#results tbody tr').length")
    assert rows <= 20
    browser.execute_script("document.getElementById('open-debug').click()")
    wrap = browser.execute_script(
        "const w = document.getElementById('results-wrap');"
        "return {client: w.clientHeight, scroll: w.scrollHeight, page: document.body.scrollHeight,"
        " overflow: getComputedStyle(w).overflowY}"
    )
    assert wrap["overflow"] == "auto" and wrap["client"] < 450 and wrap["page"] < 1600, wrap
    cells = browser.execute_script(
        "const r = document.querySelector('#results tbody tr:last-child');"
        "return [...r.cells].map(c => c.textContent)"
    )
    assert cells[-2:] == ["og_beat", "0.75"]

    _prompt_now(browser, "jazz piano")
    reached = (
        "const s = window.playground; const now = s.ctx.currentTime;"
        "const p = s.results.find(r => r.startTime <= now && now < r.startTime + r.duration);"
        "return p && p.alpha === 1 && p.end && p.end.prompt === 'jazz piano';"
    )
    wait_for(browser, reached, 20, "the new prompt reached")
    time.sleep(0.15)
    text = browser.execute_script("return document.getElementById('up-next').textContent")
    assert "Transitioning" not in text, text
    assert browser.execute_script("return document.getElementById('now-prompt').textContent") == (
        "jazz piano"
    )


def test_fits_a_390_px_phone_without_emoji_fonts(browser, url, fake):
    """Finding 5: no sideways scrolling at 390 px; the dice is an inline SVG."""
    fake.reset(delay_s=0.05)
    fake.clip_s = 1.0
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    try:
        _open(browser, url, "prompt=a%20rather%20long%20prompt%20about%20funky%20synths&steps=2")
        width = "return [window.innerWidth, document.documentElement.scrollWidth]"
        inner, scroll = browser.execute_script(width)
        assert inner == 390 and scroll <= 390, (inner, scroll)
        _play(browser)
        wait_for(browser, "return window.playground.results.length >= 2", 20, "clips")
        time.sleep(0.2)
        assert browser.execute_script(width)[1] <= 390
        for panel in ("open-settings", "open-debug"):
            browser.execute_script(f"document.getElementById('{panel}').click()")
            assert browser.execute_script(width)[1] <= 390, panel
        assert browser.execute_script(
            "return document.querySelector('#random-prompt svg') !== null"
        )
        emoji = browser.execute_script(
            "return [...document.body.textContent].filter(c => c.codePointAt(0) >= 0x1F000)"
        )
        assert emoji == []
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.mark.parametrize("delay_s", [0.05, 1.3], ids=["fast-device", "slow-device"])
def test_changes_remake_the_clips_made_ahead(browser, url, fake, delay_s):
    """B: a new prompt or setting drops the clips made ahead (and the one being made), so
    the next clip to play already moves toward it, whether the device keeps up or not."""
    fake.reset(delay_s=delay_s)
    fake.clip_s = 1.0
    _open(browser, url, "prompt=lofi&steps=2")
    _play(browser)
    if delay_s < 1:  # a full buffer: three clips made ahead of the one playing
        ready = (
            "const s = window.playground; const now = s.ctx.currentTime;"
            "return s.ctx.state === 'running' && now > 0.3 &&"
            " s.results.filter(r => r.startTime > now + 0.1).length >= 2"
        )
    else:  # slower than real time: one clip playing, the next one being made
        ready = (
            "const s = window.playground; return s.ctx.state === 'running' &&"
            " s.results.length >= 1 && s.ctx.currentTime > s.results[0].startTime + 0.2"
        )
    wait_for(browser, ready, 20, "music playing")
    changed_at = _prompt_now(browser, "jazz piano")
    clip = _first_clip_after(browser, changed_at)
    assert clip["end"] and clip["end"]["prompt"] == "jazz piano", clip

    changed_at = browser.execute_script(
        'document.querySelector(\'input[name="denoising"][value="0.95"]\').click();'
        "return window.playground.ctx.currentTime;"
    )
    clip = _first_clip_after(browser, changed_at)
    assert clip["start"]["denoising"] == 0.95, clip
    if delay_s < 1:
        assert browser.execute_script("return window.playground.discarded") >= 2


def test_stage_screenshots(browser, url, fake, tmp_path):
    """The stage at 1400 and 390 px wide, with a history of prompts: written to docs/assets
    with ``RIFFUSION_UPDATE_SCREENSHOT=1`` (else to a temporary folder)."""
    fake.reset(delay_s=0.02)
    fake.clip_s = 0.5
    browser.set_window_size(1400, 900)
    try:
        _open(browser, url, "prompt=lofi%20hip%20hop&seed=5&steps=2")
        _play(browser)
        now = "return document.getElementById('now-prompt').textContent === arguments[0]"
        for prompt in (
            "lofi hip hop",
            "church bells on a sunday",
            "jazz piano trio",
            "funky synth solo",
        ):
            if prompt != "lofi hip hop":
                _prompt_now(browser, prompt)
            deadline = time.monotonic() + 20
            while not browser.execute_script(now, prompt):
                assert time.monotonic() < deadline, f"{prompt} never played"
                time.sleep(0.05)
        fake.clip_s = 5.0  # long clips from here: the picture holds still
        _prompt_now(browser, "ambient rain on a tin roof")
        browser.execute_script("document.getElementById('prompt').value = ''")
        wait_for(
            browser,
            "return document.getElementById('up-next').textContent.startsWith('Transitioning')",
            10,
            "the transition",
        )
        browser.execute_script("document.activeElement.blur()")
        for name, width, height in SCREENSHOTS:
            if width < 600:
                phone = {**PHONE, "width": width, "height": height}
                browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", phone)
            time.sleep(0.4)
            shot = tmp_path / name
            assert browser.save_screenshot(str(shot))
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if os.environ.get("RIFFUSION_UPDATE_SCREENSHOT") == "1":
                shutil.copyfile(shot, ASSETS / name)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        browser.set_window_size(1200, 1500)


CONTRAST = """
const parse = (c) => {
  const p = c.match(/rgba?\\(([^)]+)\\)/)[1].split(",").map(Number);
  return { rgb: p.slice(0, 3), a: p.length > 3 ? p[3] : 1 };
};
const luminance = ([r, g, b]) => {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
};
const background = (element) => {
  for (let e = element; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor);
    if (c.a > 0.9) return c.rgb;
  }
  return parse(getComputedStyle(document.documentElement).backgroundColor).rgb;
};
const low = [];
for (const e of document.querySelectorAll("body *")) {
  if (!e.getClientRects().length || e.closest("[hidden]") || e.tagName === "CANVAS") continue;
  const own = [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
  if (!own) continue;
  const a = luminance(parse(getComputedStyle(e).color).rgb), b = luminance(background(e));
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) low.push(`${e.tagName}#${e.id}.${e.className}: ${ratio.toFixed(2)}`);
}
return low;
"""

UNLABELLED = """
return [...document.querySelectorAll("input, select, button")].filter((e) => !(
  (e.labels && e.labels.length) || e.getAttribute("aria-label") ||
  e.getAttribute("aria-labelledby") || (e.tagName === "BUTTON" && e.textContent.trim())
)).map((e) => e.id || e.outerHTML.slice(0, 60));
"""


def test_shortcuts_contrast_labels_and_reduced_motion(browser, url, fake):
    """C: keyboard shortcuts, text contrast of at least 4.5:1 in every view, a name for every
    control, no transitions when the system asks for reduced motion."""
    from selenium.webdriver.common.keys import Keys

    fake.reset(delay_s=0.05)
    fake.clip_s = 1.0
    _open(browser, url, "prompt=lofi&steps=2")
    assert browser.execute_script(UNLABELLED) == []
    body = browser.find_element("tag name", "body")
    is_open = "return document.getElementById(arguments[0]).open"

    body.send_keys("?")
    assert browser.execute_script(is_open, "help-dialog")
    assert browser.execute_script(CONTRAST) == []
    body.send_keys(Keys.ESCAPE)
    assert not browser.execute_script(is_open, "help-dialog")

    body.send_keys(" ")
    wait_for(browser, "return window.playground.results.length >= 1", 20, "a clip")
    assert browser.find_element("id", "play").get_attribute("aria-pressed") == "true"
    assert browser.execute_script(CONTRAST) == []
    body.send_keys("s")
    assert browser.execute_script(is_open, "share-dialog")
    assert browser.execute_script(CONTRAST) == []
    body.send_keys(Keys.ESCAPE)

    body.send_keys("r")
    wait_for(
        browser,
        "return document.getElementById('prompt').value === 'church bells on sunday'",
        10,
        "a random prompt",
    )
    for key, panel in ((",", "settings"), ("d", "debug")):
        browser.find_element("tag name", "body").send_keys(key)
        assert not browser.find_element("id", panel).get_attribute("hidden"), panel
        assert browser.execute_script(CONTRAST) == [], panel
        browser.execute_script("document.activeElement.blur()")
    browser.find_element("tag name", "body").send_keys(Keys.ESCAPE)
    assert browser.find_element("id", "debug").get_attribute("hidden")

    duration = "return getComputedStyle(document.getElementById('now-prompt')).transitionDuration"
    assert browser.execute_script(duration) != "0s"
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-reduced-motion", "value": "reduce"}]},
    )
    try:
        assert browser.execute_script(duration) == "0s"
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
