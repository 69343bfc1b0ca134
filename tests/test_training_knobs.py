"""riffusion.training's knobs and checkpoints: stop signals, resume, learning-rate schedules,
min-SNR weights, noise offset, held-out loss, trackers and their checks."""

from __future__ import annotations

import csv
import os
import signal
import sys
import types

import numpy as np
import pytest
import torch

from riffusion import ParameterError, RiffusionError
from riffusion.testing import make_tiny_model
from tests.training_fixtures import tone_dataset

peft = pytest.importorskip("peft")
training = pytest.importorskip("riffusion.training")
from riffusion.training import loop  # noqa: E402
from riffusion.training.data import CaptionBatches, ExampleOrder, split_examples  # noqa: E402

#: Every knob away from its default, in one run (resumed and compared bit for bit).
KNOBS = {
    "steps": 5,
    "batch_size": 2,
    "learning_rate": 5e-3,
    "lr_scheduler": "cosine",
    "lr_warmup_steps": 2,
    "lora_alpha": 8.0,
    "max_grad_norm": 0.5,
    "snr_gamma": 5.0,
    "noise_offset": 0.1,
    "validation_split": 1 / 3,
    "validate_every": 2,
    "checkpoint_every": 2,
    "checkpoints_total_limit": 2,
    "seed": 3,
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tone_dataset(tmp_path_factory.mktemp("knob_data"))


def _train(dataset, model, out, **kwargs):
    return training.train_lora(dataset, model, out, progress=False, device="cpu", **kwargs)


def _rows(result):
    with open(result.log, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def knob_run(dataset, tiny_model, tmp_path_factory):
    """An uninterrupted run with every knob set, recording which examples each phase reads."""
    calls = {"training": [], "held_out": []}
    phase = ["training"]
    latents, held_out_loss = CaptionBatches.latents, loop.held_out_loss

    def record_latents(self, indices, dtype):
        calls[phase[0]].append(list(indices))
        return latents(self, indices, dtype)

    def record_held_out(*args, **kwargs):
        phase[0] = "held_out"
        try:
            value = held_out_loss(*args, **kwargs)
        finally:
            phase[0] = "training"
        calls.setdefault("values", []).append(value)
        return value

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CaptionBatches, "latents", record_latents)
        patch.setattr(training.lora, "held_out_loss", record_held_out)
        result = _train(dataset, tiny_model, tmp_path_factory.mktemp("once"), **KNOBS)
    return result, calls


def test_stop_signal_saves_a_checkpoint_and_resume_is_bit_identical(
    knob_run, dataset, tiny_model, tmp_path, monkeypatch
):
    from safetensors.torch import load_file

    once, _ = knob_run
    train_step = loop.train_step

    def stopping_step(step, *args):
        result = train_step(step, *args)
        if step == 2:  # during the third step: the run stops after it
            os.kill(os.getpid(), signal.SIGINT)
        return result

    before = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(loop, "train_step", stopping_step)
    out = tmp_path / "split"
    with pytest.raises(training.TrainingInterrupted) as info:
        _train(dataset, tiny_model, out, **KNOBS)
    monkeypatch.setattr(loop, "train_step", train_step)
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    stopped = info.value
    assert isinstance(stopped, RiffusionError)
    assert (stopped.step, stopped.exit_status, stopped.checkpoint) == (3, 130, out / "checkpoint-3")
    assert "SIGINT after step 3" in str(stopped)
    # checkpoint-2 (periodic) and checkpoint-3 (the stop); the limit of 2 keeps both.
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    # Each checkpoint holds its own LoRA weights, which load_lora reads.
    from riffusion import RiffusionPipeline

    pipe = RiffusionPipeline.from_pretrained(tiny_model, device="cpu")
    pipe.load_lora(out / "checkpoint-2", scale=1.0)
    assert load_file(out / "checkpoint-2" / training.LORA_WEIGHT_NAME).keys() == (
        load_file(once.weights).keys()
    )
    with pytest.raises(ParameterError, match="already holds checkpoints"):
        _train(dataset, tiny_model, out, **KNOBS)

    resumed = _train(dataset, tiny_model, out, resume=True, **KNOBS)
    assert (resumed.start_step, resumed.step) == (3, 5)
    assert resumed.losses == once.losses[3:]
    final, reference = load_file(resumed.weights), load_file(once.weights)
    assert final.keys() == reference.keys()
    assert all(torch.equal(final[key], reference[key]) for key in reference)
    # The log (losses, learning rates, held-out losses) is the uninterrupted run's.
    strip = [{k: v for k, v in row.items() if k != "elapsed_s"} for row in _rows(once)]
    assert [{k: v for k, v in r.items() if k != "elapsed_s"} for r in _rows(resumed)] == strip
    # The limit: checkpoint-4 and checkpoint-5 are left.
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-5"]
    assert resumed.checkpoint == out / "checkpoint-5"

    # A named checkpoint: back to step 4 of the same run, then on to 5 again, same weights.
    again = _train(dataset, tiny_model, out, resume=out / "checkpoint-4", **KNOBS)
    assert (again.start_step, again.losses) == (4, once.losses[4:])
    final = load_file(again.weights)
    assert all(torch.equal(final[key], reference[key]) for key in reference)
    with pytest.raises(ParameterError, match="is not a checkpoint folder"):
        _train(dataset, tiny_model, out, resume=out / "checkpoint-1", **KNOBS)
    with pytest.raises(ParameterError, match="snr_gamma: saved 5.0, now 1.0"):
        _train(dataset, tiny_model, out, resume=True, **{**KNOBS, "snr_gamma": 1.0})


def test_learning_rates_are_get_schedulers(knob_run):
    from diffusers.optimization import get_scheduler

    once, _ = knob_run
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=KNOBS["learning_rate"])
    schedule = get_scheduler(
        "cosine", optimizer, num_warmup_steps=2, num_training_steps=KNOBS["steps"]
    )
    expected = []
    for _ in range(KNOBS["steps"]):
        expected.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    logged = [float(row["learning_rate"]) for row in _rows(once)]
    # Warm-up from 0 (steps 1-2), then half a cosine: 5e-3, 3.75e-3 (cos² of 30°), 1.25e-3.
    np.testing.assert_allclose(expected, [0.0, 2.5e-3, 5e-3, 3.75e-3, 1.25e-3], rtol=1e-12)
    np.testing.assert_allclose(logged, expected, rtol=1e-5)  # the CSV keeps 6 digits


