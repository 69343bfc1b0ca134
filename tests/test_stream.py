"""The live stream (:class:`riffusion.compose.stream.Stream`): its schedule after a change of
target, what is dropped and what is delivered, errors in place, closing, and the clips
themselves on the tiny model (the same as ``Riffuser.riffuse`` at each step).

The first half drives the stream with fake stages (no model: a "clip" is the task it was made
for), so that ordering, dropping and cancellation are checked exactly and fast; the second half
runs the tiny model end to end.
"""

from __future__ import annotations

import dataclasses
import gc
import threading
import time
from collections.abc import Callable
from itertools import islice
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import torch

from riffusion import ParameterError, PromptInput, RiffusionError
from riffusion.compose.stream import KEEP, Stream, StreamSettings
from riffusion.compose.stream_stages import RiffuseStages, StreamTask
from riffusion.errors import GenerationCancelled
from riffusion.params import SpectrogramParams
from riffusion.schedule import StreamStep, retarget_schedule, stream_schedule, stream_target
from riffusion.seeds import load_mask_image, load_seed_image
from tests.diffusion_fixtures import single_thread_riffuser
from tests.errors import assert_refused, refused

STEPS = 2


def _wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _path(step: Any) -> tuple[str, int, str, int, float]:
    """(start prompt, start seed, end prompt, end seed, alpha) of a step or a fake clip (the
    task it was made for)."""
    step = step.step if isinstance(step, StreamTask) else step
    return (step.start.prompt, step.start.seed, step.end.prompt, step.end.seed, step.alpha)


# ------------------------------------------------------------------------ the schedule
def test_retarget_schedule_starts_one_step_into_the_transition_then_walks():
    playing, target = PromptInput("jazz", seed=3), PromptInput("rock", seed=9)
    steps = list(islice(retarget_schedule(playing, target, steps_per_transition=4), 6))
    assert [_path(s) for s in steps] == [
        ("jazz", 3, "rock", 9, 0.25),
        ("jazz", 3, "rock", 9, 0.5),
        ("jazz", 3, "rock", 9, 0.75),
        ("rock", 9, "rock", 10, 0.0),  # the n-th clip is the target alone, then its seed walks
        ("rock", 9, "rock", 10, 0.25),
        ("rock", 9, "rock", 10, 0.5),
    ]
    assert [s.index for s in steps] == list(range(6))
    # One step per transition: the very next clip is the target; finite: it ends there.
    assert [
        _path(s) for s in retarget_schedule(playing, target, steps_per_transition=1, endless=False)
    ] == [("rock", 9, "rock", 9, 0.0)]
    # Nothing played yet: the stream starts at the target.
    fresh = list(islice(retarget_schedule(None, target, steps_per_transition=2), 3))
    assert [_path(s) for s in fresh] == [
        ("rock", 9, "rock", 10, 0.0),
        ("rock", 9, "rock", 10, 0.5),
        ("rock", 10, "rock", 11, 0.0),
    ]
    # The same prompt again walks its seed instead of standing still.
    same = next(retarget_schedule(playing, playing, steps_per_transition=2))
    assert _path(same) == ("jazz", 3, "jazz", 4, 0.5)


def test_stream_target_and_the_nearest_end():
    playing = PromptInput("jazz", seed=5, negative_prompt="drums", denoising=0.6, guidance=4.0)
    # A string keeps what is playing but its text, and takes the next seed.
    assert stream_target("rock", playing) == dataclasses.replace(playing, prompt="rock", seed=6)
    assert stream_target("rock", None) == PromptInput("rock")
    given = PromptInput("rock", seed=40)
    assert stream_target(given, playing) is given
    assert stream_target({"prompt": "rock", "seed": 2}, playing) == PromptInput("rock", seed=2)
    a, b = PromptInput("a", seed=1), PromptInput("b", seed=2)
    assert StreamStep(a, b, 0.25, 0).nearest == a and StreamStep(a, b, 0.5, 0).nearest == b
    assert_refused(stream_target, 42, playing, named="prompt=42", phrase="must be a str")
    assert_refused(stream_target, "\ud800", playing, named="prompt='\\ud800'", phrase="surrogate")
    assert_refused(
        stream_target, {"prompt": "x", "bogus": 1}, playing,
        named="prompt={'prompt': 'x', 'bogus': 1}", phrase="unknown keys",
    )  # fmt: skip


