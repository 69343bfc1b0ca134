"""Step callbacks and cancellation (pipeline), progress and the generation lock (Riffuser)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from riffusion import GenerationCancelled, PromptInput, RiffusionError
from riffusion.progress import Progress
from riffusion.seeds import load_seed_image
from tests.diffusion_fixtures import single_thread_riffuser

START = PromptInput(prompt="funky bass", seed=3, denoising=0.75)


@pytest.fixture(scope="module")
def riffuser():
    with single_thread_riffuser() as riffuser:
        yield riffuser


@pytest.fixture
def pipe(riffuser):
    return riffuser.pipeline


def _pixels(image):
    return np.asarray(image)


def test_step_callback_sees_every_step_and_can_replace_latents(pipe):
    seed = load_seed_image("og_beat")
    calls = []

    def record(pipeline, step, timestep, kwargs):
        assert pipeline is pipe
        calls.append((step, int(timestep), kwargs["num_steps"], tuple(kwargs["latents"].shape)))

    result = pipe.riffuse(
        START, init_image=seed, num_inference_steps=4, callback_on_step_end=record
    )
    n = len(result.timesteps)
    assert [c[0] for c in calls] == list(range(n))
    assert [c[1] for c in calls] == list(result.timesteps)
    assert {c[2] for c in calls} == {n} and {c[3] for c in calls} == {(1, 4, 64, 64)}

    # Returned latents replace the loop's: zeroing them after the last step changes the image.
    def zero_last(pipeline, step, timestep, kwargs):
        if step == kwargs["num_steps"] - 1:
            return {"latents": torch.zeros_like(kwargs["latents"])}
        return None

    zeroed = pipe.riffuse(
        START, init_image=seed, num_inference_steps=4, callback_on_step_end=zero_last
    )
    expected = pipe.decode_latents(torch.zeros(1, 4, 64, 64))
    np.testing.assert_array_equal(_pixels(zeroed.image), _pixels(expected))


def test_interrupt_stops_at_the_next_step_and_the_next_run_is_unaffected(pipe):
    seed = load_seed_image("og_beat")
    reference = pipe.riffuse(START, init_image=seed, num_inference_steps=8)
    steps = []

    def cancel_after_two(pipeline, step, timestep, kwargs):
        steps.append(step)
        if step == 1:
            pipeline.interrupt = True

    with pytest.raises(
        GenerationCancelled, match=f"after 2 of {len(reference.timesteps)} steps"
    ) as error:
        pipe.riffuse(
            START, init_image=seed, num_inference_steps=8, callback_on_step_end=cancel_after_two
        )
    assert isinstance(error.value, RiffusionError)
    assert steps == [0, 1]
    assert pipe.interrupt is False
    again = pipe.riffuse(START, init_image=seed, num_inference_steps=8)
    np.testing.assert_array_equal(_pixels(again.image), _pixels(reference.image))


def test_a_raising_callback_propagates_and_non_callables_are_refused(pipe):
    def boom(pipeline, step, timestep, kwargs):
        raise GenerationCancelled("stop now")

    with pytest.raises(GenerationCancelled, match="stop now"):
        pipe.riffuse(START, num_inference_steps=2, callback_on_step_end=boom)
    with pytest.raises(RiffusionError, match="callback_on_step_end"):
        pipe.riffuse(START, num_inference_steps=2, callback_on_step_end=42)


def test_progress_reports_windows_and_steps(riffuser):
    seen: list[Progress] = []
    with riffuser.on_progress(seen.append):
        clip = riffuser.text_to_audio("jazz", seed=1, num_inference_steps=2, duration_s=8.0)
    windows = len(clip.debug["timesteps"])
    assert windows == 3  # 512 columns, then two continuations of 256
    expected = [
        Progress(window, windows, step, len(clip.debug["timesteps"][window - 1]))
        for window in range(1, windows + 1)
        for step in range(1, len(clip.debug["timesteps"][window - 1]) + 1)
    ]
    assert seen == expected
    assert str(seen[0]) == f"window 1/3, step 1/{expected[0].num_steps}"
    # Outside the block nothing is reported.
    riffuser.riffuse(START, num_inference_steps=2)
    assert len(seen) == len(expected)


def test_progress_callback_cancels_a_multi_window_clip(riffuser):
    seen = []

    def stop_in_window_two(progress):
        seen.append(progress)
        return progress.window == 2

    with (
        riffuser.on_progress(stop_in_window_two),
        pytest.raises(GenerationCancelled, match="after 1 of"),
    ):
        riffuser.text_to_audio("jazz", seed=1, num_inference_steps=2, duration_s=8.0)
    assert seen[-1].window == 2 and seen[-1].step == 1
    # The next clip starts again at window 1.
    with riffuser.on_progress(seen.append):
        riffuser.riffuse(START, num_inference_steps=2)
    assert seen[-1].window == 1 and seen[-1].num_windows == 1


def test_the_lock_serialises_generations_from_threads(riffuser):
    expected = riffuser.riffuse(START, num_inference_steps=2, seed_image="og_beat")
    results = {}
    progress_while_held = []

    def run(name):
        with riffuser.on_progress(lambda p: progress_while_held.append((name, held.is_set()))):
            results[name] = riffuser.riffuse(START, num_inference_steps=2, seed_image="og_beat")

    held = threading.Event()
    with riffuser.lock:
        held.set()
        threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
        for thread in threads:
            thread.start()
        threads[0].join(0.5)  # they can not start while the lock is held
        held.clear()
    for thread in threads:
        thread.join(60)
    assert progress_while_held and not any(was_held for _, was_held in progress_while_held)
    for clip in results.values():
        np.testing.assert_array_equal(_pixels(clip.image), _pixels(expected.image))
        assert clip.audio == expected.audio


def test_on_progress_refuses_non_callables(riffuser):
    with pytest.raises(RiffusionError, match="callable"), riffuser.on_progress(None):
        pass


def test_progress_follows_the_stream_into_its_buffer_thread(riffuser):
    seen: list[tuple[Progress, str]] = []

    def record(progress: Progress) -> None:
        seen.append((progress, threading.current_thread().name))

    with riffuser.on_progress(record):
        stream = riffuser.stream(
            ["jazz", "rock"], buffer_ahead=1, max_clips=2, num_inference_steps=2
        )
        clips = list(stream)
    steps = [len(clip.debug["timesteps"][0]) for clip in clips]
    assert len(clips) == 2 and len(seen) == sum(steps)
    assert [progress for progress, _ in seen] == [
        Progress(1, 1, step, total) for total in steps for step in range(1, total + 1)
    ]
    assert {name for _, name in seen} == {"riffusion-stream"}
    # A stream iterated outside the block reports nothing.
    list(riffuser.stream(["jazz"], buffer_ahead=1, max_clips=1, num_inference_steps=2))
    assert len(seen) == sum(steps)


# ------------------------------------------------------- diffusers' per-call hooks on the verbs
def test_verbs_take_diffusers_step_hooks_in_every_window(riffuser):
    calls = []

    def record(model, step, timestep, kwargs):
        assert model is riffuser.pipeline
        calls.append((step, int(timestep), sorted(kwargs)))

    clip = riffuser.text_to_audio(
        "jazz", seed=1, num_inference_steps=2, duration_s=8.0, callback_on_step_end=record
    )
    timesteps = [step for window in clip.debug["timesteps"] for step in window]
    # Every step of the three windows, with only the requested tensors (default: latents).
    assert [timestep for _, timestep, _ in calls] == timesteps
    assert {tuple(keys) for _, _, keys in calls} == {("latents",)}
    # The hook rides beside a progress callback: both see every step.
    seen: list[Progress] = []
    with riffuser.on_progress(seen.append):
        riffuser.loop("jazz", seed=1, num_inference_steps=2, callback_on_step_end=record)
    assert len(seen) == len(calls) - len(timesteps) > 0


def test_a_verbs_hook_can_replace_the_latents(riffuser):
    def zero_last(model, step, timestep, kwargs):
        # Called after each step; zeroing after the last one makes the decoded image the
        # VAE's image of zero latents.
        return {"latents": torch.zeros_like(kwargs["latents"])}

    clip = riffuser.riffuse(
        START,
        num_inference_steps=2,
        callback_on_step_end=zero_last,
        callback_on_step_end_tensor_inputs=["latents"],
    )
    expected = riffuser.pipeline.decode_latents(torch.zeros(1, 4, 64, 64))
    np.testing.assert_array_equal(_pixels(clip.image), _pixels(expected))
    plain = riffuser.riffuse(START, num_inference_steps=2)
    assert not np.array_equal(_pixels(plain.image), _pixels(expected))


@pytest.mark.parametrize(
    ("options", "named", "phrase"),
    [
        ({"callback_on_step_end": 42}, "callback_on_step_end=42", "callable"),
        (
            {"callback_on_step_end": print, "callback_on_step_end_tensor_inputs": ["noise"]},
            "callback_on_step_end_tensor_inputs=['noise']",
            "the tensors offered are ['latents']",
        ),
        (
            {"callback_on_step_end": print, "callback_on_step_end_tensor_inputs": "latents"},
            "callback_on_step_end_tensor_inputs='latents'",
            "must be a list",
        ),
    ],
)
def test_bad_step_hooks_are_refused_before_generating(riffuser, options, named, phrase):
    with pytest.raises(RiffusionError) as caught:
        riffuser.text_to_audio("jazz", seed=1, num_inference_steps=2, **options)
    assert str(caught.value).startswith(named) and phrase in str(caught.value)


def test_a_hook_that_returns_something_else_than_a_dict_is_named(riffuser):
    with pytest.raises(RiffusionError, match="callback_on_step_end returned int"):
        riffuser.riffuse(START, num_inference_steps=2, callback_on_step_end=lambda *a: 7)