def test_held_out_windows_are_only_evaluated(knob_run):
    once, calls = knob_run
    # 3 windows, validation_split=1/3: one held out, never trained on.
    assert len(once.held_out) == 1
    held = once.held_out[0]
    assert calls["training"] and all(held not in indices for indices in calls["training"])
    # Evaluated after steps 2, 4 and 5 (validate_every=2, and the end), on that window only.
    assert calls["held_out"] == [[held]] * 3
    rows = _rows(once)
    logged = {int(r["step"]): float(r["validation_loss"]) for r in rows if r["validation_loss"]}
    assert list(logged) == [2, 4, 5]
    np.testing.assert_allclose(list(logged.values()), calls["values"], rtol=1e-5)


def test_split_examples_and_the_training_stream():
    training_ids, held = split_examples(10, 0.3, seed=0)
    assert len(held) == 3 and len(training_ids) == 7
    assert sorted(training_ids + held) == list(range(10))
    assert split_examples(10, 0.3, seed=0) == (training_ids, held)
    order = ExampleOrder(7, 0, training_ids)
    for epoch in range(3):  # each epoch: a permutation of the training examples
        assert sorted(order[7 * epoch + i] for i in range(7)) == training_ids
    assert split_examples(4, 0.0, seed=0) == ([0, 1, 2, 3], [])
    assert split_examples(4, 0.01, seed=0)[1] != []  # at least one when asked
    with pytest.raises(ParameterError, match="validation_split=0.9 holds out 3 of the 3"):
        split_examples(3, 0.9, seed=0)


def test_min_snr_weights_equal_the_formula():
    from diffusers import DDPMScheduler

    config = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
    timesteps = torch.tensor([0, 10, 300, 999])
    for prediction_type, extra in (("epsilon", 0.0), ("v_prediction", 1.0)):
        scheduler = DDPMScheduler(**config, prediction_type=prediction_type)
        alpha_bar = scheduler.alphas_cumprod[timesteps].double()
        snr = alpha_bar / (1 - alpha_bar)
        expected = torch.minimum(snr, torch.tensor(5.0, dtype=torch.float64)) / (snr + extra)
        weights = loop.min_snr_weights(scheduler, timesteps, 5.0)
        torch.testing.assert_close(weights.double(), expected, rtol=1e-5, atol=0)
    # Epsilon: weight 1 where SNR <= gamma (noisy timesteps), gamma / SNR below that.
    epsilon = DDPMScheduler(**config)
    weights = loop.min_snr_weights(epsilon, timesteps, 5.0)
    assert weights[0] < 0.01 and weights[2] == 1.0 and weights[3] == 1.0


def test_noise_offset_adds_a_per_channel_constant():
    shape = torch.Size((2, 4, 8, 8))
    plain, plain_t = loop.draw_seeded_noise(123, shape, 1000)
    offset, offset_t = loop.draw_seeded_noise(123, shape, 1000, noise_offset=0.1)
    assert torch.equal(plain_t, offset_t)
    # The same generator, one more draw after the noise and timesteps.
    generator = torch.Generator().manual_seed(123)
    torch.randn(shape, generator=generator)
    torch.randint(0, 1000, (2,), generator=generator)
    extra = torch.randn((2, 4, 1, 1), generator=generator)
    torch.testing.assert_close(offset - plain, (0.1 * extra).expand(shape), rtol=0, atol=1e-6)
    # Without an offset, draw_noise is what it was: no extra draw.
    from riffusion.training.randomness import NOISE, seed_for

    noise, _ = loop.draw_noise(5, 0, 0, shape, 1000)
    assert torch.equal(noise, loop.draw_seeded_noise(seed_for(5, NOISE, 0, 0), shape, 1000)[0])