# ---------------------------------------------------------------- fake stages (no model)
class FakeStages:
    """Stages whose "clip" is the task it was made for; ``on_step(task, step)`` runs inside
    every fake denoising step (in the thread that makes the clip)."""

    params = SpectrogramParams()

    def __init__(self, steps: int = 3) -> None:
        self.steps = steps
        self.model = SimpleNamespace(interrupt=False)
        self.drawn: list[StreamTask] = []
        self.cancelled: list[StreamTask] = []
        self.fail: set[int] = set()  # positions whose next draw raises (once)
        self.on_step: Callable[[StreamTask, int], None] = lambda task, step: None
        self.threads: set[tuple[str, str]] = set()

    def draw(self, task: StreamTask, hooks: Any = None) -> Any:
        self.threads.add(("draw", threading.current_thread().name))
        self.drawn.append(task)
        if task.step.index in self.fail:
            self.fail.discard(task.step.index)
            raise RuntimeError(f"no clip at {task.step.index}")
        for step in range(self.steps):
            self.on_step(task, step)
            hooks.callback_on_step_end(self.model, step, 999 - step, {})
            if self.model.interrupt:
                self.model.interrupt = False
                self.cancelled.append(task)
                raise GenerationCancelled(f"generation cancelled after {step + 1} steps")
        return task

    def decode(self, drawn: StreamTask) -> Any:
        self.threads.add(("decode", threading.current_thread().name))
        return drawn

    def decode_apart(self, drawn: StreamTask) -> bool:
        return True


def _settings(**changes: Any) -> StreamSettings:
    return StreamSettings(
        load_seed_image("straight_beat"), "straight_beat", None, None, 2, **changes
    )


def _fake_stream(prompts: Any = "jazz", stages: FakeStages | None = None, **kwargs: Any) -> Stream:
    options = {"steps_per_transition": kwargs.pop("steps_per_transition", 4)}
    schedule = stream_schedule(prompts, endless=kwargs.get("endless", True), **options)
    return Stream(stages or FakeStages(), schedule, _settings(), **options, **kwargs)


@pytest.mark.parametrize("buffer_ahead", [0, 1, 3])
def test_without_changes_the_clips_follow_the_schedule(buffer_ahead):
    with _fake_stream(
        ["a", "b"], steps_per_transition=2, max_clips=5, buffer_ahead=buffer_ahead
    ) as stream:
        tasks: list[Any] = list(stream)
    expected = islice(stream_schedule(["a", "b"], steps_per_transition=2), 5)
    assert [_path(task) for task in tasks] == [_path(step) for step in expected]
    assert [task.step.index for task in tasks] == list(range(5))
    assert stream.taken == 5 and stream.closed
    with pytest.raises(StopIteration):
        next(stream)


def test_set_prompt_drops_the_clips_made_ahead_and_turns_at_once():
    stages = FakeStages()
    with _fake_stream("jazz", stages, buffer_ahead=3) as stream:
        first = next(stream)
        _wait_until(lambda: stream.buffered == 3, "three clips ahead")
        ahead = [_path(task) for task in stages.drawn[1:4]]
        assert stream.set_prompt("rock") == 3
        after: list[Any] = [next(stream) for _ in range(5)]
    assert _path(first) == ("jazz", 0, "jazz", 1, 0.0)
    assert ahead == [("jazz", 0, "jazz", 1, alpha) for alpha in (0.25, 0.5, 0.75)]
    assert [_path(task) for task in after] == [
        ("jazz", 0, "rock", 1, 0.25),
        ("jazz", 0, "rock", 1, 0.5),
        ("jazz", 0, "rock", 1, 0.75),
        ("rock", 1, "rock", 2, 0.0),
        ("rock", 1, "rock", 2, 0.25),
    ]
    # The dropped clips were never delivered; positions count clips taken.
    assert [task.step.index for task in after] == [1, 2, 3, 4, 5]
    assert all(task.epoch == 1 for task in after)


def test_a_new_prompt_starts_from_the_end_the_last_clip_is_nearest():
    with _fake_stream(["a", "b"], steps_per_transition=4) as stream:
        taken: list[Any] = [next(stream) for _ in range(3)]  # a → b at 0, 0.25, 0.5
        assert stream.playing == PromptInput("b", seed=1)
        stream.set_prompt(PromptInput("c", seed=7))
        assert _path(next(stream)) == ("b", 1, "c", 7, 0.25)
    assert [task.step.alpha for task in taken] == [0.0, 0.25, 0.5]


def test_set_prompt_before_the_first_clip_starts_there():
    with _fake_stream(["a", "b"], buffer_ahead=2) as stream:
        assert stream.set_prompt("rock") == 0
        assert [_path(next(stream)) for _ in range(2)] == [
            ("rock", 1, "rock", 2, 0.0),  # a string: the first prompt's settings, next seed
            ("rock", 1, "rock", 2, 0.25),
        ]


