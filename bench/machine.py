"""The machine line every benchmark prints first: where (and when) a number was measured.

One line: date (UTC), CPU model, logical cores, the CPU's widest vector instruction set, the
kernels torch dispatches to (``ATEN_CPU_CAPABILITY``) and MKL's cap (``MKL_ENABLE_INSTRUCTIONS``)
when set, torch's version and thread count, the GPU when one is used, and the load average (the
development machines are shared; a loaded machine reads slower).

Run alone: ``python bench/machine.py``. In a bench script (``bench/`` is on ``sys.path`` when the
script runs from there)::

    from machine import machine_line

    print(machine_line())
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import torch

__all__ = ["cpu_model", "instruction_set", "machine_line"]

# Widest first: the first flag the CPU reports names its vector instruction set.
_X86_LEVELS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2"))
_ARM_LEVELS = (("sve2", "SVE2"), ("sve", "SVE"), ("asimd", "NEON"))


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def _field(text: str, *names: str) -> str | None:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in names and value.strip():
            return value.strip()
    return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows of it."""
    text = _cpuinfo()
    model = _field(text, "model name", "hardware", "cpu model")
    if model is None and _field(text, "cpu implementer") is not None:
        # arm64 kernels list implementer and part numbers, not a name.
        implementer = _field(text, "cpu implementer")
        part = _field(text, "cpu part")
        model = f"arm64 implementer {implementer} part {part}"
    return model or platform.processor() or platform.machine() or "unknown CPU"


def instruction_set() -> str:
    """The widest vector instruction set the CPU reports (AVX-512, AVX2, …, NEON, SVE)."""
    flags = set((_field(_cpuinfo(), "flags", "features") or "").split())
    for flag, name in (*_X86_LEVELS, *_ARM_LEVELS):
        if flag in flags:
            return name
    return platform.machine() or "unknown"


def machine_line() -> str:
    """``machine: <date>, <CPU>, <cores>, <ISA>, torch <version> …, load <1-min average>``."""
    parts = [
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        cpu_model(),
        f"{os.cpu_count()} logical cores",
        f"{instruction_set()} (torch kernels {torch.backends.cpu.get_cpu_capability()})",
    ]
    if os.environ.get("MKL_ENABLE_INSTRUCTIONS"):
        parts.append(f"MKL_ENABLE_INSTRUCTIONS={os.environ['MKL_ENABLE_INSTRUCTIONS']}")
    parts.append(f"torch {torch.__version__} with {torch.get_num_threads()} threads")
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name()}")
    if hasattr(os, "getloadavg"):
        parts.append(f"load {os.getloadavg()[0]:.1f}")
    return "machine: " + ", ".join(parts)


if __name__ == "__main__":
    print(machine_line())
