"""Dataset preparation throughput: spectrogram windows per second, one worker vs all cores.

Builds an input folder from the shared corpus (``../shared/corpus``: four 5.12 s clips), each
file linked ``--copies`` times so there is enough work to spread, then runs
``riffusion.dataset.prepare`` twice into fresh folders — ``workers=1`` and ``workers=<all
cores>`` — and prints windows per second of each and their ratio. Both runs write the same bytes
(checked). Process start-up (each worker imports torch) is included: it is part of what a user
waits for.

Usage (from the repository root)::

    python bench/dataset.py [--copies 4] [--window-px 512] [--hop-px 64] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from machine import machine_line

from riffusion.dataset import prepare

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS.resolve())
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--window-px", type=int, default=512)
    parser.add_argument("--hop-px", type=int, default=None)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    print(machine_line(), flush=True)

    sources = sorted(args.corpus.glob("*.wav"))
    if not sources:
        print(f"bench/dataset.py: no WAV files in {args.corpus}")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        audio = Path(tmp) / "audio"
        for copy in range(args.copies):
            folder = audio / f"copy{copy}"
            folder.mkdir(parents=True)
            for source in sources:
                (folder / source.name).symlink_to(source)
        results = {}
        for workers in (1, args.workers):
            out = Path(tmp) / f"out{workers}"
            start = time.perf_counter()
            result = prepare(
                audio,
                out,
                window_px=args.window_px,
                hop_px=args.hop_px,
                workers=workers,
                progress=False,
            )
            seconds = time.perf_counter() - start
            results[workers] = (result.windows_written / seconds, seconds, out)
            print(
                f"workers={workers}: {result.windows_written} windows from {result.files} files "
                f"in {seconds:.2f} s = {result.windows_written / seconds:.2f} windows/s"
            )
        same = _tree(results[1][2]) == _tree(results[args.workers][2])
        ratio = results[args.workers][0] / results[1][0]
        print(f"speed-up with {args.workers} workers: {ratio:.2f}x (identical output: {same})")
        print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