def test_settings_changes_remake_the_same_steps():
    stages = FakeStages()
    with _fake_stream("jazz", stages, buffer_ahead=2) as stream:
        next(stream)
        _wait_until(lambda: stream.buffered == 2, "two clips ahead")
        assert stream.set_denoising(0.5) == 2
        changed: Any = next(stream)
        stream.set_target(guidance=3.0, denoising=None, seed_image=None)
        later: Any = next(stream)
    assert _path(changed) == ("jazz", 0, "jazz", 1, 0.25)  # the step the dropped clip had
    start, end, _ = changed.prompts()
    assert (start.denoising, end.denoising) == (0.5, 0.5)
    assert changed.settings.seed_id == "straight_beat"
    assert _path(later) == ("jazz", 0, "jazz", 1, 0.5)
    start, end, _ = later.prompts()
    assert (start.denoising, start.guidance, end.guidance) == (0.75, 3.0, 3.0)
    assert later.settings.seed_picture is None and later.settings.seed_id is None


def test_a_clip_in_progress_is_stopped_at_its_next_step_and_never_delivered():
    stages = FakeStages(steps=50)
    changed = threading.Event()

    def change_once(task: StreamTask, step: int) -> None:
        if task.step.index == 1 and step == 2 and not changed.is_set():
            changed.set()
            stream.set_prompt("rock")  # from the worker thread, mid-generation

    stages.on_step = change_once
    with _fake_stream("jazz", stages, buffer_ahead=1) as stream:
        first = next(stream)
        second = next(stream)
    assert _path(first) == ("jazz", 0, "jazz", 1, 0.0)
    assert [(task.step.index, _path(task)) for task in stages.cancelled] == [
        (1, ("jazz", 0, "jazz", 1, 0.25))
    ]
    assert _path(second) == ("jazz", 0, "rock", 1, 0.25)


def test_an_error_is_raised_in_the_clips_place_and_that_clip_is_made_again():
    stages = FakeStages()
    stages.fail = {1}
    with _fake_stream("jazz", stages, buffer_ahead=2) as stream:
        first = next(stream)
        with pytest.raises(RuntimeError, match="no clip at 1"):
            next(stream)
        again: Any = next(stream)
    assert _path(first)[-1] == 0.0 and _path(again) == ("jazz", 0, "jazz", 1, 0.25)
    assert again.step.index == 1 and stream.taken == 2


def test_a_bad_item_of_a_lazy_prompt_iterable_is_raised_when_reached():
    with _fake_stream(iter(["a", "b", 42]), steps_per_transition=1, buffer_ahead=2) as stream:
        assert _path(next(stream)) == ("a", 0, "b", 1, 0.0)
        with refused(ParameterError, phrase="PromptInput, str or dict"):
            next(stream)
        with pytest.raises(StopIteration):
            next(stream)


def test_make_ahead_on_the_callers_thread():
    stages = FakeStages()
    with _fake_stream("jazz", stages, buffer_ahead=2, background=False) as stream:
        assert stream.poll() is None
        assert [stream.make_ahead() for _ in range(3)] == [True, True, False]
        assert stream.buffered == 2
        assert _path(stream.poll())[-1] == 0.0
        assert stream.make_ahead() is True
        assert [_path(next(stream))[-1] for _ in range(3)] == [0.25, 0.5, 0.75]
    assert {name for _, name in stages.threads} == {threading.current_thread().name}
    with _fake_stream("jazz", buffer_ahead=1) as background:
        assert_refused(background.make_ahead, phrase="background=False")


def test_decoding_overlaps_on_its_own_thread_when_two_or_more_are_buffered():
    stages = FakeStages()
    with _fake_stream("jazz", stages, buffer_ahead=2, max_clips=3) as stream:
        list(stream)
    assert stages.threads == {("draw", "riffusion-stream"), ("decode", "riffusion-stream-decode_0")}


def test_closing_and_dropping_stop_the_worker():
    stream = _fake_stream("jazz", buffer_ahead=2)
    next(stream)
    worker = stream._engine._worker
    assert worker is not None
    stream.close()
    assert not worker.is_alive() and stream.closed
    with pytest.raises(StopIteration):
        next(stream)
    with refused(RiffusionError, phrase="closed"):
        stream.set_prompt("rock")
    dropped = _fake_stream("jazz", buffer_ahead=2)
    next(dropped)
    dropped_worker = dropped._engine._worker
    assert dropped_worker is not None
    del dropped
    gc.collect()
    _wait_until(lambda: not dropped_worker.is_alive(), "the worker of a dropped stream to stop")


