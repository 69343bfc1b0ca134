"""Batched generation (``RiffusionPipeline.riffuse_batch``) and ``render(..., batch_size=N)``.

The model is the tiny random checkpoint on the CPU with one torch thread. Two tolerances:

- With a UNet that evaluates each sample of its batch alone (:func:`per_sample_unet`), a batched
  item must equal its single generation *bitwise*: everything outside the UNet (noise drawn from
  the item's own generator, the scheduler steps, guidance, mask blends, the VAE) is the same
  element-wise arithmetic, so any difference is a bug (a shared generator, a row mix-up).
- With the real UNet, the convolutions and matrix products of a batch of ``2N`` sum in another
  order than those of a batch of 2 (oneDNN and the BLAS block by shape): float32 differences of
  a few units in the last place, far below half a grey level after the VAE, so a pixel can only
  move when it sits on a rounding boundary — at most one grey level, in a tiny fraction of the
  pixels (measured: ≤ 5e-5 of them). Wrong noise moves pixels by tens of levels.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from riffusion.batch import (
    AUDIO_NAME,
    IMAGE_NAME,
    MANIFEST_NAME,
    RECIPE_NAME,
    make_job,
    read_manifest,
    render,
)
from riffusion.batch.groups import form_groups, group_key
from riffusion.errors import ParameterError, RiffusionError
from riffusion.inputs import PromptInput
from riffusion.models.sd1.masks import time_range_mask
from tests.diffusion_fixtures import _one_torch_thread, gradient_image, tiny_model, tiny_pipe
from tests.test_batch import short_job

__all__ = ["_one_torch_thread", "tiny_model", "tiny_pipe"]  # the fixtures used below

# A pixel on a rounding boundary may flip by one grey level (see the module docstring); the
# fraction of such pixels, measured at <= 5e-5 on the tiny model, is bounded 20x above that.
MAX_FLIPPED = 1e-3


def starts(count: int, *, guidance: float = 7.0, **extra) -> list[PromptInput]:
    return [
        PromptInput(prompt=f"tune {index}", seed=10 + index, guidance=guidance, **extra)
        for index in range(count)
    ]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture
def per_sample_unet(tiny_pipe):
    """Make the tiny UNet evaluate every sample of its batch alone (batch-size invariant)."""
    unet = tiny_pipe.unet
    forward = unet.forward

    def one_by_one(sample, timestep, encoder_hidden_states=None, **kwargs):
        outputs = [
            forward(
                sample[i : i + 1], timestep, encoder_hidden_states=encoder_hidden_states[i : i + 1]
            ).sample
            for i in range(sample.shape[0])
        ]
        return types.SimpleNamespace(sample=torch.cat(outputs))

    unet.forward = one_by_one
    try:
        yield tiny_pipe
    finally:
        del unet.forward


@pytest.fixture
def scheduler(tiny_pipe, request):
    """Run the test with ``request.param``'s scheduler; the pipeline's own is put back."""
    own = tiny_pipe.scheduler
    if request.param != "default":
        tiny_pipe.set_scheduler(request.param)
    yield request.param
    tiny_pipe.scheduler = own


# ------------------------------------------------------------------------- the diffusion layer
@pytest.mark.parametrize("scheduler", ["default", "euler_ancestral"], indirect=True)
@pytest.mark.parametrize("guidance", [7.0, 1.0])
@pytest.mark.parametrize("masked", [False, True])
def test_each_item_is_its_single_generation_with_a_batch_invariant_unet(
    per_sample_unet, scheduler, guidance, masked
):
    # euler_ancestral draws noise at every step: each item must draw it from its own generator.
    pipe = per_sample_unet
    init = gradient_image(512, 64)
    mask = time_range_mask(width=512, height=64, keep_start_px=0, keep_end_px=256)
    kwargs = {"init_image": init, "mask_image": mask if masked else None, "num_inference_steps": 4}
    items = starts(3, guidance=guidance, denoising=0.8, negative_prompt="hiss")
    batched = pipe.riffuse_batch(items, **kwargs)
    for item, result in zip(items, batched, strict=True):
        single = pipe.riffuse(item, **kwargs)
        np.testing.assert_array_equal(pixels(result.image), pixels(single.image))
        assert result.seeds == single.seeds and result.timesteps == single.timesteps
        assert (result.denoising, result.guidance) == (single.denoising, single.guidance)


def test_text_to_image_items_are_their_single_generations(per_sample_unet):
    items = starts(2)
    batched = per_sample_unet.riffuse_batch(items, width=128, height=64, num_inference_steps=3)
    for item, result in zip(items, batched, strict=True):
        single = per_sample_unet.riffuse(item, width=128, height=64, num_inference_steps=3)
        np.testing.assert_array_equal(pixels(result.image), pixels(single.image))


@pytest.mark.parametrize("guidance", [7.0, 1.0])
def test_batched_items_differ_from_single_ones_by_at_most_one_grey_level(tiny_pipe, guidance):
    init = gradient_image(512, 64)
    items = starts(4, guidance=guidance)
    batched = tiny_pipe.riffuse_batch(items, init_image=init, num_inference_steps=6)
    singles = [tiny_pipe.riffuse(item, init_image=init, num_inference_steps=6) for item in items]
    for result, single in zip(batched, singles, strict=True):
        difference = np.abs(pixels(result.image) - pixels(single.image))
        assert difference.max() <= 1
        assert (difference > 0).mean() <= MAX_FLIPPED
    # ...while another item's noise is far away: the comparison above has teeth.
    assert np.abs(pixels(batched[0].image) - pixels(singles[1].image)).max() > 16


def test_a_batch_of_one_is_bitwise_riffuse(tiny_pipe):
    # Same UNet batch shapes (2 with guidance): the same arithmetic as the single path.
    init = gradient_image(512, 64)
    (item,) = starts(1)
    (result,) = tiny_pipe.riffuse_batch([item], init_image=init, num_inference_steps=4)
    single = tiny_pipe.riffuse(item, init_image=init, num_inference_steps=4)
    np.testing.assert_array_equal(pixels(result.image), pixels(single.image))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (PromptInput(prompt="x", seed=1), "starts=PromptInput"),
        ([], r"len\(starts\)=0 must be in \[1, 64\]"),
        ([PromptInput(prompt="x", seed=1)] * 65, r"len\(starts\)=65 must be in \[1, 64\]"),
        ([PromptInput(prompt="x", seed=1), "y"], r"starts\[1\]='y' must be a PromptInput"),
        (
            [PromptInput(prompt="x", seed=1), PromptInput(prompt="y", seed=2, guidance=3.0)],
            r"starts\[1\].guidance=3.0 differs from starts\[0\].guidance=7.0",
        ),
        (
            [PromptInput(prompt="x", seed=1), PromptInput(prompt="y", seed=2, denoising=0.5)],
            r"starts\[1\].denoising=0.5 differs",
        ),
        (
            [PromptInput(prompt="x", seed=1), PromptInput(prompt="y", seed=2, negative_prompt="z")],
            r"starts\[1\].negative_prompt='z' differs",
        ),
    ],
)
def test_bad_batches_are_refused_before_any_model_runs(tiny_pipe, value, message):
    with pytest.raises(ParameterError, match=message):
        tiny_pipe.riffuse_batch(value, init_image=gradient_image(64, 64), num_inference_steps=2)


def test_the_single_generation_checks_apply_to_every_item(tiny_pipe):
    items = [PromptInput(prompt="x", seed=1), PromptInput(prompt="word " * 300, seed=2)]
    with pytest.raises(ParameterError, match="at most 225 tokens"):
        tiny_pipe.riffuse_batch(items, init_image=gradient_image(64, 64), num_inference_steps=2)
    with pytest.raises(ParameterError, match="num_inference_steps=0"):
        tiny_pipe.riffuse_batch(starts(2), init_image=gradient_image(64, 64), num_inference_steps=0)


def test_prompts_of_different_chunk_counts_cannot_share_a_batch(tiny_pipe):
    items = [PromptInput(prompt="x", seed=1), PromptInput(prompt="word " * 30, seed=2)]
    with pytest.raises(ParameterError, match=r"\[1, 2\] chunks of 75 tokens"):
        tiny_pipe.riffuse_batch(items, init_image=gradient_image(64, 64), num_inference_steps=2)


def test_the_limits_of_the_app_and_the_diffusion_layer_agree():
    from riffusion.batch.rendering import MAX_BATCH_SIZE
    from riffusion.models.sd1 import batching

    assert MAX_BATCH_SIZE == batching.MAX_BATCH_SIZE == 64


# ------------------------------------------------------------------------------ grouping rules
DROP = object()  # a short-form key to leave out


def recipe(**extra):
    job = {**short_job("x", 1), **extra}
    return make_job({key: value for key, value in job.items() if value is not DROP}).recipe


def test_single_window_text_to_audio_and_endless_riffuse_group():
    base = group_key(recipe())
    assert base is not None
    assert group_key(recipe(prompt="other", seed=99)) == base  # prompt and seed may differ
    assert group_key(recipe(seed_image="straight_beat", denoising=0.6)) is not None
    assert group_key(recipe(kind="riffuse", duration_s=DROP)) is not None
    for changed in (
        {"guidance": 3.0},
        {"negative_prompt": "hiss"},
        {"num_inference_steps": 3},
        {"duration_s": 2.0},
        {"scheduler": "euler"},
        {"seed_image": "straight_beat"},
    ):
        key = group_key(recipe(**changed))
        assert key is not None and key != base, changed


def test_longer_clips_loops_and_interpolations_render_alone():
    assert group_key(recipe(duration_s=10.0)) is None  # continuation windows
    assert group_key(recipe(kind="loop", duration_s=DROP)) is None
    end = {"prompt": "b", "seed": 2}
    assert group_key(recipe(kind="riffuse", duration_s=DROP, end=end, alpha=0.5)) is None


@pytest.mark.parametrize("duration_s", [0.5, 5.0, 5.11, 5.12, 5.2, 7.0])
def test_the_one_window_rule_is_the_continuations(duration_s):
    from riffusion.compose.continuation import continuation_windows

    job = make_job(short_job("x", 1, duration_s=duration_s, params={}))
    params = job.recipe.params
    columns = max(2, -(-round(duration_s * params.sample_rate) // params.hop_length) + 1)
    assert (group_key(job.recipe) is not None) == (continuation_windows(columns) == 1)


def test_groups_hold_up_to_batch_size_jobs_of_one_key_in_order():
    jobs = [make_job(short_job(f"a{i}", i)) for i in range(5)]
    loop = {key: value for key, value in short_job("loop", 0, kind="loop").items()}
    del loop["duration_s"]
    jobs.insert(2, make_job(loop))
    jobs.insert(4, make_job(short_job("g3", 0, guidance=3.0)))
    groups = form_groups(jobs, 2)
    assert [[job.id for job in group] for group in groups] == [
        ["a0", "a1"],
        ["loop"],
        ["a2", "a3"],
        ["g3"],
        ["a4"],
    ]
    assert [len(group) for group in form_groups(jobs, 1)] == [1] * 7
    assert [job.id for job in form_groups(jobs, 64)[0]] == [
        "a0",
        "a1",
        "a2",
        "a3",
        "a4",
    ]


# ---------------------------------------------------------------------------------- rendering
JOBS = [short_job(f"clip-{index}", seed=index) for index in range(4)]


@pytest.fixture(scope="module")
def one_at_a_time(tmp_path_factory, tiny_model) -> Path:
    out = tmp_path_factory.mktemp("single") / "out"
    assert render(JOBS, out, model=str(tiny_model), device="cpu").ok
    return out


def files(root: Path, job_id: str) -> dict[str, bytes]:
    return {name: (root / job_id / name).read_bytes() for name in (AUDIO_NAME, RECIPE_NAME)}


def image_pixels(root: Path, job_id: str) -> np.ndarray:
    return pixels(Image.open(root / job_id / IMAGE_NAME).convert("RGB"))


class Spy:
    """Counts the items of every ``riffuse_batch`` call of the pipeline class."""

    def __init__(self, monkeypatch) -> None:
        from riffusion.models.sd1.batching import BatchingMixin

        self.calls: list[int] = []
        original = BatchingMixin.riffuse_batch

        def spy(pipeline, items, **kwargs):
            self.calls.append(len(items))
            return original(pipeline, items, **kwargs)

        monkeypatch.setattr(BatchingMixin, "riffuse_batch", spy)


def test_grouped_jobs_render_in_one_batch_close_to_one_at_a_time(
    tiny_model, one_at_a_time, tmp_path, monkeypatch
):
    spy = Spy(monkeypatch)
    out = tmp_path / "out"
    result = render(JOBS, out, model=str(tiny_model), device="cpu", batch_size=3)
    assert result.ok and result.rendered == tuple(job["id"] for job in JOBS)
    assert spy.calls == [3]  # clip-3 is a group of one: rendered alone
    entries = {entry.id: entry for entry in read_manifest(out)}
    assert [entry.id for entry in read_manifest(out)] == [job["id"] for job in JOBS]
    assert all(entry.status == "done" and entry.attempts == 1 for entry in entries.values())
    assert files(out, "clip-3") == files(one_at_a_time, "clip-3")
    for job in JOBS:
        source = json.loads((one_at_a_time / job["id"] / RECIPE_NAME).read_text())
        assert json.loads((out / job["id"] / RECIPE_NAME).read_text()) == source
        difference = np.abs(image_pixels(out, job["id"]) - image_pixels(one_at_a_time, job["id"]))
        assert difference.max() <= 1 and (difference > 0).mean() <= MAX_FLIPPED
    # Rerunning finds every job finished, whichever batch size made it.
    again = render(JOBS, out, model=str(tiny_model), device="cpu", batch_size=1)
    assert again.rendered == () and len(again.skipped) == 4


def test_a_job_failing_before_its_group_renders_fails_alone(tiny_model, tmp_path, monkeypatch):
    spy = Spy(monkeypatch)

    def before_attempt(job_id: str, attempt: int) -> None:
        if job_id == "clip-1":
            raise ParameterError("a permanent problem")

    result = render(
        JOBS,
        tmp_path / "out",
        model=str(tiny_model),
        device="cpu",
        batch_size=4,
        before_attempt=before_attempt,
    )
    assert result.failed == ("clip-1",) and spy.calls == [3]
    entry = {entry.id: entry for entry in read_manifest(tmp_path / "out")}["clip-1"]
    assert entry.error == "ParameterError: a permanent problem" and entry.attempts == 1


def test_a_failing_group_falls_back_to_one_job_at_a_time(
    tiny_model, one_at_a_time, tmp_path, monkeypatch
):
    # The long prompt has more tokens than the model takes: the batched call refuses the group
    # before any model runs, then each job renders alone and only the long one fails.
    spy = Spy(monkeypatch)
    jobs = [*JOBS[:2], short_job("long", 5, prompt="word " * 300), JOBS[2]]
    out = tmp_path / "out"
    result = render(jobs, out, model=str(tiny_model), device="cpu", batch_size=4, max_retries=1)
    assert result.failed == ("long",) and spy.calls == [4]
    entries = {entry.id: entry for entry in read_manifest(out)}
    assert entries["long"].error.startswith("ParameterError") and entries["long"].attempts == 1
    for job in JOBS[:3]:  # rendered alone: the bytes of one-at-a-time rendering
        assert files(out, job["id"]) == files(one_at_a_time, job["id"])
        np.testing.assert_array_equal(
            image_pixels(out, job["id"]), image_pixels(one_at_a_time, job["id"])
        )


def test_a_retry_renders_its_job_alone(tiny_model, tmp_path, monkeypatch):
    spy = Spy(monkeypatch)

    def before_attempt(job_id: str, attempt: int) -> None:
        if job_id == "clip-0" and attempt == 1:
            raise RuntimeError("transient glitch")

    out = tmp_path / "out"
    result = render(
        JOBS[:3], out, model=str(tiny_model), device="cpu", batch_size=3,
        before_attempt=before_attempt,
    )  # fmt: skip
    assert result.ok and spy.calls == [2]
    assert {entry.id: entry.attempts for entry in read_manifest(out)} == {
        "clip-0": 2,
        "clip-1": 1,
        "clip-2": 1,
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, r"batch_size=0 must be an integer in \[1, 64\]"),
        (65, r"batch_size=65 must be an integer in \[1, 64\]"),
        (2.0, r"batch_size=2.0 must be an integer"),
        (True, r"batch_size=True must be an integer"),
        ("4", r"batch_size='4' must be an integer"),
    ],
)
def test_bad_batch_sizes_fail_before_loading(tmp_path, value, message):
    with pytest.raises(ParameterError, match=message):
        render(JOBS, tmp_path / "out", model="no/such/model", batch_size=value)
    assert not (tmp_path / "out").exists()


def test_cli_batch_size(tiny_model, tmp_path, capsys, monkeypatch):
    from riffusion.cli import main

    spy = Spy(monkeypatch)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(job) for job in JOBS) + "\n")
    out = tmp_path / "out"
    argv = ["batch", str(jobs), "-o", str(out), "--model", str(tiny_model), "--device", "cpu"]
    assert main([*argv, "-q", "--batch-size", "2"]) == 0
    assert spy.calls == [2, 2] and (out / MANIFEST_NAME).exists()
    for bad, message in (
        ("0", "0 must be an integer in [1, 64]"),
        ("65", "65 must be an integer in [1, 64]"),
        ("two", "'two' is not an integer"),
    ):
        assert main([*argv, "--batch-size", bad]) == 2
        assert f"argument --batch-size: {message}" in capsys.readouterr().err


def test_ray_engine_renders_groups_with_the_local_bytes(tiny_model, tmp_path):
    ray = pytest.importorskip("ray")
    local = tmp_path / "local"
    assert render(JOBS, local, model=str(tiny_model), device="cpu", batch_size=2).ok
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = render(
            JOBS, tmp_path / "ray", engine="ray", workers=2, model=str(tiny_model),
            device="cpu", batch_size=2,
        )  # fmt: skip
    finally:
        ray.shutdown()
    assert result.ok
    for job in JOBS:
        assert files(tmp_path / "ray", job["id"]) == files(local, job["id"])


def test_a_model_without_batches_is_refused_with_a_clear_error():
    from riffusion.batch.groups import generate_group

    riffuser = types.SimpleNamespace(pipeline=object())
    with pytest.raises(RiffusionError, match="cannot generate batches"):
        generate_group(riffuser, [recipe(), recipe(seed=2)])


def test_recipes_that_are_not_one_group_are_refused():
    from riffusion.batch.groups import generate_group

    riffuser = types.SimpleNamespace(pipeline=object())
    with pytest.raises(RiffusionError, match="not one group"):
        generate_group(riffuser, [recipe(), recipe(guidance=3.0)])
    with pytest.raises(RiffusionError, match="not one group"):
        generate_group(riffuser, [recipe(duration_s=10.0), recipe(duration_s=10.0, seed=2)])


def test_jobs_with_one_lora_share_a_batch_at_their_scale(tiny_model, tmp_path, monkeypatch):
    from tests.test_batch import _tiny_lora

    lora = _tiny_lora(str(tiny_model), tmp_path / "lora")
    jobs = [short_job(f"lora-{i}", i, lora=str(lora), lora_scale=0.8) for i in range(3)]
    options = {"model": str(tiny_model), "device": "cpu", "adapter_dirs": [tmp_path]}
    single = tmp_path / "single"
    assert render(jobs, single, **options).ok
    spy = Spy(monkeypatch)
    grouped = tmp_path / "grouped"
    assert render([*jobs, short_job("plain", 0)], grouped, batch_size=4, **options).ok
    assert spy.calls == [3]  # "plain" has no LoRA: another group
    for job in jobs:
        difference = np.abs(image_pixels(grouped, job["id"]) - image_pixels(single, job["id"]))
        assert difference.max() <= 1 and (difference > 0).mean() <= MAX_FLIPPED
    # ...and the LoRA was on: without it, the clip is another one.
    plain = np.abs(image_pixels(grouped, "plain") - image_pixels(single, "lora-0"))
    assert plain.max() > 16
