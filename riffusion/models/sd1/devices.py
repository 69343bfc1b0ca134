"""Compute devices, dtypes and device-independent random noise.

Policy:

* ``"auto"`` picks CUDA (float16), then Apple MPS (float32), then CPU (float32).
* A device that is asked for explicitly but is not available raises :class:`DeviceError`; there is
  never a silent fallback to the CPU (a 50x slowdown should not go unnoticed).
* Random noise is always drawn on the CPU from a ``torch.Generator`` seeded with the seed, then
  moved, so a seed gives the same starting noise on every device.
"""

from __future__ import annotations

import torch

from riffusion._checks import check_seed, mps_available, unavailable_reason
from riffusion.errors import DeviceError

__all__ = ["cpu_generator", "randn", "resolve_device", "resolve_dtype"]

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
_ALLOWED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def resolve_dtype(dtype: torch.dtype | str | None, *, device: torch.device) -> torch.dtype:
    """Return the floating-point dtype to run on ``device``.

    Args:
        dtype: ``None`` for the device's default (float16 on CUDA, float32 elsewhere), a
            ``torch.dtype`` or one of ``"float32"``, ``"float16"``, ``"bfloat16"`` (aliases
            ``"fp32"``, ``"fp16"``, ``"half"``, ``"bf16"``).
        device: The device the models will run on.

    Returns:
        One of ``torch.float32``, ``torch.float16``, ``torch.bfloat16``.

    Raises:
        DeviceError: If the dtype is unknown or not a supported floating-point type.
    """
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        key = dtype.strip().lower().removeprefix("torch.")
        if key not in _DTYPES:
            raise DeviceError(
                f"torch_dtype={dtype!r} is not a supported dtype; expected one of "
                f"{sorted(_DTYPES)} or a torch.dtype"
            )
        return _DTYPES[key]
    if not isinstance(dtype, torch.dtype) or dtype not in _ALLOWED_DTYPES:
        raise DeviceError(
            f"torch_dtype={dtype!r} is not supported; expected torch.float32, torch.float16 or "
            "torch.bfloat16"
        )
    return dtype


def resolve_device(
    device: str | torch.device = "auto", dtype: torch.dtype | str | None = None
) -> tuple[torch.device, torch.dtype]:
    """Turn a device request into an available ``torch.device`` and a dtype.

    Args:
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
            ``"mps"`` or a ``torch.device``.
        dtype: See :func:`resolve_dtype`; ``None`` means float16 on CUDA and float32 elsewhere.

    Returns:
        ``(device, dtype)``. A bare ``"cuda"`` resolves to the current CUDA device index.

    Raises:
        DeviceError: If the device string is malformed, names an unknown device type, or names a
            device that is not available on this machine (no silent fallback).
    """
    if isinstance(device, str) and device.strip().lower() == "auto":
        if torch.cuda.is_available():
            resolved = torch.device("cuda", torch.cuda.current_device())
        elif mps_available():
            resolved = torch.device("mps")
        else:
            resolved = torch.device("cpu")
        return resolved, resolve_dtype(dtype, device=resolved)

    if isinstance(device, str):
        try:
            requested = torch.device(device.strip().lower())
        except (RuntimeError, ValueError) as exc:
            raise DeviceError(
                f"device={device!r} is not a valid device; expected 'auto', 'cpu', 'cuda', "
                "'cuda:N' or 'mps'"
            ) from exc
    elif isinstance(device, torch.device):
        requested = device
    else:
        raise DeviceError(
            f"device={device!r} must be a string such as 'auto', 'cpu', 'cuda:0', 'mps' or a "
            "torch.device"
        )

    if requested.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(
            f"device={device!r} has unsupported type {requested.type!r}; expected 'cpu', 'cuda' "
            "or 'mps'"
        )
    reason = unavailable_reason(requested)
    if reason is not None:
        raise DeviceError(
            f"device={device!r} was requested but {reason}; use device='auto' or 'cpu'"
        )
    if requested.type == "cuda":
        index = torch.cuda.current_device() if requested.index is None else requested.index
        resolved = torch.device("cuda", index)
    else:
        resolved = torch.device(requested.type)
    return resolved, resolve_dtype(dtype, device=resolved)


def cpu_generator(seed: int) -> torch.Generator:
    """Return a CPU ``torch.Generator`` seeded with ``seed``.

    Args:
        seed: A non-negative int below 2**63.

    Raises:
        ParameterError: If ``seed`` is not such an int.
    """
    check_seed("seed", seed)
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    return generator


def randn(
    shape: tuple[int, ...],
    *,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw standard normal noise on the CPU in float32, then move and cast it.

    Drawing on the CPU in float32 makes the noise for a given generator state identical on every
    device and for every model dtype.

    Args:
        shape: Tensor shape, e.g. ``(1, 4, 64, 64)`` for one 512x512 image's latents.
        generator: A CPU generator (see :func:`cpu_generator`); it is advanced.
        device: Destination device.
        dtype: Destination dtype.

    Returns:
        A tensor of ``shape`` with i.i.d. N(0, 1) entries on ``device`` in ``dtype``.
    """
    if generator.device.type != "cpu":
        raise DeviceError(
            f"generator.device={generator.device!s} must be 'cpu' so that a seed gives the same "
            "noise on every device"
        )
    noise = torch.randn(shape, generator=generator, dtype=torch.float32, device="cpu")
    return noise.to(device=device, dtype=dtype)
