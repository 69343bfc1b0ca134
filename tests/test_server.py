"""The HTTP API (``riffusion serve``): the web app's contract, bad input, queue and cancellation.

Runs the real FastAPI app in-process (FastAPI's TestClient, or the raw ASGI interface where a
client disconnect must be simulated) on the tiny model with two scheduler steps.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile
from fastapi.testclient import TestClient
from PIL import Image

from riffusion import PromptInput
from riffusion.inputs import MAX_NUM_INFERENCE_STEPS, MAX_PROMPT_CHARS
from riffusion.server import create_app
from riffusion.server.media import image_bytes
from riffusion.testing import web_app_request
from tests.diffusion_fixtures import tiny_model_dir
from tests.server_fixtures import LOCAL

STEPS = 2


def _body(**changes):
    return web_app_request(**{"num_inference_steps": STEPS, **changes})


def _decode(data_url: str, mime: str) -> bytes:
    prefix = f"data:{mime};base64,"
    assert data_url.startswith(prefix)
    return base64.b64decode(data_url[len(prefix) :], validate=True)


def _jpeg_of(image: Image.Image) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image_bytes(image, "JPEG"))))


# ------------------------------------------------------------------------- the contract
def test_run_inference_answers_the_web_apps_shapes_and_the_riffuse_generation(client, riffuser):
    response = client.post("/run_inference/", json=_body())
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"image", "audio", "duration_s"}
    assert isinstance(answer["duration_s"], float)
    image = Image.open(io.BytesIO(_decode(answer["image"], "image/jpeg")))
    assert image.format == "JPEG" and image.size == (512, 512) and image.mode == "RGB"
    mp3 = _decode(answer["audio"], "audio/mpeg")
    assert soundfile.info(io.BytesIO(mp3)).format == "MP3"
    decoded, rate = soundfile.read(io.BytesIO(mp3), dtype="float32")
    assert rate == riffuser.params.sample_rate
    # libsndfile trims the encoder delay; allow one MPEG frame (1152 samples) of padding.
    assert abs(len(decoded) / rate - answer["duration_s"]) <= 1152 / rate
    assert decoded.std() > 1e-3  # sound, not silence

    # The same generation as Riffuser.riffuse with the same inputs.
    body = _body()
    clip = riffuser.riffuse(
        PromptInput(**body["start"]),
        PromptInput(**body["end"]),
        0.25,
        num_inference_steps=STEPS,
        seed_image="og_beat",
    )
    assert answer["duration_s"] == pytest.approx(clip.duration_s, abs=1e-9)
    np.testing.assert_array_equal(np.asarray(image), _jpeg_of(clip.image))
    assert "generate;dur=" in response.headers["server-timing"]


@pytest.mark.parametrize("alpha, side", [(0, "start"), (1, "end")])
def test_alpha_ends_equal_the_single_prompt_clips(client, riffuser, alpha, side):
    body = _body(alpha=alpha)
    answer = client.post("/run_inference/", json=body).json()
    single = riffuser.riffuse(
        PromptInput(**body[side]), num_inference_steps=STEPS, seed_image="og_beat"
    )
    got = np.asarray(Image.open(io.BytesIO(_decode(answer["image"], "image/jpeg"))))
    np.testing.assert_array_equal(got, _jpeg_of(single.image))


def test_mask_id_missing_null_and_empty_all_mean_no_mask_and_a_mask_changes_the_clip(client):
    body = _body(alpha=0)
    del body["mask_image_id"]
    missing = client.post("/run_inference/", json=body).json()["image"]
    empty = client.post("/run_inference/", json=_body(alpha=0, mask_image_id="")).json()["image"]
    assert missing == empty
    masked = client.post("/run_inference/", json=_body(alpha=0, mask_image_id="keep_first_half"))
    assert masked.status_code == 200 and masked.json()["image"] != missing


def test_api_clip_returns_recipe_debug_and_files_and_the_recipe_renders_the_same(client):
    response = client.post(
        "/api/clip", json={"start": {"prompt": "ambient pad", "seed": 3}, "num_inference_steps": 2}
    )
    assert response.status_code == 200, response.text
    clip = response.json()
    assert clip["recipe"]["start"]["prompt"] == "ambient pad" and clip["recipe"]["alpha"] == 0
    assert clip["recipe_url"].startswith("riffusion:1:")
    timings = clip["debug"]["timings_s"]
    assert {"unet", "vae_decode", "audio_decode", "total", "queue", "encode"} <= set(timings)
    assert clip["debug"]["steps_run"] == len(clip["debug"]["timesteps"][0])
    assert clip["device"] == "cpu"
    wav = client.get(clip["files"]["wav"])
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    samples, rate = soundfile.read(io.BytesIO(wav.content), dtype="int16")
    assert len(samples) / rate == pytest.approx(clip["duration_s"], abs=1e-9)
    png = client.get(clip["files"]["png"])
    assert Image.open(io.BytesIO(png.content)).size == (512, 512)
    mp3 = client.get(clip["files"]["mp3"]).content
    assert soundfile.info(io.BytesIO(mp3)).format == "MP3"

    again = client.post("/api/clip", json={"recipe": clip["recipe_url"]}).json()
    assert again["recipe"] == clip["recipe"]
    assert client.get(again["files"]["wav"]).content == wav.content  # bit for bit


def test_health_seed_images_masks_and_random_prompt(client, riffuser):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["device"] == "cpu"
    assert health["model"] == riffuser.model and health["dtype"] == "float32"
    assert health["limits"]["max_num_inference_steps"] == MAX_NUM_INFERENCE_STEPS
    assert isinstance(health["queue_depth"], int)
    seeds = client.get("/seed_images").json()
    assert "og_beat" in {s["id"] for s in seeds}
    thumbnail = Image.open(io.BytesIO(_decode(seeds[0]["thumbnail"], "image/jpeg")))
    assert thumbnail.size == (128, 128)
    masks = client.get("/masks").json()
    assert {"keep_first_half", "keep_bass"} <= {m["id"] for m in masks}
    from riffusion.prompts import PROMPTS

    assert client.get("/random_prompt").json()["prompt"] in PROMPTS
    page = client.get("/")
    assert page.status_code == 200 and "playground.js" in page.text
    assert client.get("/static/playground.js").status_code == 200


def test_seed_image_dir_serves_pngs_by_stem(riffuser, tmp_path):
    from riffusion.seeds import load_seed_image

    load_seed_image("breakbeat").save(tmp_path / "vibes.png")
    (tmp_path / "not an id.png").write_bytes(b"")
    with TestClient(create_app(riffuser, seed_image_dir=tmp_path), base_url=LOCAL) as client:
        ids = [s["id"] for s in client.get("/seed_images").json()]
        assert "vibes" in ids and "not an id" not in ids
        vibes = client.post("/run_inference/", json=_body(alpha=0, seed_image_id="vibes"))
        breakbeat = client.post("/run_inference/", json=_body(alpha=0, seed_image_id="breakbeat"))
        assert vibes.status_code == 200
        assert vibes.json()["image"] == breakbeat.json()["image"]  # the same picture


def test_uploaded_audio_becomes_a_seed_image(client):
    from tests.conftest import music_like

    buffer = io.BytesIO()
    soundfile.write(buffer, music_like(2.0), 44100, format="WAV")
    answer = client.post("/api/seed_image", content=buffer.getvalue())
    assert answer.status_code == 200, answer.text
    upload_id = answer.json()["id"]
    assert upload_id.startswith("upload-")
    clip = client.post(
        "/api/clip",
        json={
            "start": {"prompt": "x", "seed": 1},
            "num_inference_steps": 2,
            "seed_image_id": upload_id,
        },
    ).json()
    assert clip["recipe"]["seed_image"].startswith("custom:")
    bad = client.post("/api/seed_image", content=b"not audio at all")
    assert bad.status_code == 400 and bad.json()["field"] == "body"


# ---------------------------------------------------------------------------- bad input
_LONG = "x" * (MAX_PROMPT_CHARS + 1)


@pytest.mark.parametrize(
    "body, field",
    [
        (_body(alpha="0.5"), "alpha"),
        (_body(alpha=1.5), "alpha"),
        (_body(alpha=-0.1), "alpha"),
        (_body(alpha=True), "alpha"),
        (_body(num_inference_steps=0), "num_inference_steps"),
        (_body(num_inference_steps=-3), "num_inference_steps"),
        (_body(num_inference_steps=MAX_NUM_INFERENCE_STEPS + 1), "num_inference_steps"),
        (_body(num_inference_steps=2.5), "num_inference_steps"),
        (_body(num_inference_steps="50"), "num_inference_steps"),
        (_body(start={"prompt": _LONG, "seed": 1}), "start.prompt"),
        (_body(start={"prompt": "  ", "seed": 1}), "start.prompt"),
        (_body(start={"prompt": 5, "seed": 1}), "start.prompt"),
        (_body(start={"prompt": "a", "seed": -1}), "start.seed"),
        (_body(start={"prompt": "a", "seed": 1.5}), "start.seed"),
        (_body(start={"prompt": "a", "seed": "7"}), "start.seed"),
        (_body(end={"prompt": "a", "seed": 1, "denoising": 2}), "end.denoising"),
        (_body(end={"prompt": "a", "seed": 1, "guidance": -1}), "end.guidance"),
        (_body(end={"prompt": "a", "seed": 1, "tempo": 3}), "end.tempo"),
        (_body(end=[1, 2]), "end"),
        (_body(extra=1), "extra"),
        ({"alpha": 0, "end": {"prompt": "a", "seed": 1}}, "start"),
        (_body(seed_image_id="../../etc/passwd"), "seed_image_id"),
        (_body(seed_image_id="/etc/passwd"), "seed_image_id"),
        (_body(seed_image_id="og_beat\x00.png"), "seed_image_id"),
        (_body(seed_image_id="C:\\Windows\\win.ini"), "seed_image_id"),
        (_body(seed_image_id="no_such_seed"), "seed_image_id"),
        (_body(seed_image_id=3), "seed_image_id"),
        (_body(mask_image_id="../keep_bass"), "mask_image_id"),
        (_body(mask_image_id=7), "mask_image_id"),
    ],
)
def test_bad_input_gets_400_naming_the_field(client, body, field):
    response = client.post("/run_inference/", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    if field == "seed_image_id" and body["seed_image_id"] != 3:
        assert "og_beat" in response.json()["error"]  # lists what exists


@pytest.mark.parametrize(
    "raw, field",
    [
        (b"{not json", None),
        (b"", None),
        (b"[]", None),
        (b"[" * 50000 + b"]" * 50000, "too large"),
        (json.dumps(_body()).replace("0.25", "NaN").encode(), "alpha"),
        (json.dumps(_body()).replace('"seed": 5', '"seed": Infinity').encode(), "start.seed"),
    ],
)
def test_malformed_bodies_get_4xx_json(client, raw, field):
    response = client.post(
        "/run_inference/", content=raw, headers={"Content-Type": "application/json"}
    )
    if field == "too large":
        assert response.status_code == 413
    else:
        assert response.status_code == 400, response.text
        assert response.json()["field"] == field


def test_oversized_body_gets_413_before_it_is_read(client):
    big = json.dumps(_body(start={"prompt": "x" * 70_000, "seed": 1})).encode()
    response = client.post("/run_inference/", content=big)
    assert response.status_code == 413 and "65536" in response.json()["error"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"start": {"prompt": "a", "seed": 1}, "scheduler": "warp"}, "scheduler"),
        ({"recipe": "riffusion:1:garbage"}, "recipe"),
        ({"recipe": "{}"}, "recipe"),
        ({"recipe": 5}, "recipe"),
        ({"recipe": "x", "alpha": 1}, "alpha"),
    ],
)
def test_api_clip_bad_input(client, body, field):
    response = client.post("/api/clip", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


def test_unknown_clip_files_are_404(client):
    assert client.get("/api/clips/0123456789abcdef/audio.wav").status_code == 404
    assert client.get("/api/clips/..%2F..%2Fetc/passwd").status_code == 404


def test_nothing_is_written_outside_a_temporary_folder(client, tmp_path, monkeypatch):
    writes: list[str] = []
    active = threading.Event()

    def audit(event, args):
        if active.is_set() and event == "open" and args[0] is not None:
            mode, flags = args[1], args[2]
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & 0o3  # O_WRONLY | O_RDWR
            ):
                writes.append(str(args[0]))

    sys.addaudithook(audit)  # hooks can not be removed; this one is inert once `active` clears
    monkeypatch.chdir(tmp_path)
    active.set()
    try:
        assert client.post("/run_inference/", json=_body()).status_code == 200
        assert client.post("/run_inference/", json=_body(seed_image_id="../x")).status_code == 400
        clip = client.post(
            "/api/clip", json={"start": {"prompt": "a", "seed": 1}, "num_inference_steps": 2}
        ).json()
        assert client.get(clip["files"]["png"]).status_code == 200
    finally:
        active.clear()
    temporary = Path(tempfile.gettempdir()).resolve()
    outside = [
        p
        for p in writes
        if not isinstance(p, int)
        and not str(p).isdigit()
        and not Path(p).resolve().is_relative_to(temporary)
    ]
    assert outside == []
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ queue and cancellation
def test_full_queue_answers_503_with_retry_after(riffuser):
    release = threading.Event()
    with TestClient(create_app(riffuser, max_queue=0), base_url=LOCAL) as client:
        worker = client.app.state.worker
        blocker = worker.submit(lambda job: release.wait(30))
        try:
            response = client.post("/run_inference/", json=_body())
            assert response.status_code == 503
            assert int(response.headers["retry-after"]) >= 1
            assert "queue is full" in response.json()["error"]
            assert client.get("/health").json()["queue_depth"] == 1
        finally:
            release.set()
        blocker.future.result(10)
        assert client.post("/run_inference/", json=_body()).status_code == 200


async def _call_with_disconnect(app, body: bytes, disconnect_when):
    """Drive one request through the ASGI interface; the client 'disconnects' on a condition."""
    sent = []
    delivered = False

    async def receive():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        while not disconnect_when():
            await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/run_inference/",
        "raw_path": b"/run_inference/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"127.0.0.1:3013")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return sent


def test_a_disconnected_client_stops_its_generation_at_the_next_step(riffuser):
    app = create_app(riffuser)
    worker = app.state.worker
    jobs = []
    submit = worker.submit
    worker.submit = lambda work: jobs.append(submit(work)) or jobs[-1]
    body = json.dumps(_body(num_inference_steps=40)).encode()  # runs 30 steps at 0.75

    sent = asyncio.run(
        _call_with_disconnect(app, body, lambda: bool(jobs) and jobs[0].steps_done >= 1)
    )
    job = jobs[0]
    assert job.future.done()
    with pytest.raises(Exception, match="cancelled after") as error:
        job.future.result()
    assert type(error.value).__name__ == "GenerationCancelled"
    # Cancelled at the step after the disconnect was seen: far fewer than the 30 steps.
    assert 1 <= job.steps_done <= 3
    assert sent[0]["status"] == 499
    # The pipeline is fine afterwards: the next request is the normal generation.
    with TestClient(app, base_url=LOCAL) as client:
        assert client.post("/run_inference/", json=_body()).status_code == 200


def test_a_disconnected_client_is_dropped_from_the_queue(riffuser):
    app = create_app(riffuser)
    worker = app.state.worker
    release = threading.Event()
    blocker = worker.submit(lambda job: release.wait(30))
    ran = []
    original = riffuser.riffuse

    body = json.dumps(_body()).encode()
    checks = {"n": 0}

    def disconnect_after_queued():
        checks["n"] += 1
        return worker.depth == 2 and checks["n"] > 3

    try:
        riffuser.riffuse = lambda *a, **k: ran.append(1) or original(*a, **k)
        sent = asyncio.run(_call_with_disconnect(app, body, disconnect_after_queued))
    finally:
        release.set()
        blocker.future.result(10)
        del riffuser.riffuse
    assert sent[0]["status"] == 499
    assert worker.depth == 0 and ran == []  # never ran
    worker.close()


# --------------------------------------------------------------------------- CLI and CORS
def test_cors_is_off_unless_an_origin_is_given(riffuser, client):
    origin = {"Origin": "http://elsewhere.example"}
    refused = client.get("/health", headers=origin)
    assert refused.status_code == 403 and refused.json()["field"] == "Origin"
    assert "access-control-allow-origin" not in refused.headers
    app = create_app(riffuser, cors_origins=["http://localhost:3000"])
    with TestClient(app, base_url=LOCAL) as allowed:
        preflight = allowed.options(
            "/run_inference/",
            headers={
                "Origin": "http://localhost:3000",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
        answer = allowed.get("/health", headers={"Origin": "http://localhost:3000"})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert allowed.get("/health", headers=origin).status_code == 403


def test_serve_command_binds_localhost_3013_by_default(monkeypatch, capsys):
    import uvicorn

    from riffusion.cli import main

    served = {}

    def fake_run(server):
        config = server.config
        served.update(app=config.app, host=config.host, port=config.port, http=config.http)

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    status = main(
        ["serve", "--model", str(tiny_model_dir()), "--device", "cpu", "--max-queue", "3"]
    )
    assert status == 0
    assert (served["host"], served["port"]) == ("127.0.0.1", 3013)
    assert served["http"].__name__ == "GuardedH11Protocol"  # slow clients are timed out
    assert served["app"].state.worker.max_queue == 3
    assert "http://127.0.0.1:3013/" in capsys.readouterr().err
    served["app"].state.worker.close()
    assert main(["serve", "--port", "70000"]) == 2
    assert main(["serve", "--max-queue", "-1"]) == 2


def test_serve_command_warns_beyond_loopback_and_prints_a_generated_key(monkeypatch, capsys):
    import uvicorn
    from fastapi.testclient import TestClient

    from riffusion.cli import main

    apps = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda server: apps.append(server.config.app))
    model = ["--model", str(tiny_model_dir()), "--device", "cpu"]
    assert main(["serve", *model, "--host", "0.0.0.0"]) == 0
    err = capsys.readouterr().err
    assert "warning: 0.0.0.0 is reachable from other machines" in err and "--api-key" in err
    apps.pop().state.worker.close()
    assert main(["serve", *model, "--host", "0.0.0.0", "--api-key", "generate"]) == 0
    err = capsys.readouterr().err
    assert "warning" not in err
    token = err.split("?token=")[1].split()[0]
    assert len(token) >= 24
    app = apps.pop()
    with TestClient(app, base_url=LOCAL) as client:
        assert client.get("/health").status_code == 401
        assert client.get(f"/?token={token}").status_code == 200
    # A name it was told to bind is accepted as a Host (with the key).
    assert main(["serve", *model, "--host", "music.lan", "--api-key", "k3y-for-tests"]) == 0
    capsys.readouterr()
    with TestClient(apps.pop(), base_url="http://music.lan:3013") as client:
        headers = {"Authorization": "Bearer k3y-for-tests"}
        assert client.get("/health", headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("seed_id", "mask_id", "ours_seed", "ours_mask"),
    [
        ("agile", "mask_top_third_75", "breakbeat", "top_third_75"),
        ("vibes", "mask_beat_lines_80", "pad_pulse", "beat_lines_80"),
    ],
)
def test_the_web_apps_ids_are_served_by_the_alias_table(
    client, riffuser, seed_id, mask_id, ours_seed, ours_mask
):
    listed = {item["id"]: item for item in client.get("/seed_images").json()}
    assert (
        listed[seed_id]["source"] == "riffusion-alias"
        and ours_seed in listed[seed_id]["description"]
    )
    assert mask_id in {item["id"] for item in client.get("/masks").json()}
    body = _body(alpha=0, seed_image_id=seed_id, mask_image_id=mask_id)
    answer = client.post("/run_inference/", json=body)
    assert answer.status_code == 200, answer.text
    ours = riffuser.riffuse(
        PromptInput(**body["start"]),
        num_inference_steps=STEPS,
        seed_image=ours_seed,
        mask_image=ours_mask,
    )
    got = np.asarray(Image.open(io.BytesIO(_decode(answer.json()["image"], "image/jpeg"))))
    np.testing.assert_array_equal(got, _jpeg_of(ours.image))
