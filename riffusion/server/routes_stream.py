"""The live stream API: the web app's endless playback, with the target changeable mid-stream.

- ``POST /api/stream``: ``{"prompts": [...], ...}`` → ``{"id": ..., ...}``; clips start being
  made ahead at once.
- ``GET /api/stream/{id}/next``: the next clip, answered as ``POST /api/clip`` answers (plus
  ``"stream": {"id", "index", "buffered"}``); made ahead already, or made now.
- ``POST /api/stream/{id}/target``: a new ``prompt``, ``seed_image_id``, ``mask_image_id``,
  ``denoising`` or ``guidance``; the clips made ahead are dropped, so the next clip follows it.
- ``DELETE /api/stream/{id}``: close it.

Every clip is made on the server's device worker (:mod:`riffusion.server.streams` says how
streams share it); every field is checked before anything is queued (400 naming the field).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from riffusion._checks import describe, finite_float
from riffusion.defaults import SCHEDULER_NAMES
from riffusion.errors import GenerationCancelled, ParameterError, RiffusionError
from riffusion.inputs import MAX_NUM_INFERENCE_STEPS, InferencePrompt, InputError, PromptInput
from riffusion.server.api_docs import json_body
from riffusion.server.bodies import read_json
from riffusion.server.device import run_on_device
from riffusion.server.errors import HTTPError
from riffusion.server.routes_api import clip_response
from riffusion.server.schemas import (
    StreamClipAnswer,
    StreamClosed,
    StreamCreateBody,
    StreamCreated,
    StreamRetargeted,
    StreamTargetBody,
    error_responses,
)
from riffusion.server.state import ServerState, State
from riffusion.server.streams import (
    MAX_STEPS_PER_TRANSITION,
    MAX_STREAM_BUFFER,
    MAX_STREAM_PROMPTS,
    LiveStream,
    with_scheduler,
)
from riffusion.server.urls import app_path
from riffusion.server.worker import Job

__all__ = ["router"]

_CREATE_FIELDS = (
    "prompts",
    "steps_per_transition",
    "num_inference_steps",
    "buffer_ahead",
    "seed_image_id",
    "mask_image_id",
    "scheduler",
)
_TARGET_FIELDS = ("prompt", "seed_image_id", "mask_image_id", "denoising", "guidance")
# A library refusal of a change, by the argument it names first → the request's field.
_FIELD_OF_ARGUMENT = {
    "prompt": "prompt",
    "seed_image": "seed_image_id",
    "mask_image": "mask_image_id",
    "denoising": "denoising",
    "guidance": "guidance",
}

router = APIRouter(tags=["streams"], responses=error_responses(401, 403))


@router.post(
    "/api/stream",
    summary="Start a stream",
    response_model=StreamCreated,
    responses=error_responses(400, 408, 413, 503),
    openapi_extra=json_body(StreamCreateBody, description="the prompts and the stream's settings"),
)
async def create_stream(request: Request, state: State) -> Response:
    """Start a stream.

    Takes ``prompts`` (1 to 16: objects like ``/api/clip``'s ``start``, or strings, which
    are seeded 0, 1, ... as ``riffusion.schedule.stream_schedule`` does) and optionally
    ``steps_per_transition`` (4), ``num_inference_steps`` (50), ``buffer_ahead`` (clips made
    ahead, 0 to 3; 2), ``seed_image_id`` (``og_beat``), ``mask_image_id``, ``scheduler``.
    Returns ``id``, ``buffer_ahead``, ``idle_timeout_s`` and the ``next``, ``target`` and
    ``stream`` links.
    """
    data = await read_json(request, state.max_body_bytes)
    options = _create_options(state, data)
    seed_source = options["seed_image"]
    try:
        stream = await run_in_threadpool(functools.partial(_open_stream, state, options))
    except ParameterError as error:
        raise InputError(_field_of(error), str(error)) from None
    live = state.streams.add(stream, options.pop("scheduler"))
    _remember_source(live, seed_source)
    base = app_path(request, f"/api/stream/{live.id}")
    return JSONResponse(
        {
            "id": live.id,
            "buffer_ahead": stream.buffer_ahead,
            "idle_timeout_s": state.streams.idle_s,
            "next": f"{base}/next",
            "target": f"{base}/target",
            "stream": base,
        }
    )


@router.get(
    "/api/stream/{stream_id}/next",
    summary="The stream's next clip",
    response_model=StreamClipAnswer,
    responses=error_responses(404, 409, 500, 503),
)
async def stream_next(stream_id: str, request: Request, state: State) -> Response:
    """The stream's next clip, in ``POST /api/clip``'s answer, plus ``stream``: its ``id``,
    the clip's ``index`` in the stream (from 0) and the clips still ``buffered``.

    404 for an unknown or closed stream; 409 while another ``next`` of it is waiting.
    """
    live = state.streams.get(stream_id)
    if live.busy:
        raise HTTPError(
            409, "a request for this stream's next clip is already waiting", "stream_id"
        )
    live.busy = True
    try:
        try:
            clip, job = live.stream.poll(), None
        except GenerationCancelled:  # a clip ahead was stopped: make it again, now
            clip = None
        if clip is None:
            clip, job = await run_on_device(request, state.worker, _next_work(state, live))
    finally:
        live.busy = False
    source = live.sources.get(clip.recipe.seed_image or "")
    if source is not None:
        state.assets.remember(clip.recipe.seed_image, source)
    state.streams.pump(live)
    where = {"id": live.id, "index": live.stream.taken - 1, "buffered": live.stream.buffered}
    return await clip_response(request, state, clip, job, {"stream": where})


@router.post(
    "/api/stream/{stream_id}/target",
    summary="Change what the stream plays next",
    response_model=StreamRetargeted,
    responses=error_responses(400, 404, 408, 413),
    openapi_extra=json_body(StreamTargetBody, description="the changes: at least one field"),
)
async def stream_target(stream_id: str, request: Request, state: State) -> Response:
    """Change what the stream plays next.

    Takes any of ``prompt`` (an object like ``/api/clip``'s ``start``, or a string: the
    prompt playing with this text and the next seed), ``seed_image_id``, ``mask_image_id``
    (``null`` or ``""``: none), ``denoising`` and ``guidance`` (numbers for every next clip,
    or ``null`` for the prompts' own). The clips made ahead are dropped and the one being made
    is stopped at its next step. Returns ``id`` and ``dropped`` (clips dropped).
    """
    live = state.streams.get(stream_id)
    changes = _target_changes(state, await read_json(request, state.max_body_bytes))
    try:
        dropped = await run_in_threadpool(functools.partial(live.stream.set_target, **changes))
    except ParameterError as error:
        raise InputError(_field_of(error), str(error)) from None
    except RiffusionError as error:  # closed meanwhile
        raise HTTPError(404, str(error), "stream_id") from None
    if "seed_image" in changes:
        _remember_source(live, changes["seed_image"])
    state.streams.pump(live)
    return JSONResponse({"id": live.id, "dropped": dropped})


@router.delete(
    "/api/stream/{stream_id}",
    summary="Close a stream",
    response_model=StreamClosed,
    responses=error_responses(404),
)
async def delete_stream(stream_id: str, state: State) -> Response:
    """Close a stream (the clip being made for it stops at its next step). Returns ``id``
    and ``closed``; 404 for an unknown stream."""
    live = state.streams.remove(stream_id)
    return JSONResponse({"id": live.id, "closed": True})


# ------------------------------------------------------------------------------ work
def _open_stream(state: ServerState, options: dict[str, Any]) -> Any:
    return state.riffuser.stream(
        options["prompts"],
        steps_per_transition=options["steps_per_transition"],
        buffer_ahead=options["buffer_ahead"],
        background=False,
        num_inference_steps=options["num_inference_steps"],
        seed_image=options["seed_image"],
        mask_image=options["mask_image"],
    )


def _next_work(state: ServerState, live: LiveStream) -> Callable[[Job], Any]:
    def work(job: Job) -> Any:
        make = functools.partial(next, live.stream, None)
        clip = with_scheduler(state.riffuser, live.scheduler, job, make)
        if clip is None:
            raise HTTPError(404, f"stream {live.id} was closed", "stream_id")
        return clip

    return work


def _remember_source(live: LiveStream, source: Any) -> None:
    """A seed image from the folder or an upload gets a ``custom:`` id in the recipes: keep
    its source, so that ``/api/clip`` can render those recipes again."""
    identity = live.stream.settings.seed_id
    if not isinstance(source, str) and identity is not None:
        live.sources[identity] = source


# --------------------------------------------------------------------------- checks
def _fields(data: Any, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> None:
    if not isinstance(data, dict):
        raise InputError(None, f"body must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise InputError(unknown[0][:64], f"unknown field; this call takes {', '.join(allowed)}")
    for name in required:
        if name not in data:
            raise InputError(name, "is required")


def _integer(data: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = data.get(name, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JavaScript may send 4.0
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(name, f"{describe(value)} must be an integer in [{low}, {high}]")
    return value


def _number_or_null(value: Any, name: str, high: float) -> float | None:
    if value is None:
        return None
    number = finite_float(value)
    if number is None or not 0 <= number <= high:
        raise InputError(name, f"{describe(value)} must be a number in [0, {high:g}] or null")
    return number


def _prompt(value: Any, field: str) -> PromptInput | str:
    """A prompt of a request: an object as ``/api/clip``'s ``start``, or a non-empty string."""
    if isinstance(value, str):
        try:  # the text's checks (length, NUL, Unicode, not empty)
            InferencePrompt.from_json({"prompt": value, "seed": 0}, field)
        except InputError as error:
            raise InputError(field, error.message) from None
        return value
    if isinstance(value, dict):
        return PromptInput(**InferencePrompt.from_json(value, field).to_dict())
    raise InputError(
        field, f"{describe(value)} must be a prompt object ({{prompt, seed, ...}}) or a string"
    )


def _create_options(state: ServerState, data: Any) -> dict[str, Any]:
    _fields(data, _CREATE_FIELDS, required=("prompts",))
    prompts = data["prompts"]
    if not isinstance(prompts, list) or not 1 <= len(prompts) <= MAX_STREAM_PROMPTS:
        raise InputError(
            "prompts",
            f"must be a list of 1 to {MAX_STREAM_PROMPTS} prompts (objects like /api/clip's "
            "start, or strings)",
        )
    scheduler = data.get("scheduler", state.default_scheduler)
    if scheduler not in SCHEDULER_NAMES and scheduler != "default":
        raise InputError(
            "scheduler", f"{describe(scheduler)} must be one of {list(SCHEDULER_NAMES)}"
        )
    steps, transition = MAX_NUM_INFERENCE_STEPS, MAX_STEPS_PER_TRANSITION
    return {
        "prompts": [_prompt(item, f"prompts[{i}]") for i, item in enumerate(prompts)],
        "steps_per_transition": _integer(data, "steps_per_transition", 4, 1, transition),
        "num_inference_steps": _integer(data, "num_inference_steps", 50, 1, steps),
        "buffer_ahead": _integer(data, "buffer_ahead", 2, 0, MAX_STREAM_BUFFER),
        "seed_image": state.assets.seed_source(data.get("seed_image_id", "og_beat")),
        "mask_image": state.assets.mask_source(data.get("mask_image_id")),
        "scheduler": scheduler,
    }


def _target_changes(state: ServerState, data: Any) -> dict[str, Any]:
    _fields(data, _TARGET_FIELDS)
    if not data:
        raise InputError(None, f"give at least one of {', '.join(_TARGET_FIELDS)}")
    changes: dict[str, Any] = {}
    if "prompt" in data:
        changes["prompt"] = _prompt(data["prompt"], "prompt")
    if "seed_image_id" in data:
        changes["seed_image"] = state.assets.seed_source(data["seed_image_id"])
    if "mask_image_id" in data:
        changes["mask_image"] = state.assets.mask_source(data["mask_image_id"])
    if "denoising" in data:
        changes["denoising"] = _number_or_null(data["denoising"], "denoising", 1.0)
    if "guidance" in data:
        changes["guidance"] = _number_or_null(data["guidance"], "guidance", 100.0)
    return changes


def _field_of(error: ParameterError) -> str | None:
    """The request field a library refusal is about (by the argument its message names)."""
    message = str(error)
    for argument, field in _FIELD_OF_ARGUMENT.items():
        if message.startswith(argument):
            return field
    return None
