"""Stopping a training run cleanly: SIGINT (Ctrl-C) or SIGTERM asks the run to stop at the next
optimizer step boundary, where it saves a checkpoint and raises :class:`TrainingInterrupted`."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from riffusion.errors import RiffusionError

__all__ = ["STOP_SIGNALS", "StopRequest", "TrainingInterrupted", "stop_on_signals"]

#: The signals that stop a run at the next step boundary.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(RiffusionError):
    """A training run stopped by a signal, after saving a checkpoint at a step boundary.

    Args:
        signal_number: the signal received (``signal.SIGINT`` or ``signal.SIGTERM``).
        step: optimizer steps done and saved.
        checkpoint: the checkpoint folder written (``resume=True`` continues from it).

    Attributes:
        exit_status: ``128 + signal_number`` (130 for SIGINT, 143 for SIGTERM), the shell's
            convention, which ``riffusion train-lora`` exits with.
    """

    def __init__(self, signal_number: int, step: int, checkpoint: Path) -> None:
        self.signal_number, self.step, self.checkpoint = signal_number, step, checkpoint
        self.exit_status = 128 + signal_number
        name = signal.Signals(signal_number).name
        super().__init__(
            f"training stopped by {name} after step {step}; checkpoint saved in "
            f"{str(checkpoint)!r}: run it again with resume=True (--resume) to continue"
        )


class StopRequest:
    """Whether a stop signal arrived: :attr:`signal_number` is ``None`` until one does."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    def handle(self, signal_number: int, frame: FrameType | None) -> None:
        """The signal handler: the first signal asks for a stop, a second one aborts at once
        (``KeyboardInterrupt``, nothing saved)."""
        if self.signal_number is not None:
            raise KeyboardInterrupt
        self.signal_number = signal_number


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Catch :data:`STOP_SIGNALS` in the block; the previous handlers are restored after.

    Signal handlers can only be set from the main thread: elsewhere (a server's worker thread)
    the block runs with the signals' handlers untouched and the request never fires.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {number: signal.signal(number, request.handle) for number in STOP_SIGNALS}
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