def test_setters_check_every_value_before_touching_the_stream():
    stream = _fake_stream("jazz")
    before = stream.settings
    assert_refused(stream.set_prompt, 42, named="prompt=42", phrase="must be a str")
    assert_refused(stream.set_prompt, None, named="prompt=None", phrase="must be a str")
    assert_refused(stream.set_denoising, 1.5, named="denoising=1.5", phrase="[0, 1]")
    assert_refused(stream.set_denoising, float("nan"), named="denoising=nan", phrase="[0, 1]")
    assert_refused(stream.set_denoising, True, named="denoising=True", phrase="[0, 1]")
    assert_refused(stream.set_guidance, -1, named="guidance=-1", phrase=">= 0")
    assert_refused(stream.set_guidance, "7", named="guidance='7'", phrase="finite number")
    assert_refused(
        stream.set_seed_image, "no_such_seed", mentions="seed_image='no_such_seed'", phrase="known"
    )
    assert_refused(stream.set_seed_image, 42, mentions="seed_image", phrase="got int")
    assert_refused(stream.set_mask_image, "nope", mentions="mask_image='nope'", phrase="known")
    # Several at once: one bad value changes nothing, the good ones included.
    assert_refused(
        stream.set_target, prompt="rock", denoising=2, named="denoising=2", phrase="[0, 1]"
    )
    stream.set_seed_image(None)
    assert_refused(
        stream.set_mask_image, "keep_bass", named="mask_image='keep_bass'",
        phrase="needs a seed image",
    )  # fmt: skip
    stream.set_target(seed_image="straight_beat", mask_image="keep_bass")
    assert_refused(
        stream.set_seed_image, None, named="seed_image=None", phrase="needs a seed image"
    )
    assert stream.set_target() == 0 and stream.set_target(prompt=KEEP) == 0
    assert stream.settings.mask_id == "keep_bass" and before.mask_id is None
    assert stream.taken == 0 and stream._engine.epoch == 2  # the two accepted changes only
    small = load_mask_image("keep_bass").resize((256, 512))
    assert_refused(stream.set_mask_image, small, mentions="256x512", phrase="seed image's 512x512")
    stream.close()


# ----------------------------------------------------------------------- the tiny model
@pytest.fixture(scope="module")
def riffuser():
    with single_thread_riffuser(scheduler="default") as riffuser:
        yield riffuser


JAZZ, JAZZ_NEXT = PromptInput("jazz", seed=0), PromptInput("jazz", seed=1)
ROCK = PromptInput("rock", seed=1)  # set_prompt("rock") while jazz seed 0 plays


@pytest.fixture(scope="module")
def toward_rock(riffuser):
    """The first step of the transition from jazz (seed 0) toward rock, as riffuse makes it."""
    return riffuser.riffuse(JAZZ, ROCK, 0.25, num_inference_steps=STEPS)


def test_set_prompt_while_three_clips_are_buffered(riffuser, toward_rock):
    stream = riffuser.stream("jazz", buffer_ahead=3, num_inference_steps=STEPS)
    assert isinstance(stream, Stream)
    with stream:
        first = next(stream)
        _wait_until(lambda: stream.buffered == 3, "three clips ahead")
        # A refused change leaves the buffer alone.
        assert_refused(stream.set_prompt, 7, named="prompt=7", phrase="must be a str")
        assert stream.buffered == 3
        assert stream.set_prompt("rock") == 3
        assert stream.buffered == 0
        following = next(stream)
    assert (first.recipe.start, first.recipe.end, first.recipe.alpha) == (JAZZ, JAZZ_NEXT, 0.0)
    # The next clip taken is the first step of the transition toward "rock" ...
    assert (following.recipe.start, following.recipe.end) == (JAZZ, ROCK)
    assert following.recipe.alpha == 0.25 and following.debug["alphas"] == [0.25]
    assert following.recipe == toward_rock.recipe
    assert following.audio == toward_rock.audio
    # ... not what the old stream had made ahead for that place (jazz 0 → 1 at 0.25).
    old = riffuser.riffuse(JAZZ, JAZZ_NEXT, 0.25, num_inference_steps=STEPS)
    assert following.audio != old.audio and following.recipe.end != old.recipe.end


