"""What a training run reports: the CSV log (one row per optimizer step), the loss curve, and
the arguments it ran with."""

from __future__ import annotations

import csv
import io
import json
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from riffusion._files import atomic_output
from riffusion.errors import RiffusionError, install_hint

if TYPE_CHECKING:
    from riffusion.training.settings import TrainingSettings

__all__ = [
    "LOG_NAME",
    "PLOT_NAME",
    "TRACKER_DIR",
    "TrainingLog",
    "make_tracker",
    "plot_loss",
    "write_args",
]

#: Training log: one CSV row per optimizer step.
LOG_NAME = "training_log.csv"
#: Loss curve.
PLOT_NAME = "loss.png"
#: Folder of the TensorBoard event files (``report_to="tensorboard"``).
TRACKER_DIR = "logs"
#: Project name of the TensorBoard run and the Weights & Biases project.
TRACKER_PROJECT = "riffusion-lora"
_FIELDS = ["step", "loss", "learning_rate", "validation_loss", "elapsed_s"]


class TrainingLog:
    """The log's rows: those of a resumed run's earlier steps, then one per step of this run.

    ``elapsed_s`` counts on from the resumed run's last row; the clock starts when the log is
    made.

    Args:
        path: the CSV file.
        start_step: the step this run starts from; rows after it (from steps a crash made
            unsaved) are dropped.
        tracker: an accelerate tracker (:func:`make_tracker`) that gets every value too, or
            ``None``.
    """

    def __init__(self, path: Path, start_step: int, tracker: Any | None = None) -> None:
        self.path, self.tracker = path, tracker
        self.rows: list[dict[str, Any]] = _read_rows(path, start_step) if start_step else []
        self._elapsed_before = float(self.rows[-1]["elapsed_s"]) if self.rows else 0.0
        self._started = time.perf_counter()

    def add(self, step: int, loss: float, learning_rate: float) -> None:
        """Record optimizer step ``step`` (1-based): its mean loss and learning rate."""
        elapsed = self._elapsed_before + time.perf_counter() - self._started
        self.rows.append(
            {
                "step": step,
                "loss": f"{loss:.6g}",
                "learning_rate": f"{learning_rate:.6g}",
                "validation_loss": "",
                "elapsed_s": f"{elapsed:.3f}",
            }
        )
        if self.tracker is not None:
            self.tracker.log({"loss": loss, "learning_rate": learning_rate}, step=step)

    def add_validation_loss(self, step: int, loss: float) -> None:
        """Record the held-out examples' loss after step ``step`` (the last row's)."""
        if self.rows and int(self.rows[-1]["step"]) == step:
            self.rows[-1]["validation_loss"] = f"{loss:.6g}"
        if self.tracker is not None:
            self.tracker.log({"validation_loss": loss}, step=step)

    def write(self) -> None:
        """Write every row to the CSV file, atomically."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=_FIELDS, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        with atomic_output(self.path) as temporary:
            temporary.write_text(buffer.getvalue(), encoding="utf-8")


def _read_rows(path: Path, up_to_step: int) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if int(row["step"]) <= up_to_step]


def make_tracker(report_to: str, output_dir: Path, config: dict[str, Any]) -> Any | None:
    """The accelerate tracker of ``report_to``, started, with ``config`` stored.

    Args:
        report_to: ``"csv"`` (no tracker: the CSV log is always written), ``"tensorboard"``
            (event files in ``output_dir / TRACKER_DIR``) or ``"wandb"`` (a Weights & Biases
            run in the project ``riffusion-lora``, files under ``output_dir``).
        output_dir: the run's output folder.
        config: the run's settings, stored with the run.

    Returns:
        An ``accelerate.tracking`` tracker (``log(values, step=)``, ``finish()``), or ``None``.

    Raises:
        RiffusionError: the tracker's package is not installed.
    """
    if report_to == "csv":
        return None
    from accelerate.tracking import TensorBoardTracker, WandBTracker

    package = {"tensorboard": "tensorboard", "wandb": "wandb"}[report_to]
    try:
        __import__(package)
    except ImportError as error:
        raise RiffusionError(
            f"report_to={report_to!r} needs {package}: pip install {package}, or use "
            "report_to='csv'"
        ) from error
    tracker: Any
    if report_to == "tensorboard":
        tracker = TensorBoardTracker(TRACKER_PROJECT, output_dir / TRACKER_DIR)
    else:
        tracker = WandBTracker(TRACKER_PROJECT, dir=str(output_dir))
    tracker.start()
    # TensorBoard's hyperparameters are scalars and strings: lists are joined.
    tracker.store_init_configuration(
        {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in config.items()}
    )
    return tracker


def plot_loss(path: Path, rows: list[dict[str, Any]], *, stacklevel: int = 2) -> Path | None:
    """Draw the loss per step and its running mean (log scale) to a PNG, atomically.

    Args:
        path: the PNG file.
        rows: the log's rows (``step`` and ``loss`` are read).
        stacklevel: of the warning when matplotlib is missing, as for ``warnings.warn``
            called here (2: the caller's line).

    Returns:
        ``path``, or ``None`` (with a warning) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn(
            f"matplotlib is not installed, so no loss plot was drawn: {install_hint('train')}",
            stacklevel=stacklevel,
        )
        return None
    steps = np.array([int(r["step"]) for r in rows])
    losses = np.array([float(r["loss"]) for r in rows])
    figure = Figure(figsize=(7, 4), dpi=100)
    axes = figure.subplots()
    axes.plot(steps, losses, lw=0.8, alpha=0.45, label="loss per step")
    window = max(1, min(50, len(losses) // 10))
    if window > 1:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        axes.plot(steps[window - 1 :], smooth, lw=1.8, label=f"mean of {window} steps")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("MSE loss")
    axes.set_yscale("log")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png")
    return path


def write_args(output_dir: Path, config: dict[str, Any], settings: TrainingSettings) -> None:
    """Record the run's settings in ``training_args.json`` (for people; resumes read
    ``state.json``)."""
    arguments = {
        **config,
        "steps": settings.steps,
        "validation_prompts": list(settings.validation_prompts),
        "validate_every": settings.validate_every,
        "checkpoint_every": settings.checkpoint_every,
        "checkpoints_total_limit": settings.checkpoints_total_limit,
        "report_to": settings.report_to,
    }
    with atomic_output(output_dir / "training_args.json") as temporary:
        temporary.write_text(json.dumps(arguments, indent=1, sort_keys=True) + "\n")
