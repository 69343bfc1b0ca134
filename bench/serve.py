"""Load benchmark of ``riffusion serve`` on the tiny random model (CPU, no download).

Starts a real server (``python -m riffusion serve`` in a subprocess, so its memory is measured
alone) and measures, in one run:

1. **Overhead**: sequential ``POST /run_inference/`` requests. The server reports the generation
   time of each request in its ``Server-Timing`` header (``generate``: what
   ``Riffuser.riffuse`` took, text encoder to audio); everything else the client waited for —
   HTTP, JSON, queue hand-off, JPEG + MP3 encoding, base64 — is the server's overhead, printed
   as a share of the generation time. Goal: <= 10 % for a 50-step request.
2. **Load**: ``--rounds`` rounds of ``--clients`` concurrent clients, ``--requests`` each
   (``--load-steps`` steps), against ``--max-queue``: a client answered 503 (queue full) waits
   a second and tries again (up to 5 times). Every answer must be 200 or
   503 — any other status or a dropped connection fails the run. Prints p50 / p95 latency of
   the 200s per round and the server's resident memory (RSS) after warm-up and after each
   round: flat memory means later rounds do not keep growing it.

Usage (from the repository root)::

    python bench/serve.py [--steps 50] [--sequential 5] [--clients 6] [--requests 3]
                          [--load-steps 10] [--rounds 3] [--max-queue 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import time
import urllib.error
import urllib.request

import tiny_server
from machine import machine_line

from riffusion.testing import web_app_request


def body(steps: int, index: int) -> bytes:
    request = web_app_request(
        alpha=0.25 * (index % 5),
        num_inference_steps=steps,
        **{"start.seed": index, "end.seed": index + 1},
    )
    return json.dumps(request).encode()


def post(url: str, payload: bytes) -> tuple[int, float, dict[str, float]]:
    """(status, seconds, Server-Timing durations in seconds); status 0 = connection failed."""
    request = urllib.request.Request(
        url, data=payload, headers={"Content-Type": "application/json"}, method="POST"
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            response.read()
            status, header = response.status, response.headers.get("Server-Timing", "")
    except urllib.error.HTTPError as error:
        error.read()
        status, header = error.code, ""
    except OSError:
        return 0, time.perf_counter() - started, {}
    took = time.perf_counter() - started
    timings = {}
    for part in filter(None, (p.strip() for p in header.split(","))):
        name, _, duration = part.partition(";dur=")
        timings[name] = float(duration) / 1000
    return status, took, timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--sequential", type=int, default=5, help="requests for the overhead")
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--requests", type=int, default=3, help="requests per client")
    parser.add_argument("--load-steps", type=int, default=10, help="steps of the load requests")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-queue", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    sys.stdout.reconfigure(line_buffering=True)

    server, base, health = tiny_server.start(max_queue=args.max_queue, threads=args.threads)
    try:
        print(f"server: {health['model']} on {health['device']}, torch threads {args.threads}")
        post(f"{base}/run_inference/", body(args.steps, 0))  # warm-up
        # 1. overhead, sequential
        overheads, generations, latencies = [], [], []
        for index in range(args.sequential):
            status, took, timings = post(f"{base}/run_inference/", body(args.steps, index))
            assert status == 200, status
            generations.append(timings["generate"])
            overheads.append(took - timings["generate"])
            latencies.append(took)
        generate_s = statistics.median(generations)
        overhead_s = statistics.median(overheads)
        share = overhead_s / generate_s
        rss_before = tiny_server.rss_mib(server.pid)
        print(
            f"sequential ({args.sequential} x {args.steps} steps): latency p50 "
            f"{statistics.median(latencies):.3f} s, generation {generate_s:.3f} s, overhead "
            f"{overhead_s * 1000:.0f} ms = {share:.1%} of generation "
            f"(goal <= 10%: {'met' if share <= 0.10 else 'NOT met'})"
        )

        # 2. load: concurrent clients, in rounds
        def client(index: int) -> list[tuple[int, float]]:
            answers = []
            for request in range(args.requests):
                for _attempt in range(6):
                    payload = body(args.load_steps, index * 100 + request)
                    status, took, _ = post(f"{base}/run_inference/", payload)
                    answers.append((status, took))
                    if status != 503:
                        break
                    time.sleep(1.0)
            return answers

        counts: dict[int, int] = {}
        print(f"server RSS after the sequential requests: {rss_before:.0f} MiB")
        for round_index in range(args.rounds):
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
                answers = [a for per in pool.map(client, range(args.clients)) for a in per]
            wall = time.perf_counter() - started
            statuses = [status for status, _ in answers]
            for code in statuses:
                counts[code] = counts.get(code, 0) + 1
            ok = sorted(took for status, took in answers if status == 200)
            p50 = statistics.median(ok) if ok else float("nan")
            p95 = ok[min(len(ok) - 1, round(0.95 * (len(ok) - 1)))] if ok else float("nan")
            by_code = {code: statuses.count(code) for code in sorted(set(statuses))}
            print(
                f"load round {round_index + 1} ({args.clients} clients x {args.requests}, "
                f"{args.load_steps} steps, max-queue {args.max_queue}): statuses {by_code} in "
                f"{wall:.1f} s; latency of 200s p50 {p50:.3f} s, p95 {p95:.3f} s; server RSS "
                f"{tiny_server.rss_mib(server.pid):.0f} MiB"
            )
        unexpected = {code: n for code, n in counts.items() if code not in (200, 503)}
        alive = server.poll() is None
        if unexpected or not alive:
            print(f"FAILED: unexpected statuses {unexpected}, server alive: {alive}")
            return 1
        return 0
    finally:
        tiny_server.stop(server)


if __name__ == "__main__":
    sys.exit(main())