def test_an_unbuffered_stream_honours_set_prompt_on_the_next_clip(riffuser, toward_rock):
    with riffuser.stream("jazz", num_inference_steps=STEPS) as stream:
        next(stream)
        assert stream.set_prompt("rock") == 0
        following = next(stream)
    assert following.recipe == toward_rock.recipe and following.audio == toward_rock.audio


def test_set_denoising_and_set_seed_image_reach_the_next_clip(riffuser):
    with riffuser.stream("jazz", buffer_ahead=2, num_inference_steps=STEPS) as stream:
        next(stream)
        _wait_until(lambda: stream.buffered == 2, "two clips ahead")
        stream.set_denoising(0.5)
        softer = next(stream)
        stream.set_seed_image("breakbeat")
        other_seed = next(stream)
    assert softer.recipe.start == dataclasses.replace(JAZZ, denoising=0.5)
    assert softer.recipe.end == dataclasses.replace(JAZZ_NEXT, denoising=0.5)
    assert softer.debug["strengths"] == [0.5] and softer.recipe.alpha == 0.25
    expected = riffuser.riffuse(
        softer.recipe.start, softer.recipe.end, 0.25, num_inference_steps=STEPS
    )
    assert softer.audio == expected.audio
    assert other_seed.recipe.seed_image == "breakbeat" and other_seed.recipe.alpha == 0.5
    assert other_seed.debug["strengths"] == [0.5]
    expected = riffuser.riffuse(
        other_seed.recipe.start, other_seed.recipe.end, 0.5, num_inference_steps=STEPS,
        seed_image="breakbeat",
    )  # fmt: skip
    assert other_seed.audio == expected.audio


def test_a_change_stops_the_model_at_its_next_step(riffuser):
    seen: list[int] = []
    stream = riffuser.stream("jazz", buffer_ahead=1, num_inference_steps=40)

    def record(progress):
        seen.append(progress.step)
        if len(seen) == 2:
            stream.set_prompt("rock")  # before the first clip: the stream starts at rock

    with riffuser.on_progress(record), stream:
        first = next(stream)
    steps = len(first.debug["timesteps"][0])  # 31 (PNDM) at denoising 0.75 of 40
    assert first.recipe.start == PromptInput("rock", seed=1) and steps > 20
    # The jazz clip stopped after the step that followed the change; then rock's steps.
    assert seen[: 3 + steps] == [1, 2, 3, *range(1, steps + 1)]


class DecodeApart(RiffuseStages):
    """The stages as on a CUDA device: each decode on the stream's second thread."""

    threads: ClassVar[set[str]] = set()

    def decode(self, drawn: Any) -> Any:
        self.threads.add(threading.current_thread().name)
        return super().decode(drawn)

    def decode_apart(self, drawn: Any) -> bool:
        return True


def test_decoding_on_its_own_thread_gives_the_same_clips(riffuser):
    stages = DecodeApart(
        riffuser.pipeline, riffuser.params, lock=riffuser.lock, record=riffuser._recipe
    )
    on_the_cpu: Any = SimpleNamespace(device=torch.device("cpu"))
    assert RiffuseStages.decode_apart(stages, on_the_cpu) is False  # in line on the CPU
    settings = StreamSettings(
        load_seed_image("straight_beat").convert("RGB"), "straight_beat", None, None, STEPS
    )
    schedule = stream_schedule("jazz", steps_per_transition=4)
    with Stream(stages, schedule, settings, buffer_ahead=2, max_clips=3) as stream:
        clips = list(stream)
    assert DecodeApart.threads == {"riffusion-stream-decode_0"}
    for clip, alpha in zip(clips, (0.0, 0.25, 0.5), strict=True):
        expected = riffuser.riffuse(JAZZ, JAZZ_NEXT, alpha, num_inference_steps=STEPS)
        assert clip.recipe == expected.recipe and clip.audio == expected.audio


def test_stages_draw_and_decode_make_riffuses_clip(riffuser):
    stages = RiffuseStages(
        riffuser.pipeline, riffuser.params, lock=riffuser.lock, record=riffuser._recipe
    )
    step = StreamStep(JAZZ, ROCK, 0.5, 0)
    seed = load_seed_image("straight_beat").convert("RGB")
    task = StreamTask(0, step, StreamSettings(seed, "straight_beat", None, None, STEPS))
    drawn = stages.draw(task)
    assert drawn.image.size == (512, 512) and drawn.recipe.kind == "riffuse"
    clip = stages.decode(drawn)
    expected = riffuser.riffuse(JAZZ, ROCK, 0.5, num_inference_steps=STEPS)
    assert clip.recipe == expected.recipe and clip.audio == expected.audio
    assert clip.audio.num_samples == 225351
