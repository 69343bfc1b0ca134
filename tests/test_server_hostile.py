"""Hostile callers of ``riffusion serve``: foreign sites, oversized fields, broken text, upload
bombs, slow clients and crowds. Every answer is a 4xx JSON error or a clip — never a 5xx, a
dropped connection or a dead server — and the process stays within its memory bound.

Fast: the tiny model, one denoising step, one torch thread. The TestClient half speaks ASGI to
the application; the other half runs a real uvicorn server (with the guarded protocol of
``riffusion.server.connections``) on a loopback port.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import logging
import resource
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import psutil
import pytest
import soundfile
import uvicorn
from fastapi.testclient import TestClient

from riffusion import ParameterError
from riffusion.inputs import REQUEST_NUMBER_FIELDS
from riffusion.server import create_app
from riffusion.server.connections import RepeatFilter, serve_config
from riffusion.testing import web_app_request
from tests.server_fixtures import ATTACKER, LOCAL


def _body(**changes):
    quick = {"alpha": 0.0, "num_inference_steps": 1, "start.prompt": "jazz", "end.prompt": "jazz"}
    return web_app_request(**{**quick, **changes})


@pytest.fixture(scope="module")
def client(riffuser):
    with TestClient(create_app(riffuser, max_queue=4), base_url=LOCAL) as client:
        yield client


def _json_error(response, status: int, field: str | None = None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    if field is not None:
        assert body["field"] == field, body
    return body["error"]


# ----------------------------------------------------------------- hosts, origins, key
@pytest.mark.parametrize(
    "host",
    ["attacker.example", "attacker.example:3013", "127.0.0.1.attacker.example", "", "localhost."],
)
def test_foreign_host_names_are_refused(client, host):
    message = _json_error(client.get("/health", headers={"Host": host}), 403, "Host")
    assert "--allowed-host" in message


@pytest.mark.parametrize(
    "host", ["127.0.0.1:3013", "localhost:3013", "[::1]:3013", "app.localhost", "192.168.1.5:80"]
)
def test_loopback_names_and_addresses_are_served(client, host):
    assert client.get("/health", headers={"Host": host}).status_code == 200


def test_allowed_host_names_are_served(riffuser):
    app = create_app(riffuser, allowed_hosts=["music.lan"])
    with TestClient(app, base_url="http://music.lan:3013") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health", headers={"Host": "other.lan"}).status_code == 403


def test_cross_site_requests_are_refused_before_any_work(client, riffuser, monkeypatch):
    worker = client.app.state.worker
    submitted = []
    monkeypatch.setattr(worker, "submit", lambda work: submitted.append(work))
    # A "simple" cross-site request: text/plain needs no preflight, so the browser sends it.
    forged = client.post(
        "/run_inference/",
        content=json.dumps(_body()),
        headers={"Origin": ATTACKER, "Content-Type": "text/plain"},
    )
    assert "--cors-origin" in _json_error(forged, 403, "Origin")
    upload = client.post("/api/seed_image", content=b"RIFF", headers={"Origin": ATTACKER})
    _json_error(upload, 403, "Origin")
    _json_error(client.get("/seed_images", headers={"Origin": "null"}), 403, "Origin")
    assert submitted == []
    assert client.get("/health", headers={"Origin": LOCAL}).status_code == 200


def test_an_api_key_protects_every_route_but_static_files(riffuser):
    key = "s3cret-key-123"
    app = create_app(riffuser, api_key=key, cors_origins=["http://localhost:3000"])
    with TestClient(app, base_url=LOCAL) as client:
        refused = client.get("/health")
        assert "Bearer" in _json_error(refused, 401, "Authorization")
        assert refused.headers["www-authenticate"].startswith("Bearer")
        _json_error(client.get("/health", headers={"Authorization": "Bearer wrong"}), 401)
        _json_error(
            client.get("/health", headers={"Authorization": "Bearer ünïcode".encode("latin-1")}),
            401,
        )
        ok = client.get("/health", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200
        assert client.get("/static/playground.js").status_code == 200
        preflight = client.options(
            "/run_inference/",
            headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200
        _json_error(client.get("/?token=wrong"), 401)
        page = client.get(f"/?token={key}")
        assert page.status_code == 200 and "riffusion_token=" in page.headers["set-cookie"]
        assert "HttpOnly" in page.headers["set-cookie"]
        assert client.get("/health").status_code == 200  # the cookie carries the key now


def test_server_arguments_are_checked(riffuser):
    for kwargs, phrase in [
        ({"cors_origins": "http://localhost:3000"}, "list of strings"),
        ({"cors_origins": ["http://localhost:3000/path"]}, "no path"),
        ({"cors_origins": ["localhost:3000"]}, "origin like"),
        ({"allowed_hosts": "music.lan"}, "list of strings"),
        ({"api_key": "short"}, "at least 8"),
        ({"api_key": "has a space"}, "no spaces"),
    ]:
        with pytest.raises(ParameterError, match=phrase):
            create_app(riffuser, **kwargs)


# ------------------------------------------------------------------- bounded work
_OVERSIZED = [10**400, -1, 2**63, 1e300, -1e300]


@pytest.mark.parametrize("field", REQUEST_NUMBER_FIELDS)
@pytest.mark.parametrize("route", ["/run_inference/", "/api/clip"])
def test_every_numeric_field_refuses_oversized_values(client, route, field):
    for value in _OVERSIZED:
        body = _body(**{field: value})
        if route == "/api/clip" and field == "alpha":
            body["alpha"] = value  # the end prompt is there, so alpha counts
        response = client.post(route, json=body)
        _json_error(response, 400, field)
    # A JSON number beyond float range is infinite when parsed: refused as well.
    raw = json.dumps(_body()).replace('"alpha": 0.0', '"alpha": 1e400')
    _json_error(
        client.post(route, content=raw, headers={"Content-Type": "application/json"}), 400, "alpha"
    )


def _recipe(client) -> dict:
    answer = client.post(
        "/api/clip", json={"start": {"prompt": "x", "seed": 3}, "num_inference_steps": 1}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["recipe"]


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("num_inference_steps", 10**400, "num_inference_steps"),
        ("duration_s", 1e300, "duration_s"),
        ("alpha", 10**400, "alpha"),
        ("decode_seed", 2**64, "decode_seed"),
        ("start.seed", 2**63, "seed"),
        ("start.guidance", 10**400, "guidance"),
        ("params.sample_rate", 10**12, "sample_rate"),
        ("params.step_size_ms", 1e300, "step_size_ms"),
        ("params.num_frequencies", 10**9, "num_frequencies"),
        ("scheduler_config", {"num_train_timesteps": 2_000_000_000}, "num_train_timesteps"),
        ("scheduler_config", {"thresholding": True}, "thresholding"),
        ("scheduler_config", {"trained_betas": [0.5] * 10}, "trained_betas"),
    ],
)
def test_recipe_fields_that_size_work_are_bounded(client, path, value, named):
    recipe = _recipe(client)
    target = recipe
    *parents, last = path.split(".")
    for part in parents:
        target = target[part]
    target[last] = value
    response = client.post("/api/clip", json={"recipe": recipe})
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize(
    "text",
    [
        "\ud800",
        "jazz \udfff piano",
        "a\x00b",
        "\u202eevil\u202c",
        "x" * 10_000,
        "🎸🥁" * 50,
        "\u0000",
        "é" * 999,
    ],
)
def test_any_json_string_gets_a_4xx_or_a_clip(client, text):
    def post(route: str, body: dict):
        # json.dumps escapes lone surrogates as \\udXXX, as a browser's JSON.stringify does.
        data = json.dumps(body)
        return client.post(route, content=data, headers={"Content-Type": "application/json"})

    for route in ("/run_inference/", "/api/clip"):
        response = post(route, _body(**{"start.prompt": text}))
        assert response.status_code in (200, 400), response.text
        if response.status_code == 400:
            body = response.json()
            # Checked at the edge (field named), or by the tokenizer's limit (225 tokens).
            assert body["field"] == "start.prompt" or "tokens long" in body["error"], body
    # The same in other string fields, and as a raw body that is not valid UTF-8 JSON.
    for field in ("seed_image_id", "mask_image_id"):
        response = post("/run_inference/", _body(**{field: text}))
        assert response.status_code == 400 and response.json()["field"] == field
    assert client.post("/run_inference/", content=b"\xff\xfe{").status_code == 400


# ----------------------------------------------------------------------------- uploads
def _flac(seconds: float, channels: int = 2) -> bytes:
    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", 44100, channels, format="FLAC") as handle:
        block = np.zeros((44_100, channels), np.float32)
        for _ in range(int(seconds)):
            handle.write(block)
    return buffer.getvalue()


def test_upload_bombs_are_refused_from_the_header_and_leave_nothing(client):
    before = {item["id"] for item in client.get("/seed_images").json()}
    bomb = _flac(3600)  # an hour of silence: a few hundred KB, 1.2 GiB decoded
    started = time.perf_counter()
    message = _json_error(client.post("/api/seed_image", content=bomb), 400, "body")
    assert time.perf_counter() - started < 10 and "MiB" in message
    junk = client.post("/api/seed_image", content=b"not audio at all" * 100)
    assert "0x" not in _json_error(junk, 400, "body")  # no memory addresses
    listing = client.get("/seed_images")
    assert listing.status_code == 200
    assert {item["id"] for item in listing.json()} == before
    good = client.post("/api/seed_image", content=_flac(2, channels=1))
    assert good.status_code == 200, good.text
    assert good.json()["id"] in {item["id"] for item in client.get("/seed_images").json()}


def test_uploads_wait_in_the_device_queue(riffuser):
    app = create_app(riffuser, max_queue=0)
    with TestClient(app, base_url=LOCAL) as client:
        release = threading.Event()
        job = app.state.worker.submit(lambda job: release.wait(30))
        try:
            while job.started_s is None:
                time.sleep(0.01)
            busy = client.post("/api/seed_image", content=_flac(1, channels=1))
            assert busy.status_code == 503 and "retry-after" in busy.headers
        finally:
            release.set()


# ------------------------------------------------------------------- a real server
@pytest.fixture(scope="module")
def server(riffuser):
    app = create_app(riffuser, max_queue=4)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    config = serve_config(
        app, host="127.0.0.1", port=port, header_timeout_s=1.0, max_connections=24
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", port
    server.should_exit = True
    thread.join(30)


def _get(url: str, timeout: float = 30) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _post(url: str, body: dict) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_slow_clients_are_timed_out_and_the_connection_cap_holds(server):
    url, port = server
    slow = []
    for _ in range(10):
        connection = socket.create_connection(("127.0.0.1", port))
        connection.sendall(b"GET /health HTTP/1.1\r\nHo")  # and then nothing more
        slow.append(connection)
    assert _get(f"{url}/health", timeout=5) == 200  # others are still served meanwhile
    for connection in slow:
        connection.settimeout(5)
        answer = connection.recv(200)  # closed with 408 after the header deadline (1 s)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        connection.close()
    crowd = [socket.create_connection(("127.0.0.1", port)) for _ in range(30)]
    try:
        refused = 0
        for connection in crowd:
            connection.settimeout(0.5)
            with contextlib.suppress(TimeoutError):
                refused += connection.recv(100).startswith(b"HTTP/1.1 503")
        assert refused >= 30 - 24
    finally:
        for connection in crowd:
            connection.close()
    time.sleep(0.2)
    assert _get(f"{url}/health") == 200


def test_a_crowd_gets_200_or_503_and_memory_stays_flat(server):
    url, _ = server
    process = psutil.Process()
    rounds = []
    for _ in range(3):
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = list(
                pool.map(
                    lambda i: _post(f"{url}/run_inference/", _body(**{"start.seed": i})), range(32)
                )
            )
        assert set(statuses) <= {200, 503}, statuses
        assert 200 in statuses
        rounds.append(process.memory_info().rss)
    # 96 requests: resident memory after the last round within 150 MiB of the first.
    assert rounds[-1] - rounds[0] < 150 * 2**20, [r // 2**20 for r in rounds]
    assert _get(f"{url}/health") == 200
    # The whole process (pytest, every module so far, this server) stays under 4 GB.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 < 4 * 2**30


def test_repeated_log_lines_are_kept_once_per_interval():
    messages = []

    class Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger = logging.getLogger("riffusion.test.repeat")
    logger.propagate = False
    handler = Keep()
    logger.addHandler(handler)
    repeat = RepeatFilter(interval_s=0.2)
    logger.addFilter(repeat)
    try:
        for client in range(1000):
            logger.warning("refused a connection from %s", client)
        logger.warning("another message")
        time.sleep(0.25)
        logger.warning("refused a connection from %s", "late")
    finally:
        logger.removeFilter(repeat)
        logger.removeHandler(handler)
    assert messages[0] == "refused a connection from 0"
    assert messages[1] == "another message"
    assert messages[2] == "refused a connection from late (999 more like it in the last 0.2 s)"
    assert len(messages) == 3
