"""Benchmark: batch rendering throughput, local engine vs Ray with 1 and 2 workers.

Renders the same jobs (tiny random model, ``--steps`` scheduler steps, one window each) into a
fresh folder per configuration, in one process, and prints jobs per second and the ratio to the
local engine with one torch thread (the baseline, measured in the same run):

- ``local, 1 thread``: the default (``cpus_per_worker=1``);
- ``local, N threads``: the local engine given every core (different bytes on CPU: the thread
  count changes the reductions);
- ``ray, 1 worker`` and ``ray, 2 workers``: one torch thread per actor.

Two numbers per line: ``jobs/s`` over the whole call (model loading and, for Ray, starting the
actors included: what a user waits for) and ``steady jobs/s`` after the first worker was
ready (``elapsed_s - startup_s``: the rate a long batch approaches). Ray itself is started
before the timings (``ray.init(num_cpus=...)``), as on a running cluster.

The machine this was written on has 2 cores shared with other work: rerun when a line looks
off. Checks that the engines wrote the same bytes, too.

Run: ``.venv/bin/python bench/batch.py [--jobs 8] [--rows 512] [--steps 2]``.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# Ray workers import riffusion too: let them find this checkout.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
)

from machine import machine_line  # noqa: E402

from riffusion.batch import AUDIO_NAME, IMAGE_NAME, RECIPE_NAME, render  # noqa: E402
from riffusion.testing import make_tiny_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8, help="jobs per configuration")
    parser.add_argument("--rows", type=int, default=512, help="spectrogram rows (512: real size)")
    parser.add_argument("--steps", type=int, default=2, help="scheduler steps per job")
    args = parser.parse_args()
    print(machine_line(), flush=True)

    import ray

    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="riffusion-bench-batch-"))
    model = str(make_tiny_model(work / "model"))
    jobs = [
        {
            "id": f"job-{index}",
            "prompt": f"bench tune {index}",
            "seed": index,
            "num_inference_steps": args.steps,
            "seed_image": None,
            "params": {"num_frequencies": args.rows},
        }
        for index in range(args.jobs)
    ]
    print(
        f"{args.jobs} jobs, tiny model, {args.rows}x512 images, {args.steps} steps, CPU, "
        f"{cores} cores"
    )
    configurations = [
        ("local, 1 thread", {"engine": "local", "cpus_per_worker": 1}),
        (f"local, {cores} threads", {"engine": "local", "cpus_per_worker": cores}),
        ("ray, 1 worker", {"engine": "ray", "workers": 1}),
        ("ray, 2 workers", {"engine": "ray", "workers": 2}),
    ]
    ray.init(num_cpus=max(cores, 2), include_dashboard=False, log_to_driver=False)
    rows = []
    try:
        for name, options in configurations:
            out = work / name.replace(" ", "").replace(",", "-")
            started = time.perf_counter()
            result = render(jobs, out, model=model, device="cpu", **options)
            elapsed = time.perf_counter() - started
            if not result.ok:
                raise SystemExit(f"{name}: failed jobs {result.failed}")
            steady = max(result.elapsed_s - result.startup_s, 1e-9)
            rows.append((name, out, args.jobs / elapsed, args.jobs / steady, result.startup_s))
    finally:
        ray.shutdown()

    base_total, base_steady = rows[0][2], rows[0][3]
    print(
        f"{'configuration':<18} {'jobs/s':>8} {'ratio':>7} {'steady jobs/s':>14} {'ratio':>7} "
        f"{'startup s':>10}"
    )
    for name, _, total, steady, startup in rows:
        print(
            f"{name:<18} {total:>8.3f} {total / base_total:>6.2f}x {steady:>14.3f} "
            f"{steady / base_steady:>6.2f}x {startup:>10.1f}"
        )
    same = all(
        filecmp.cmp(rows[0][1] / job["id"] / file, out / job["id"] / file, shallow=False)
        for name, out, *_ in rows
        if "thread" not in name or name == rows[0][0]
        for job in jobs
        for file in (AUDIO_NAME, IMAGE_NAME, RECIPE_NAME)
    )
    print(f"local (1 thread) and Ray outputs byte-identical: {same}")


if __name__ == "__main__":
    main()
