"""Batch rendering: job parsing, safe ids, outputs, resume, retries, fsspec, and the Ray engine.

The model is the tiny random checkpoint with 64-row spectrograms and 2 scheduler steps, so one
job takes a fraction of a second on a CPU; the Ray tests share one local Ray instance.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from riffusion.batch import (
    AUDIO_NAME,
    IMAGE_NAME,
    MANIFEST_NAME,
    RECIPE_NAME,
    BatchJob,
    BatchResult,
    check_job_id,
    load_jobs,
    make_job,
    read_manifest,
    recipe_digest,
    render,
)
from riffusion.batch.worker import _torch_threads
from riffusion.errors import ParameterError
from riffusion.inputs import PromptInput
from riffusion.params import SpectrogramParams
from riffusion.riffuser import Recipe, Riffuser
from riffusion.testing import make_tiny_model

SMALL = {"num_frequencies": 64}
NAMES = (AUDIO_NAME, IMAGE_NAME, RECIPE_NAME)


def short_job(job_id: str | None, seed: int, **extra) -> dict:
    job = {
        "prompt": f"tiny tune {seed}",
        "seed": seed,
        "duration_s": 1.0,
        "num_inference_steps": 2,
        "seed_image": None,
        "params": SMALL,
        **extra,
    }
    if job_id is not None:
        job["id"] = job_id
    return job


JOBS = [short_job(f"clip-{index}", seed=index) for index in range(4)]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(make_tiny_model(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture(scope="module")
def local_run(tiny_model, tmp_path_factory) -> tuple[Path, BatchResult]:
    """JOBS rendered once with the local engine (shared by the comparisons below)."""
    out = tmp_path_factory.mktemp("local") / "out"
    result = render(JOBS, out, model=tiny_model, device="cpu")
    return out, result


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
    }


# --------------------------------------------------------------------------------- job ids
@pytest.mark.parametrize(
    "bad",
    [
        "..",
        ".",
        "../up",
        "a/b",
        "a\\b",
        "/etc/passwd",
        "C:\\x",
        "nul\0byte",
        "",
        "x" * 129,
        ".hidden",
        "-flag",
        "sp ace",
        "é",
    ],
)
def test_unsafe_ids_are_rejected(bad):
    with pytest.raises(ParameterError, match="job id"):
        check_job_id(bad)
    with pytest.raises(ParameterError, match="job id"):
        make_job({"id": bad, "prompt": "x", "seed": 1})


def test_non_string_id_is_rejected():
    with pytest.raises(ParameterError, match="must be a string"):
        check_job_id(7)


def test_safe_ids_pass_unchanged():
    for good in ("a", "clip-001", "Take_2.v3", "x" * 128):
        assert check_job_id(good) == good


def test_escaping_id_in_a_jobs_file_stops_before_anything_is_written(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps(short_job("ok", 1)) + "\n" + json.dumps(short_job("../x", 2)))
    with pytest.raises(ParameterError, match=r"line 2: .*'\.\./x'"):
        load_jobs(jobs)
    out = tmp_path / "out"
    with pytest.raises(ParameterError, match="job id"):
        render([short_job("ok", 1), short_job("../x", 2)], out, model="unused")
    assert not out.exists() and not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------ job forms
def test_short_form_is_the_recipe_text_to_audio_would_record():
    job = make_job(
        {
            "id": "a",
            "prompt": "jazz",
            "seed": 5,
            "duration_s": 7.5,
            "guidance": 3,
            "num_inference_steps": 20,
        },
        model="my/model",
    )
    expected = Recipe(
        kind="text_to_audio",
        model="my/model",
        scheduler="default",
        start=PromptInput(prompt="jazz", seed=5, guidance=3.0),
        num_inference_steps=20,
        duration_s=7.5,
    )
    assert job == BatchJob(id="a", recipe=expected)


def test_loop_and_riffuse_short_forms():
    loop = make_job({"prompt": "techno", "seed": 3, "kind": "loop"}).recipe
    assert (loop.kind, loop.start.seed, loop.end) == ("loop", 3, None)
    riffuse = make_job(
        {"prompt": "jazz", "seed": 1, "kind": "riffuse", "end": "rock", "alpha": 0.25}
    ).recipe
    assert riffuse.end == PromptInput(prompt="rock", seed=1)
    assert riffuse.alpha == 0.25


def test_recipe_forms_agree():
    recipe = make_job(short_job(None, 9), model="m").recipe
    forms = [
        recipe,
        recipe.to_json(),
        recipe.to_url(),
        {"recipe": recipe.to_dict()},
        {"recipe": recipe.to_url()},
        recipe.to_dict(),
    ]
    assert {make_job(form).recipe for form in forms} == {recipe}


def test_default_id_is_the_recipe_hash():
    recipe = make_job(short_job(None, 1), model="m").recipe
    canonical = json.dumps(recipe.to_dict(), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    assert recipe_digest(recipe) == digest
    assert make_job(recipe).id == "job-" + digest[:16]
    other = make_job(short_job(None, 2), model="m")
    assert other.id != make_job(recipe).id


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"seed": 1}, "needs 'prompt'"),
        ({"prompt": "x"}, "needs a 'seed'"),
        ({"prompt": "x", "seed": 1, "colour": "red"}, r"unknown keys \['colour'\]"),
        ({"prompt": "x", "seed": 1, "kind": "audio_to_audio"}, "input audio"),
        ({"prompt": "x", "seed": -1}, "seed=-1"),
        ({"prompt": "x", "seed": 1, "duration_s": 0}, "duration_s=0"),
        ({"prompt": "x", "seed": 1, "num_inference_steps": 0}, "num_inference_steps=0"),
        ({"prompt": "x", "seed": 1, "alpha": 0.5}, "'alpha' applies to kind 'riffuse'"),
        ({"prompt": "x", "seed": 1, "seed_image": "custom:0123456789abcdef"}, "custom image"),
        ({"prompt": "x", "seed": 1, "params": {"hop": 3}}, "params"),
    ],
)
def test_bad_short_forms_name_the_problem(job, message):
    with pytest.raises(ParameterError, match=message):
        make_job(job)


def test_duplicate_ids_are_rejected_and_exact_repeats_merged():
    with pytest.raises(ParameterError, match="'Clip' is used twice"):
        load_jobs([json.dumps(short_job("clip", 1)), json.dumps(short_job("Clip", 2))])
    same = json.dumps(short_job(None, 1))
    assert len(load_jobs([same, "", "# comment", same])) == 1


def test_bad_json_line_is_reported_with_its_number():
    with pytest.raises(ParameterError, match="line 2: not valid JSON"):
        load_jobs([json.dumps(short_job("a", 1)), "{nope"])
    # Lines Python's own JSON reader refuses with other errors: a 5,000-digit integer
    # (ValueError) and nesting deeper than the recursion limit (RecursionError).
    for line in ('{"id": ' + "9" * 5000 + "}", "[" * 100_000 + "]" * 100_000):
        with pytest.raises(ParameterError, match="line 1: not valid JSON"):
            load_jobs([line])


# ----------------------------------------------------------------------------- local engine
def test_outputs_are_what_riffuser_render_makes(tiny_model, local_run):
    out, result = local_run
    assert result.rendered == tuple(job["id"] for job in JOBS)
    assert result.failed == () and result.skipped == ()
    pipeline_riffuser = Riffuser.from_pretrained(tiny_model, device="cpu")
    riffuser = Riffuser(
        pipeline_riffuser.pipeline, model=tiny_model, params=SpectrogramParams(**SMALL)
    )
    entries = {entry["id"]: entry for entry in map(json.loads, (out / MANIFEST_NAME).open())}
    assert list(entries) == [job["id"] for job in JOBS]
    for spec in JOBS[:2]:
        job = make_job(spec, model=tiny_model)
        with _torch_threads(1):  # the worker renders with cpus_per_worker=1 threads
            clip = riffuser.render(job.recipe)
        folder = out / job.id
        assert (folder / AUDIO_NAME).read_bytes() == clip.audio.to_bytes("WAV")
        with Image.open(folder / IMAGE_NAME) as image:
            np.testing.assert_array_equal(np.asarray(image), np.asarray(clip.image))
            assert dict(image.getexif()) == dict(clip.image.getexif())
        assert Recipe.from_json((folder / RECIPE_NAME).read_text()) == job.recipe
        entry = entries[job.id]
        assert (entry["status"], entry["attempts"], entry["error"]) == ("done", 1, None)
        assert entry["recipe_sha256"] == job.digest
        for info in entry["files"].values():
            data = (out / info["path"]).read_bytes()
            assert (len(data), hashlib.sha256(data).hexdigest()) == (info["bytes"], info["sha256"])
    # No temporary files are left behind.
    assert not [path for path in out.rglob(".*")]


def test_rerun_renders_nothing_and_leaves_bytes_unchanged(tiny_model, local_run, tmp_path):
    source, _ = local_run
    out = tmp_path / "out"
    import shutil

    shutil.copytree(source, out)
    before = {
        path: (path.read_bytes(), path.stat().st_mtime_ns)
        for path in out.rglob("*")
        if path.is_file()
    }
    result = render(JOBS, out, model=tiny_model, device="cpu")
    assert result.rendered == () and result.skipped == tuple(job["id"] for job in JOBS)
    after = {
        path: (path.read_bytes(), path.stat().st_mtime_ns)
        for path in out.rglob("*")
        if path.is_file()
    }
    assert after == before

    # A missing file, or a changed recipe under the same id, makes exactly that job run again.
    (out / "clip-1" / AUDIO_NAME).unlink()
    changed = [*JOBS[:3], short_job("clip-3", seed=99)]
    result = render(changed, out, model=tiny_model, device="cpu")
    assert result.rendered == ("clip-1", "clip-3")
    assert tree_bytes(out)["clip-1/" + AUDIO_NAME] == before[out / "clip-1" / AUDIO_NAME][0]
    assert tree_bytes(out)["clip-3/" + AUDIO_NAME] != before[out / "clip-3" / AUDIO_NAME][0]
    assert [entry.id for entry in read_manifest(out)] == [job["id"] for job in JOBS]


class Flaky:
    """Fails 'flaky' on its first two attempts, 'broken' always, 'invalid' with a bad value."""

    def __call__(self, job_id: str, attempt: int) -> None:
        if job_id == "flaky" and attempt <= 2:
            raise RuntimeError(f"transient glitch {attempt}")
        if job_id == "broken":
            raise OSError(f"disk on fire (attempt {attempt})")
        if job_id == "invalid":
            raise ParameterError("a permanent problem")


def test_only_failures_that_may_pass_next_time_are_retried():
    import errno

    from riffusion.batch.worker import _retryable
    from riffusion.errors import ModelLoadError, RiffusionError

    def chained(cause: BaseException) -> RiffusionError:
        try:
            raise RiffusionError("cannot write the outputs") from cause
        except RiffusionError as error:
            return error

    assert _retryable(RuntimeError("transient")) and _retryable(OSError(errno.EIO, "I/O error"))
    assert not _retryable(ParameterError("bad value"))
    assert not _retryable(ModelLoadError("lora weights outside the allowed folders"))
    assert not _retryable(OSError(errno.ENOSPC, "No space left on device"))
    assert not _retryable(chained(OSError(errno.ENOSPC, "No space left on device")))
    assert not _retryable(chained(PermissionError(errno.EACCES, "Permission denied")))
    assert _retryable(chained(OSError(errno.EIO, "I/O error")))


def test_failed_jobs_are_retried_then_reported_without_stopping_the_others(
    tiny_model, local_run, tmp_path
):
    jobs = [
        short_job("flaky", 0),
        short_job("broken", 1),
        short_job("invalid", 2),
        short_job("fine", 3),
    ]
    seen = []
    result = render(
        jobs,
        tmp_path,
        model=tiny_model,
        device="cpu",
        max_retries=2,
        before_attempt=Flaky(),
        on_result=seen.append,
    )
    assert result.rendered == ("flaky", "fine")
    assert result.failed == ("broken", "invalid") and not result.ok
    entries = {entry.id: entry for entry in read_manifest(tmp_path)}
    assert [entry.id for entry in seen] == ["flaky", "broken", "invalid", "fine"]
    assert (entries["flaky"].status, entries["flaky"].attempts) == ("done", 3)
    assert (entries["fine"].status, entries["fine"].attempts) == ("done", 1)
    broken = entries["broken"]
    assert (broken.status, broken.attempts, broken.files) == ("failed", 3, {})
    assert broken.error == "OSError: disk on fire (attempt 3)"
    assert (entries["invalid"].attempts, entries["invalid"].error) == (
        1,
        "ParameterError: a permanent problem",
    )
    assert not (tmp_path / "broken").exists()
    # The retried job's bytes are those of a first-time render (seed 0 is clip-0 of JOBS).
    source, _ = local_run
    assert (tmp_path / "flaky" / AUDIO_NAME).read_bytes() == (
        source / "clip-0" / AUDIO_NAME
    ).read_bytes()
    # A rerun tries the failed jobs again and skips the rest.
    again = render(
        jobs, tmp_path, model=tiny_model, device="cpu", max_retries=0, before_attempt=Flaky()
    )
    assert again.skipped == ("flaky", "fine") and again.failed == ("broken", "invalid")
    assert {entry.id: entry.attempts for entry in again.entries}["broken"] == 1


def test_fsspec_memory_output_matches_local_folder(tiny_model, local_run):
    import fsspec

    source, _ = local_run
    url = "memory://riffusion-batch-test/out"
    fs = fsspec.filesystem("memory")
    result = render(JOBS[:2], url, model=tiny_model, device="cpu")
    assert result.rendered == ("clip-0", "clip-1")
    for job in JOBS[:2]:
        for name in NAMES:
            assert (
                fs.cat_file(f"/riffusion-batch-test/out/{job['id']}/{name}")
                == (source / job["id"] / name).read_bytes()
            )
    assert [entry.id for entry in read_manifest(url)] == ["clip-0", "clip-1"]
    assert not [path for path in fs.find("/riffusion-batch-test") if ".partial" in path]
    again = render(JOBS[:2], url, model=tiny_model, device="cpu")
    assert again.rendered == () and again.skipped == ("clip-0", "clip-1")
    fs.rm("/riffusion-batch-test", recursive=True)


def test_bad_arguments_fail_before_loading(tmp_path):
    for kwargs, message in [
        ({"engine": "dask"}, "engine='dask'"),
        ({"workers": 0, "engine": "ray"}, "workers=0"),
        ({"max_retries": -1}, "max_retries=-1"),
        ({"gpus_per_worker": -1, "engine": "ray"}, "gpus_per_worker=-1"),
        ({"workers": 2}, "engine='ray' only"),
    ]:
        with pytest.raises(ParameterError, match=message):
            render(JOBS, tmp_path, model="no/such/model", **kwargs)
    with pytest.raises(ParameterError, match="2 models"):
        render([short_job("a", 1, model="m1"), short_job("b", 2, model="m2")], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cli_help_does_not_import_ray_or_diffusers():
    # (torch comes with ``import riffusion`` itself; the batch command adds nothing heavy.)
    code = (
        "import sys; from riffusion.cli import main; main(['batch', '--help']); "
        "print(sorted(m for m in ('ray', 'diffusers', 'riffusion.batch') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ}
    )
    assert "--gpus-per-worker" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_import_batch_does_not_load_the_model_code():
    # A fresh process, so that no other test's imports count: reading jobs and manifests needs
    # no diffusers, transformers or peft (the worker loads them when it starts).
    code = (
        "import sys, riffusion.batch\n"
        'jobs = riffusion.batch.load_jobs([\'{"prompt": "x", "seed": 1}\'])\n'
        "print(sorted(m for m in ('diffusers', 'transformers', 'peft') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ}
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_cli_batch_writes_outputs_and_reports_failures(tiny_model, local_run, tmp_path, capsys):
    from riffusion.cli import main

    source, _ = local_run
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(job) for job in JOBS[:2]) + "\n")
    out = tmp_path / "out"
    argv = ["batch", str(jobs), "-o", str(out), "--model", tiny_model, "--device", "cpu", "-q"]
    assert main(argv) == 0
    assert tree_bytes(out) == {
        key: value
        for key, value in tree_bytes(source).items()
        if key.split("/")[0] in ("clip-0", "clip-1")
    }
    assert main([*argv[:-1]]) == 0
    assert "0 rendered, 2 already done, 0 failed" in capsys.readouterr().err
    jobs.write_text(json.dumps(short_job("bad", 1, scheduler="no-such-scheduler")))
    assert main(argv) == 1
    assert "bad" in capsys.readouterr().err


def test_cli_rejects_an_escaping_id(tmp_path, capsys):
    from riffusion.cli import main

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps(short_job("/abs", 1)))
    assert main(["batch", str(jobs), "-o", str(tmp_path / "out")]) == 1
    assert "line 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- LoRA short form
def _tiny_lora(tiny_model: str, folder: Path) -> Path:
    """A random LoRA on the tiny UNet's attention, written by diffusers' own writer."""
    import torch
    from diffusers import UNet2DConditionModel
    from diffusers.loaders import StableDiffusionLoraLoaderMixin
    from peft import LoraConfig, get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(tiny_model, subfolder="unet")
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k"]))
    generator = torch.Generator().manual_seed(0)
    weights = {
        key: 0.5 * torch.randn(value.shape, generator=generator)
        for key, value in get_peft_model_state_dict(unet).items()
    }
    StableDiffusionLoraLoaderMixin.save_lora_weights(folder, unet_lora_layers=weights)
    return folder / "pytorch_lora_weights.safetensors"


def test_short_form_lora_is_recorded_with_its_fingerprint(tmp_path):
    from riffusion._files import file_fingerprint
    from riffusion.recipe import Adapter

    (tmp_path / "loras").mkdir()
    weights = tmp_path / "loras" / "style.safetensors"
    weights.write_bytes(b"not really weights, only their fingerprint matters here")
    jobs_file = tmp_path / "jobs.jsonl"
    jobs_file.write_text(
        json.dumps(short_job("a", 1, lora="loras/style.safetensors", lora_scale=0.5))
        + "\n"
        + json.dumps(short_job("b", 1, lora=str(weights)))
        + "\n"
    )
    a, b = load_jobs(jobs_file)  # relative to the jobs file's folder, wherever we run
    expected = Adapter(
        kind="lora", path=str(weights.resolve()), fingerprint=file_fingerprint(weights), scale=0.5
    )
    assert a.recipe.adapters == (expected,)
    assert b.recipe.adapters == (Adapter(**{**expected.to_dict(), "scale": 1.0}),)
    assert a.id == "a" and Recipe.from_json(a.recipe.to_json()) == a.recipe
    for extra, message in (
        ({"lora": "missing.safetensors"}, r"lora='missing.safetensors' \(resolved to"),
        ({"lora": str(weights), "lora_scale": "x"}, "lora_scale='x' must be a finite number"),
        ({"lora": 3}, "lora=3 must be the path"),
        ({"lora_scale": 0.5}, "'lora_scale' needs a 'lora'"),
    ):
        with pytest.raises(ParameterError, match=message):
            make_job(short_job("c", 1, **extra), base_dir=tmp_path)


def test_short_form_lora_renders_like_riffuser_with_the_lora(tiny_model, tmp_path):
    lora = _tiny_lora(tiny_model, tmp_path / "lora")
    job = short_job("lora", 3, lora=str(lora), lora_scale=0.8)
    out = tmp_path / "out"
    result = render(
        [job, short_job("plain", 3)], out, model=tiny_model, device="cpu", adapter_dirs=[tmp_path]
    )
    assert result.rendered == ("lora", "plain")
    pipeline = Riffuser.from_pretrained(tiny_model, device="cpu").pipeline
    riffuser = Riffuser(pipeline, model=tiny_model, params=SpectrogramParams(**SMALL))
    recipe = Recipe.from_json((out / "lora" / RECIPE_NAME).read_text())
    assert [(a.kind, a.scale) for a in recipe.adapters] == [("lora", 0.8)]
    with _torch_threads(1):
        clip = riffuser.use_adapters(recipe.adapters, adapter_dirs=[tmp_path]).render(recipe)
    with Image.open(out / "lora" / IMAGE_NAME) as image:
        lora_pixels = np.asarray(image)
    np.testing.assert_array_equal(lora_pixels, np.asarray(clip.image))
    with Image.open(out / "plain" / IMAGE_NAME) as image:
        assert not np.array_equal(np.asarray(image), lora_pixels)  # the LoRA changed the clip
    # Without the folder allowed, the worker refuses the file (and does not retry).
    refused = render([job], tmp_path / "refused", model=tiny_model, device="cpu")
    (entry,) = refused.entries
    assert refused.failed == ("lora",) and entry.attempts == 1
    assert entry.error.startswith("ModelLoadError:")


# ------------------------------------------------------------------------------- Ray engine
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_engine_writes_the_same_bytes_and_survives_a_dying_worker(
    tiny_model, local_run, local_ray, tmp_path
):
    class ExitOnce:  # defined here so that Ray ships it by value, not by module name
        """Ends the worker process the first time it starts job 'crash' (a marker file)."""

        def __init__(self, marker: str) -> None:
            self.marker = marker

        def __call__(self, job_id: str, attempt: int) -> None:
            if job_id == "crash" and not os.path.exists(self.marker):
                Path(self.marker).write_text(f"{os.getpid()}")
                os._exit(1)

    source, _ = local_run
    jobs = [*JOBS, short_job("crash", seed=0)]
    marker = tmp_path / "worker-died"
    out = tmp_path / "out"
    result = render(
        jobs,
        f"file://{out}",
        engine="ray",
        workers=2,
        model=tiny_model,
        device="cpu",
        before_attempt=ExitOnce(str(marker)),
    )
    assert marker.exists()  # a worker really died mid-run
    assert result.failed == () and set(result.rendered) == {job["id"] for job in jobs}
    entries = {entry.id: entry for entry in read_manifest(out)}
    assert entries["crash"].attempts == 2
    assert all(entries[job["id"]].attempts == 1 for job in JOBS)
    # Same bytes as the local engine; 'crash' has clip-0's recipe, so its files equal clip-0's.
    expected = tree_bytes(source)
    expected.update(
        {
            key.replace("clip-0/", "crash/"): value
            for key, value in expected.items()
            if key.startswith("clip-0/")
        }
    )
    assert tree_bytes(out) == expected
    # The retry ran in another process than the one that died.
    assert entries["crash"].worker.rsplit(":", 1)[1] != marker.read_text()


@pytest.mark.slow
def test_ray_job_that_always_kills_its_worker_is_reported(tiny_model, local_ray, tmp_path):
    class AlwaysExit:
        def __call__(self, job_id: str, attempt: int) -> None:
            if job_id == "poison":
                os._exit(1)

    result = render(
        [short_job("poison", 1), short_job("fine", 2)],
        tmp_path,
        engine="ray",
        model=tiny_model,
        device="cpu",
        max_retries=1,
        before_attempt=AlwaysExit(),
    )
    assert result.rendered == ("fine",) and result.failed == ("poison",)
    poison = {entry.id: entry for entry in result.entries}["poison"]
    assert poison.attempts == 2 and poison.error.startswith("WorkerDied:")


def test_no_node_with_the_requested_gpus_fails_fast(tiny_model, local_ray, tmp_path):
    # The local Ray has 2 CPUs and no GPU: a GPU worker (or 4 CPUs) would wait forever.
    for kwargs, message in (
        ({"gpus_per_worker": 1}, r"gpus_per_worker=1 and cpus_per_worker=1: no node"),
        ({"cpus_per_worker": 4}, r"gpus_per_worker=0 and cpus_per_worker=4: no node"),
    ):
        with pytest.raises(ParameterError, match=message) as raised:
            render(
                [short_job("gpu", 1)],
                tmp_path / "out",
                engine="ray",
                model=tiny_model,
                device="cpu",
                **kwargs,
            )
        assert "0 GPU(s) and 2 CPU(s) in all" in str(raised.value)
    assert read_manifest(tmp_path / "out") == []  # nothing was rendered
    assert local_ray.is_initialized()  # the caller's Ray is left as it was


def test_fast_fail_is_skipped_for_autoscaling_clusters(monkeypatch):
    from riffusion.batch import engines

    class FakeRay:
        def nodes(self):
            return [
                {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
                {"Alive": False, "Resources": {"CPU": 8.0, "GPU": 4.0}},
            ]

        def cluster_resources(self):
            return {"CPU": 8.0, "GPU": 1.0}

    engines._check_resources(FakeRay(), 8, 0.5)  # fits: no error
    engines._check_resources(FakeRay(), 8, 1)
    with pytest.raises(ParameterError, match="largest has 1 GPU"):
        engines._check_resources(FakeRay(), 1, 2)  # the dead node does not count