def test_bad_knobs_name_the_argument(dataset, tiny_model, tmp_path):
    for kwargs, message in (
        ({"lr_scheduler": "exp"}, "lr_scheduler='exp' must be one of constant, "),
        ({"lr_scheduler": "constant", "lr_warmup_steps": 5}, "lr_warmup_steps=5 has no effect"),
        ({"optimizer": "sgd"}, "optimizer='sgd' must be one of adamw, adamw8bit"),
        ({"report_to": "mlflow"}, "report_to='mlflow' must be one of csv, tensorboard, wandb"),
        ({"snr_gamma": 0}, "snr_gamma=0 must be a positive"),
        ({"noise_offset": -0.1}, r"noise_offset=-0.1 must be a finite number >= 0"),
        ({"validation_split": 1.0}, "validation_split=1.0 must be a finite number >= 0 and below"),
        ({"validation_split": 0.9}, "holds out 3 of the 3"),
        ({"checkpoints_total_limit": 0}, "checkpoints_total_limit=0"),
        ({"checkpoint_every": 0}, "checkpoint_every=0"),
        ({"lora_alpha": -1}, "lora_alpha=-1"),
        ({"max_grad_norm": 0}, "max_grad_norm=0"),
        ({"resume": 3}, "resume=3 must be True"),
    ):
        with pytest.raises(ParameterError, match=message):
            _train(dataset, tiny_model, tmp_path / "out", steps=1, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "package", "fix"),
    [
        ({"optimizer": "adamw8bit"}, "bitsandbytes", "pip install bitsandbytes"),
        ({"report_to": "tensorboard"}, "tensorboard", "pip install tensorboard"),
        ({"report_to": "wandb"}, "wandb", "pip install wandb"),
    ],
)
def test_missing_optional_packages_are_named(dataset, tiny_model, tmp_path, kwargs, package, fix):
    try:
        __import__(package)
    except ImportError:
        pass
    else:
        pytest.skip(f"{package} is installed")
    with pytest.raises(RiffusionError, match=fix) as info:
        _train(dataset, tiny_model, tmp_path / "out", steps=1, **kwargs)
    assert not isinstance(info.value, ParameterError)


def test_report_to_wandb_logs_every_value(dataset, tiny_model, tmp_path, monkeypatch):
    logged, stored, finished = [], {}, []
    run = types.SimpleNamespace(
        log=lambda values, step=None: logged.append((step, values)),
        finish=lambda: finished.append(True),
    )
    fake = types.ModuleType("wandb")
    fake.init = lambda project, **kwargs: run if project == "riffusion-lora" else None
    fake.config = types.SimpleNamespace(update=lambda values, **kwargs: stored.update(values))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    result = _train(
        dataset, tiny_model, tmp_path / "w", steps=2, report_to="wandb", validation_split=0.3
    )
    assert finished == [True] and stored["seed"] == 0 and stored["validation_split"] == 0.3
    losses = [(step, v["loss"]) for step, v in logged if "loss" in v]
    assert losses == [(1, result.losses[0]), (2, result.losses[1])]
    held = [(step, v["validation_loss"]) for step, v in logged if "validation_loss" in v]
    assert [step for step, _ in held] == [2]
    assert float(_rows(result)[-1]["validation_loss"]) == pytest.approx(held[0][1], rel=1e-5)


def test_command_line_knobs_and_sigterm(dataset, tiny_model, tmp_path, monkeypatch, capsys):
    from riffusion.cli import main

    out = tmp_path / "cli"
    argv = [
        "train-lora", str(dataset), "-o", str(out), "--model", str(tiny_model), "--device",
        "cpu", "--steps", "3", "--lr-scheduler", "linear", "--lr-warmup-steps", "1",
        "--lora-alpha", "2", "--max-grad-norm", "0.5", "--snr-gamma", "5", "--noise-offset",
        "0.05", "--validation-split", "0.3", "--checkpoint-every", "1",
        "--checkpoints-total-limit", "1", "-q",
    ]  # fmt: skip
    train_step = loop.train_step

    def stopping_step(step, *args):
        result = train_step(step, *args)
        if step == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    monkeypatch.setattr(loop, "train_step", stopping_step)
    assert main(argv) == 143
    assert "SIGTERM after step 1" in capsys.readouterr().err
    monkeypatch.setattr(loop, "train_step", train_step)
    assert main([*argv, "--resume"]) == 0
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3"]
    with open(out / "training_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # linear: warm-up to 1e-4 at step 2, then to 0 at step 3.
    assert [float(r["learning_rate"]) for r in rows] == [0.0, 1e-4, 5e-5]
    assert rows[-1]["validation_loss"] != ""
    assert main([*argv, "--lr-scheduler", "exp"]) == 2
    assert "--lr-scheduler: invalid choice: 'exp'" in capsys.readouterr().err
