"""riffusion.training under ``accelerate launch --multi_gpu --num_processes 2`` on the CPU
(gloo): one writer, processes in sync, and the same run as one process with the global batch.

Run as a script (``accelerate launch ... tests/test_training_multiprocess.py DATASET MODEL OUT
DUMP``), this file is the launched worker: it trains and dumps each process's adapters.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

#: Settings of both runs; ``batch_size`` is per process.
SETTINGS = {
    "steps": 4,
    "rank": 2,
    "learning_rate": 1e-2,
    "snr_gamma": 5.0,
    "validation_split": 0.34,
    "validation_prompts": ["high"],
    "validate_every": 2,
    "validation_steps": 2,
    "checkpoint_every": 2,
    "seed": 5,
    "progress": False,
    "device": "cpu",
}


def _worker(dataset: str, model: str, out: str, dump: str, mode: str) -> None:
    """Train with two processes; each dumps its unwrapped adapters and its result.

    ``mode``: ``"train"``; ``"stop"``: only the second process gets SIGINT, during step 1;
    ``"resume"``: continue the run in ``out``.
    """
    import signal

    from safetensors.torch import save_file

    from riffusion.training import TrainingInterrupted, loop, lora, train_lora
    from riffusion.training.adapters import adapter_state

    seen = {}
    run_steps, train_step = loop.run_steps, loop.train_step

    def recording(models, *args, **kwargs):
        seen["models"] = models
        return run_steps(models, *args, **kwargs)

    def stopping_step(step, models, *args):
        result = train_step(step, models, *args)
        if step == 0 and models.accelerator.process_index == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return result

    lora.run_steps = recording
    if mode == "stop":
        loop.train_step = stopping_step
    try:
        result = train_lora(dataset, model, out, batch_size=1, resume=mode == "resume", **SETTINGS)
    except TrainingInterrupted as stopped:
        rank = seen["models"].accelerator.process_index
        record = {"step": stopped.step, "checkpoint": str(stopped.checkpoint)}
        (Path(dump) / f"{mode}{rank}.json").write_text(json.dumps(record))
        return
    models = seen["models"]
    rank = models.accelerator.process_index
    unet = models.accelerator.unwrap_model(models.unet)
    save_file(adapter_state(unet), Path(dump) / f"{mode}{rank}.safetensors")
    record = {
        "processes": models.accelerator.num_processes,
        "wrapped": type(models.unet).__name__,
        "losses": list(result.losses),
        "validation": [str(p) for p in result.validation],
        "checkpoint": str(result.checkpoint),
    }
    (Path(dump) / f"{mode}{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    _worker(*sys.argv[1:6])
    sys.exit(0)

import pytest  # noqa: E402
import torch  # noqa: E402

from riffusion.testing import make_tiny_model  # noqa: E402
from tests.training_fixtures import tone_dataset  # noqa: E402

pytest.importorskip("peft")
pytest.importorskip("accelerate")
training = pytest.importorskip("riffusion.training")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tone_dataset(tmp_path_factory.mktemp("multi_data"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(dataset: Path, model: Path, out: Path, dump: Path, mode: str) -> None:
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    if accelerate is None:
        pytest.skip("the accelerate command is not installed")
    command = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
        __file__, str(dataset), str(model), str(out), str(dump), mode,
    ]  # fmt: skip
    # `--cpu --num_processes 2` starts one process (accelerate runs several CPU processes only
    # through MPI); `--multi_gpu` starts them with torchrun, and device="cpu" puts them on the
    # CPU with gloo. A private HF_HOME: no accelerate config of this machine's user is read.
    env = {**os.environ, "HF_HOME": str(dump / "hf_home"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]


@pytest.fixture(scope="module")
def runs(dataset, tiny_model, tmp_path_factory):
    """A two-process run with batch 1 per process, and one process with batch 2."""
    root = tmp_path_factory.mktemp("multi")
    dump = root / "dump"
    dump.mkdir()
    _launch(dataset, tiny_model, root / "two", dump, "train")
    single = training.train_lora(dataset, tiny_model, root / "one", batch_size=2, **SETTINGS)
    return root / "two", dump, single


@pytest.mark.slow
def test_one_process_writes(runs):
    out, dump, _ = runs
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "checkpoint-2",
        "checkpoint-4",
        "loss.png",
        "pytorch_lora_weights.safetensors",
        "training_args.json",
        "training_log.csv",
        "validation",
    ]
    with open(out / "training_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert sorted(p.name for p in (out / "validation").iterdir()) == ["step_000002", "step_000004"]
    records = [json.loads((dump / f"train{r}.json").read_text()) for r in (0, 1)]
    assert [r["processes"] for r in records] == [2, 2]
    assert records[0]["wrapped"] == "DistributedDataParallel"
    assert len(records[0]["validation"]) == 4 and records[1]["validation"] == []
    assert records[0]["checkpoint"] == records[1]["checkpoint"] == str(out / "checkpoint-4")
    # Every process logs the loss of the global batch.
    assert records[0]["losses"] == records[1]["losses"]
    np.testing.assert_allclose([float(r["loss"]) for r in rows], records[0]["losses"], rtol=1e-5)


@pytest.mark.slow
def test_processes_end_with_the_same_adapters(runs):
    from safetensors.torch import load_file

    _, dump, _ = runs
    first, second = (load_file(dump / f"train{r}.safetensors") for r in (0, 1))
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)


@pytest.mark.slow
def test_two_processes_of_batch_one_train_like_one_of_batch_two(runs):
    from safetensors.torch import load_file

    out, dump, single = runs
    losses = json.loads((dump / "train0.json").read_text())["losses"]
    # The same examples, noise and timesteps; only the order of float sums differs.
    np.testing.assert_allclose(losses, single.losses, rtol=1e-5)
    two = load_file(out / "pytorch_lora_weights.safetensors")
    one = load_file(single.weights)
    assert two.keys() == one.keys()
    for key in two:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_a_stop_in_one_process_stops_all_and_resume_is_the_same_run(runs, dataset, tiny_model):
    from safetensors.torch import load_file

    out, dump, _ = runs
    split = out.parent / "split"
    _launch(dataset, tiny_model, split, dump, "stop")
    # Only the second process got the signal; both stop after step 1, the main one saves.
    records = [json.loads((dump / f"stop{r}.json").read_text()) for r in (0, 1)]
    assert records[0] == records[1] == {"step": 1, "checkpoint": str(split / "checkpoint-1")}
    assert sorted(p.name for p in split.glob("checkpoint-*")) == ["checkpoint-1"]
    _launch(dataset, tiny_model, split, dump, "resume")
    resumed = load_file(split / "pytorch_lora_weights.safetensors")
    whole = load_file(out / "pytorch_lora_weights.safetensors")
    assert resumed.keys() == whole.keys()
    assert all(torch.equal(resumed[key], whole[key]) for key in whole)
    with open(split / "training_log.csv", newline="") as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [1, 2, 3, 4]
