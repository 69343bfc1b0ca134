"""Hostile requests against a real ``riffusion serve`` (tiny random model, default protections).

Starts the server in a subprocess (``python -m riffusion serve --max-queue 4``) and sends the
classes of issue 23: oversized numeric fields of both APIs, scheduler settings in recipes,
unicode strings, cross-site requests and foreign hosts, upload bombs and junk, a crowd of
parallel clients, and half-open "slowloris" connections. Prints the status histogram per class,
the answers that were neither 2xx nor 4xx/503 (must be none), dropped connections, whether the
server is still alive, and the server's peak resident memory (``VmHWM``).

Usage (from the repository root)::

    python bench/hostile.py [--crowd 96] [--slow 200]
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import io
import json
import socket
import urllib.error
import urllib.request

import numpy as np
import soundfile
import tiny_server
from machine import machine_line

from riffusion.inputs import REQUEST_NUMBER_FIELDS
from riffusion.testing import web_app_request

ATTACKER = "https://attacker.example"


def _body(**changes):
    quick = {"alpha": 0.0, "num_inference_steps": 1}
    return web_app_request(**{**quick, **changes})


def _request(url: str, data: bytes | None = None, headers: dict | None = None) -> object:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        error.read()
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        return f"dropped: {type(error).__name__}"


def _json(url: str, body: object, headers: dict | None = None) -> object:
    data = json.dumps(body).encode()
    return _request(url, data, {"Content-Type": "application/json", **(headers or {})})


def _flac(seconds: int, channels: int) -> bytes:
    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", 44100, channels, format="FLAC") as handle:
        block = np.zeros((44_100, channels), np.float32)
        for _ in range(seconds):
            handle.write(block)
    return buffer.getvalue()


def _classes(url: str, base_recipe: dict) -> dict[str, list]:
    values = [10**400, -1, 2**63, 1e300, -1e300, "1", None, True, [1], {"x": 1}]
    recipe_fields = {
        "num_inference_steps": 10**400,
        "duration_s": 1e300,
        "alpha": 10**400,
        "decode_seed": 2**64,
        "params.sample_rate": 10**12,
        "params.step_size_ms": 1e300,
        "params.num_frequencies": 10**9,
    }
    schedulers = [
        {"num_train_timesteps": 2_000_000_000},
        {"trained_betas": [0.5] * 100},
        {"thresholding": True},
        {"solver_order": 10**9},
        {"x" * 100: 1},
    ]
    strings = ["\ud800", "a\udfffb", "a\x00b", "\u202eevil", "x" * 10_000, "🎸" * 300, ""]
    jobs: dict[str, list] = collections.defaultdict(list)
    for route in ("/run_inference/", "/api/clip"):
        for field in REQUEST_NUMBER_FIELDS:
            for value in values:
                jobs["oversized fields"].append((route, _body(**{field: value}), None))
        for text in strings:
            for field in ("start.prompt", "seed_image_id", "mask_image_id"):
                jobs["unicode strings"].append((route, _body(**{field: text}), None))
    for path, value in recipe_fields.items():
        recipe = json.loads(json.dumps(base_recipe))
        target = recipe
        *parents, last = path.split(".")
        for part in parents:
            target = target[part]
        target[last] = value
        jobs["recipe fields"].append(("/api/clip", {"recipe": recipe}, None))
    for config in schedulers:
        jobs["scheduler settings"].append(
            ("/api/clip", {"recipe": {**base_recipe, "scheduler_config": config}}, None)
        )
    for origin in (ATTACKER, "null", "http://127.0.0.1.attacker.example"):
        for route in ("/run_inference/", "/api/clip"):
            jobs["cross-site"].append(
                (route, _body(), {"Origin": origin, "Content-Type": "text/plain"})
            )
    for host in ("attacker.example", "attacker.example:3013", "localhost.attacker.example"):
        jobs["foreign hosts"].append(("/run_inference/", _body(), {"Host": host}))
    return jobs


def _slowloris(port: int, count: int) -> tuple[int, int]:
    """Open ``count`` connections that never finish their headers; how many got 408 / 503."""
    sockets = []
    for _ in range(count):
        try:
            connection = socket.create_connection(("127.0.0.1", port), timeout=5)
            connection.sendall(b"GET /health HTTP/1.1\r\nHo")
            sockets.append(connection)
        except OSError:
            pass
    timed_out = refused = 0
    for connection in sockets:
        connection.settimeout(15)
        try:
            answer = connection.recv(100)
            timed_out += answer.startswith(b"HTTP/1.1 408")
            refused += answer.startswith(b"HTTP/1.1 503")
        except OSError:
            pass
        connection.close()
    return timed_out, refused


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crowd", type=int, default=96, help="parallel generation requests")
    parser.add_argument("--slow", type=int, default=200, help="half-open connections")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    server, url, _ = tiny_server.start(max_queue=4)
    port = int(url.rsplit(":", 1)[1])
    try:
        made = urllib.request.urlopen(
            urllib.request.Request(
                f"{url}/api/clip",
                json.dumps(
                    {"start": {"prompt": "x", "seed": 3}, "num_inference_steps": 1}
                ).encode(),
                {"Content-Type": "application/json"},
            ),
            timeout=120,
        )
        base_recipe = json.loads(made.read())["recipe"]
        results: dict[str, collections.Counter] = {}
        for name, jobs in _classes(url, base_recipe).items():
            counter = collections.Counter()
            for route, body, headers in jobs:
                counter[_json(url + route, body, headers)] += 1
            results[name] = counter
        uploads = collections.Counter()
        for data in (_flac(3600, 2), _flac(600, 8), b"not audio" * 1000, b"", _flac(2, 1)):
            uploads[_request(f"{url}/api/seed_image", data)] += 1
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            bombs = [_flac(1800, 2)] * 8
            for status in pool.map(lambda d: _request(f"{url}/api/seed_image", d), bombs):
                uploads[status] += 1
        uploads[_request(f"{url}/seed_images")] += 1
        results["uploads"] = uploads
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            crowd = collections.Counter(
                pool.map(
                    lambda i: _json(f"{url}/run_inference/", _body(**{"start.seed": i})),
                    range(args.crowd),
                )
            )
        results["crowd (16 parallel, max-queue 4)"] = crowd
        timed_out, refused = _slowloris(port, args.slow)
        alive = _request(f"{url}/health") == 200 and server.poll() is None
        peak = round(tiny_server.peak_rss_mib(server.pid))
    finally:
        tiny_server.stop(server)
    total = collections.Counter()
    print(f"{'class':<34} {'requests':>8}  statuses")
    for name, counter in results.items():
        total.update(counter)
        shown = ", ".join(f"{key}: {value}" for key, value in sorted(counter.items(), key=str))
        print(f"{name:<34} {sum(counter.values()):>8}  {shown}")
    bad = {
        key: value
        for key, value in total.items()
        if not (isinstance(key, int) and (200 <= key < 300 or 400 <= key < 500 or key == 503))
    }
    print(
        f"slow clients: {args.slow} half-open connections, {timed_out} closed with 408 after "
        f"the header deadline, {refused} refused with 503 at the connection cap"
    )
    print(f"total: {sum(total.values())} requests; 5xx other than 503 or dropped: {bad or 'none'}")
    print(f"server alive afterwards: {alive}; server peak RSS: {peak} MiB")
    return 0 if alive and not bad else 1


if __name__ == "__main__":
    raise SystemExit(main())
