"""The live stream API of ``riffusion serve``: ``/api/stream`` on the tiny model.

A target change reaches the very next clip; clips are made on the server's one device worker
(at most one job per stream in its queue, none while the queue is half full); every field is
checked (400 naming it), unknown streams are 404, foreign origins 403, and the number and
idle time of streams are bounded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from riffusion import PromptInput
from riffusion.server import create_app
from riffusion.server.streams import MAX_STREAM_PROMPTS, MAX_STREAMS
from tests.server_fixtures import ATTACKER, LOCAL

STEPS = 2
QUICK = {"num_inference_steps": STEPS}


def _wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _error(response, status: int, field: str | None = None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "field"} and body["field"] == field, body
    return body["error"]


def _start(client, **body) -> str:
    response = client.post("/api/stream", json={"prompts": ["jazz"], **QUICK, **body})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def _live(client, stream_id: str):
    return client.app.state.server.streams.get(stream_id)


# --------------------------------------------------------------------- the contract
def test_a_target_change_reaches_the_next_clip(client, riffuser):
    created = client.post("/api/stream", json={"prompts": ["jazz"], "buffer_ahead": 2, **QUICK})
    assert created.status_code == 200, created.text
    answer = created.json()
    stream_id = answer["id"]
    assert answer["buffer_ahead"] == 2 and answer["next"] == f"/api/stream/{stream_id}/next"
    first = client.get(answer["next"])
    assert first.status_code == 200, first.text
    clip = first.json()
    # The answer of POST /api/clip, plus where the clip is in the stream.
    assert {"id", "image", "audio", "duration_s", "recipe", "recipe_url", "debug", "files"} < set(
        clip
    )
    assert clip["stream"]["id"] == stream_id and clip["stream"]["index"] == 0
    assert clip["recipe"]["start"] == PromptInput("jazz", seed=0).to_dict()
    assert clip["recipe"]["alpha"] == 0 and clip["recipe"]["end"]["seed"] == 1
    assert client.get(clip["files"]["wav"]).status_code == 200

    live = _live(client, stream_id)
    _wait_until(lambda: live.stream.buffered == 2, "two clips ahead")
    changed = client.post(answer["target"], json={"prompt": "rock"})
    assert changed.json() == {"id": stream_id, "dropped": 2}
    following = client.get(answer["next"]).json()
    # The first step of the transition toward "rock" (seeded after the playing jazz, 0).
    start, rock = PromptInput("jazz", seed=0), PromptInput("rock", seed=1)
    assert following["recipe"]["end"] == rock.to_dict()
    assert following["recipe"]["alpha"] == 0.25 and following["stream"]["index"] == 1
    expected = riffuser.riffuse(start, rock, 0.25, num_inference_steps=STEPS)
    assert following["recipe"] == expected.recipe.to_dict()
    made = client.app.state.server.recent[following["id"]]
    assert made.audio == expected.audio

    assert client.delete(f"/api/stream/{stream_id}").json() == {"id": stream_id, "closed": True}
    assert live.stream.closed
    _error(client.get(answer["next"]), 404, "stream_id")
    _error(client.delete(f"/api/stream/{stream_id}"), 404, "stream_id")


def test_seed_image_and_denoising_targets_reach_the_next_clip(client):
    stream_id = _start(client, buffer_ahead=0)
    client.get(f"/api/stream/{stream_id}/next")
    changed = client.post(
        f"/api/stream/{stream_id}/target",
        json={"seed_image_id": "marimba_arp", "denoising": 0.5, "guidance": 3},
    )
    assert changed.json() == {"id": stream_id, "dropped": 0}
    clip = client.get(f"/api/stream/{stream_id}/next").json()
    recipe = clip["recipe"]
    assert recipe["seed_image"] == "marimba_arp" and recipe["alpha"] == 0.25
    assert recipe["start"]["denoising"] == recipe["end"]["denoising"] == 0.5
    assert recipe["start"]["guidance"] == 3.0 and clip["debug"]["strengths"] == [0.5]
    # null gives the prompts their own values back.
    client.post(f"/api/stream/{stream_id}/target", json={"denoising": None})
    assert client.get(f"/api/stream/{stream_id}/next").json()["debug"]["strengths"] == [0.75]
    client.delete(f"/api/stream/{stream_id}")


# --------------------------------------------------------------------- the device queue
def test_a_stream_makes_its_clips_on_the_device_worker_one_job_at_a_time(riffuser):
    release = threading.Event()
    with TestClient(create_app(riffuser, max_queue=1), base_url=LOCAL) as client:
        worker = client.app.state.worker
        blocker = worker.submit(lambda job: release.wait(60))
        try:
            stream_id = _start(client, buffer_ahead=3)
            assert worker.waiting == 1  # its one pump job, queued behind the running job
            client.post(f"/api/stream/{stream_id}/target", json={"prompt": "rock"})
            assert worker.waiting == 1  # still one: a stream never queues a second
            # With the queue more than half full (1 of 1), a new stream makes nothing ahead.
            _start(client)
            assert worker.waiting == 1
        finally:
            release.set()
        blocker.future.result(10)
        live = _live(client, stream_id)
        _wait_until(lambda: live.stream.buffered == 3, "the buffer to fill")
        clip = client.get(f"/api/stream/{stream_id}/next").json()
        assert clip["recipe"]["start"]["prompt"] == "rock"  # set before its first clip
        assert clip["debug"]["timings_s"]["queue"] == 0.0  # made ahead
    assert live.stream.closed  # the server's shutdown closed it


def test_streams_are_bounded_in_number_and_idle_time(riffuser):
    with TestClient(create_app(riffuser), base_url=LOCAL) as client:
        streams = client.app.state.server.streams
        now = [0.0]
        streams.clock = lambda: now[0]
        ids = [_start(client, buffer_ahead=0) for _ in range(MAX_STREAMS)]
        now[0] = 1.0
        client.post(f"/api/stream/{ids[0]}/target", json={"denoising": 0.6})  # used: not oldest
        newest = _start(client, buffer_ahead=0)
        _error(client.post(f"/api/stream/{ids[1]}/target", json={"guidance": 5}), 404, "stream_id")
        assert len(streams) == MAX_STREAMS
        # When every stream has a request waiting, a new one is refused.
        for stream_id in [ids[0], *ids[2:], newest]:
            streams.get(stream_id).busy = True
        refused = client.post("/api/stream", json={"prompts": ["x"]})
        _error(refused, 503)
        assert refused.headers["retry-after"] == "5"
        busy = streams.get(ids[2])
        assert client.get(f"/api/stream/{ids[2]}/next").status_code == 409
        for stream_id in [ids[0], *ids[2:], newest]:
            streams.get(stream_id).busy = False
        # A stream unused for idle_s is closed.
        now[0] += streams.idle_s + 1
        _error(client.get(f"/api/stream/{newest}/next"), 404, "stream_id")
        assert len(streams) == 0 and busy.stream.closed


# ------------------------------------------------------------------------ hostile input
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([1, 2], None),
        ({}, "prompts"),
        ({"prompts": []}, "prompts"),
        ({"prompts": "jazz"}, "prompts"),
        ({"prompts": ["x"] * (MAX_STREAM_PROMPTS + 1)}, "prompts"),
        ({"prompts": [42]}, "prompts[0]"),
        ({"prompts": ["jazz", ""]}, "prompts[1]"),
        ({"prompts": ["x" * 1001]}, "prompts[0]"),
        ({"prompts": [{"prompt": "x"}]}, "prompts[0].seed"),
        ({"prompts": [{"prompt": "x", "seed": -1}]}, "prompts[0].seed"),
        ({"prompts": [{"prompt": "x", "seed": 1, "denoising": 2}]}, "prompts[0].denoising"),
        ({"prompts": [{"prompt": "x", "seed": 1, "bogus": 1}]}, "prompts[0].bogus"),
        ({"prompts": ["x"], "steps_per_transition": 0}, "steps_per_transition"),
        ({"prompts": ["x"], "steps_per_transition": 33}, "steps_per_transition"),
        ({"prompts": ["x"], "steps_per_transition": True}, "steps_per_transition"),
        ({"prompts": ["x"], "num_inference_steps": 201}, "num_inference_steps"),
        ({"prompts": ["x"], "num_inference_steps": 2.5}, "num_inference_steps"),
        ({"prompts": ["x"], "buffer_ahead": 4}, "buffer_ahead"),
        ({"prompts": ["x"], "buffer_ahead": -1}, "buffer_ahead"),
        ({"prompts": ["x"], "seed_image_id": "../../etc/passwd"}, "seed_image_id"),
        ({"prompts": ["x"], "seed_image_id": None}, "seed_image_id"),
        ({"prompts": ["x"], "mask_image_id": "nope"}, "mask_image_id"),
        ({"prompts": ["x"], "scheduler": "bogus"}, "scheduler"),
        ({"prompts": ["x"], "bogus": 1}, "bogus"),
    ],
)
def test_bad_stream_fields_get_400_naming_the_field(client, body, field):
    before = len(client.app.state.server.streams)
    _error(client.post("/api/stream", json=body), 400, field)
    assert len(client.app.state.server.streams) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, None),
        ("rock", None),
        ({"prompt": 5}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": {"prompt": "x"}}, "prompt.seed"),
        ({"denoising": 2}, "denoising"),
        ({"denoising": "0.5"}, "denoising"),
        ({"guidance": -1}, "guidance"),
        ({"guidance": 1e308}, "guidance"),
        ({"seed_image_id": "nope"}, "seed_image_id"),
        ({"mask_image_id": "../x"}, "mask_image_id"),
        ({"prompt": "rock", "bogus": 1}, "bogus"),
    ],
)
def test_bad_target_fields_get_400_and_change_nothing(client, body, field):
    stream_id = _start(client, buffer_ahead=0)
    live = _live(client, stream_id)
    before = live.stream.settings
    _error(client.post(f"/api/stream/{stream_id}/target", json=body), 400, field)
    assert live.stream.settings is before and live.stream._engine.epoch == 0
    client.delete(f"/api/stream/{stream_id}")


def test_unknown_streams_are_404(client):
    for stream_id in ["0123456789abcdef", "x" * 5000, "%C3%BC", "..."]:
        _error(client.get(f"/api/stream/{stream_id}/next"), 404, "stream_id")
        target = client.post(f"/api/stream/{stream_id}/target", json={"prompt": "x"})
        _error(target, 404, "stream_id")
        _error(client.delete(f"/api/stream/{stream_id}"), 404, "stream_id")


def test_foreign_origins_and_missing_keys_are_refused_before_any_work(riffuser, monkeypatch):
    key = "s3cret-key-123"
    with TestClient(create_app(riffuser, api_key=key), base_url=LOCAL) as client:
        authorised = {"Authorization": f"Bearer {key}"}
        submitted = []
        worker = client.app.state.worker
        stream_id = client.post(
            "/api/stream", json={"prompts": ["x"], "buffer_ahead": 0}, headers=authorised
        ).json()["id"]
        monkeypatch.setattr(worker, "submit", lambda work: submitted.append(work))
        forged = {"Origin": ATTACKER, **authorised}
        body = json.dumps({"prompts": ["x"]})
        text = {"Content-Type": "text/plain"}
        for response in [
            client.post("/api/stream", content=body, headers={**forged, **text}),
            client.get(f"/api/stream/{stream_id}/next", headers=forged),
            client.post(f"/api/stream/{stream_id}/target", json={"prompt": "y"}, headers=forged),
            client.delete(f"/api/stream/{stream_id}", headers=forged),
        ]:
            _error(response, 403, "Origin")
        for response in [
            client.post("/api/stream", content=body),
            client.get(f"/api/stream/{stream_id}/next"),
            client.delete(f"/api/stream/{stream_id}"),
        ]:
            _error(response, 401, "Authorization")
        assert submitted == [] and len(client.app.state.server.streams) == 1
