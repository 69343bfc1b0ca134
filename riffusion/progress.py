"""Progress of a running clip, and the per-step hooks of the generating verbs.

A clip is made of windows (one model call each: a long clip has several) and each window of
denoising steps. :meth:`riffusion.Riffuser.on_progress` sets a callback for the calling thread
(a context variable, so a callback set in one thread never reports another thread's clips);
the composition code says how many windows a clip has (:func:`expect_windows`) and asks, for
each window, for the step callback the image model calls (:func:`window_step_callback`), which
also carries the caller's own diffusers-style ``callback_on_step_end``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from riffusion.errors import ParameterError

__all__ = [
    "STEP_TENSOR_INPUTS",
    "Progress",
    "ProgressCallback",
    "StepHooks",
    "expect_windows",
    "reporting",
    "window_step_callback",
]


@dataclass(frozen=True)
class Progress:
    """Where a running clip is: window ``window`` of ``num_windows``, step ``step`` of
    ``num_steps`` (both counted from 1; ``num_steps`` is the steps this window actually runs).
    """

    window: int
    num_windows: int
    step: int
    num_steps: int

    def __str__(self) -> str:
        return f"window {self.window}/{self.num_windows}, step {self.step}/{self.num_steps}"


ProgressCallback = Callable[[Progress], "bool | None"]
"""Called after every denoising step; return ``True`` (or raise
:class:`~riffusion.errors.GenerationCancelled`) to cancel the clip before its next step."""

#: Tensors a ``callback_on_step_end`` may ask for (and replace by returning them in a dict).
STEP_TENSOR_INPUTS = ("latents",)


@dataclass
class _ProgressState:
    callback: ProgressCallback
    window: int = 0
    num_windows: int = 1


_PROGRESS: contextvars.ContextVar[_ProgressState | None] = contextvars.ContextVar(
    "riffusion_progress", default=None
)


@contextlib.contextmanager
def reporting(callback: ProgressCallback) -> Iterator[None]:
    """Report every denoising step of the clips made in this block, in this thread (context).

    Args:
        callback: called with a :class:`Progress` after each step; ``True`` cancels.
    """
    if not callable(callback):
        raise ParameterError(f"callback={callback!r} must be callable")
    token = _PROGRESS.set(_ProgressState(callback))
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def expect_windows(num_windows: int) -> None:
    """Tell the progress callback (if any) that the next clip has ``num_windows`` windows.

    Args:
        num_windows: windows of the next clip.
    """
    state = _PROGRESS.get()
    if state is not None:
        state.window, state.num_windows = 0, num_windows


@dataclass(frozen=True)
class StepHooks:
    """The caller's diffusers-style per-step hook of one verb call.

    Attributes:
        callback_on_step_end: ``callback(model, step, timestep, callback_kwargs)`` after every
            denoising step of every window, as in diffusers; it may return a dict whose
            ``"latents"`` replaces the current latents. ``None``: no hook.
        tensor_inputs: the keys of ``callback_kwargs`` it receives, from
            :data:`STEP_TENSOR_INPUTS` (diffusers' ``callback_on_step_end_tensor_inputs``);
            ``None`` is all of them.
    """

    callback_on_step_end: Callable[..., Any] | None = None
    tensor_inputs: Sequence[str] | None = None

    def __post_init__(self) -> None:
        hook = self.callback_on_step_end
        if hook is not None and not callable(hook):
            raise ParameterError(f"callback_on_step_end={hook!r} must be callable or None")
        inputs = STEP_TENSOR_INPUTS if self.tensor_inputs is None else self.tensor_inputs
        if isinstance(inputs, str) or not isinstance(inputs, tuple | list):
            raise ParameterError(
                f"callback_on_step_end_tensor_inputs={inputs!r} must be a list of names from "
                f"{list(STEP_TENSOR_INPUTS)}"
            )
        unknown = [name for name in inputs if name not in STEP_TENSOR_INPUTS]
        if unknown:
            raise ParameterError(
                f"callback_on_step_end_tensor_inputs={list(inputs)!r} names {unknown[0]!r}; "
                f"the tensors offered are {list(STEP_TENSOR_INPUTS)}"
            )
        object.__setattr__(self, "tensor_inputs", tuple(inputs))


def window_step_callback(hooks: StepHooks | None = None) -> Callable[..., Any] | None:
    """The step callback of the next window: progress reporting plus the caller's hook.

    Counts the window for the progress callback. Returns ``None`` when there is nothing to
    call (no progress callback, no hook), so the model runs without per-step overhead.

    Args:
        hooks: the caller's per-step hook, or ``None``.
    """
    state = _PROGRESS.get()
    hook = hooks.callback_on_step_end if hooks is not None else None
    if state is None and hook is None:
        return None
    if state is not None:
        state.window += 1
        state.num_windows = max(state.num_windows, state.window)

    def on_step_end(model: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> Any:
        outputs = None
        if hook is not None:
            assert hooks is not None and hooks.tensor_inputs is not None  # see __post_init__
            given = {name: kwargs[name] for name in hooks.tensor_inputs}
            outputs = hook(model, step, timestep, given)
            if outputs is not None and not isinstance(outputs, dict):
                raise ParameterError(
                    f"callback_on_step_end returned {type(outputs).__name__}; it must return "
                    "a dict of tensors (or None)"
                )
        if state is not None:
            done = Progress(state.window, state.num_windows, step + 1, kwargs["num_steps"])
            if state.callback(done):
                model.interrupt = True
        return outputs

    return on_step_end
