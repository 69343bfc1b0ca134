"""The JSON API: ``POST /api/clip`` and ``GET /api/clips/{id}/{file}``.

A clip is asked for with prompt inputs (the web app's fields, ``end`` optional, plus a
``scheduler``) or with a recipe alone (``{"recipe": ...}``, rendered again exactly); the answer
carries the image, the audio, the recipe, per-stage timings and links to the clip's files,
which stay downloadable for the last :data:`MAX_RECENT_CLIPS` clips.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from riffusion import Recipe
from riffusion.defaults import SCHEDULER_NAMES
from riffusion.errors import ParameterError
from riffusion.inputs import (
    MAX_NUM_INFERENCE_STEPS,
    MAX_PROMPT_CHARS,
    InferenceInput,
    InputError,
    PromptInput,
    check_asset_id,
)
from riffusion.server import media
from riffusion.server.api_docs import json_body
from riffusion.server.bodies import read_json
from riffusion.server.device import riffuse_job, run_on_device, server_timing
from riffusion.server.errors import HTTPError
from riffusion.server.schemas import ClipAnswer, ClipPromptBody, ClipRecipeBody, error_responses
from riffusion.server.state import ServerState, State
from riffusion.server.urls import app_path
from riffusion.server.worker import Job

__all__ = ["MAX_RECENT_CLIPS", "MAX_RECIPE_DURATION_S", "clip_response", "router"]

MAX_RECENT_CLIPS = 32
"""Clips kept in memory for ``/api/clips/{id}/...`` downloads (oldest dropped first)."""
MAX_RECIPE_DURATION_S = 30.0
"""Longest clip a recipe sent to ``/api/clip`` may ask for (in seconds)."""
# Scheduler settings a recipe sent to the server may carry (the library bounds their values):
# none of them sizes an array or a loop.
_RECIPE_SCHEDULER_KEYS = frozenset(
    {
        "algorithm_type",
        "beta_end",
        "beta_schedule",
        "beta_start",
        "clip_sample",
        "euler_at_final",
        "final_sigmas_type",
        "lower_order_final",
        "prediction_type",
        "set_alpha_to_one",
        "skip_prk_steps",
        "solver_order",
        "steps_offset",
        "timestep_spacing",
        "use_karras_sigmas",
        "use_lu_lambdas",
    }
)
_FILES = {
    "audio.wav": "audio/wav",
    "audio.mp3": "audio/mpeg",
    "image.png": "image/png",
    "recipe.json": "application/json",
}

_BINARY = {"schema": {"type": "string", "format": "binary"}}

router = APIRouter(tags=["clips"], responses=error_responses(401, 403))


@router.post(
    "/api/clip",
    summary="Generate one clip",
    response_model=ClipAnswer,
    responses=error_responses(400, 408, 413, 500, 503),
    openapi_extra=json_body(
        ClipPromptBody,
        ClipRecipeBody,
        description="prompt inputs (start, optionally end and alpha), or a recipe alone",
    ),
)
async def api_clip(request: Request, state: State) -> Response:
    """Generate one clip.

    Takes a JSON object: the web app's fields (``start``; ``end`` and ``alpha`` optional;
    ``num_inference_steps``, ``seed_image_id``, ``mask_image_id``) plus ``scheduler``, or
    ``{"recipe": share string | JSON text | object}`` alone. Returns ``id``, ``image`` and
    ``audio`` (data URLs), ``duration_s``, ``recipe``, ``recipe_url``, ``debug`` (timings,
    steps run), ``device`` and ``files`` (links), with a ``Server-Timing`` header.
    """
    data = await read_json(request, state.max_body_bytes)
    if not isinstance(data, dict):
        raise InputError(None, f"body must be a JSON object, got {type(data).__name__}")
    work = _render_work(state, data) if "recipe" in data else _riffuse_work(state, data)
    clip, job = await run_on_device(request, state.worker, work)
    return await clip_response(request, state, clip, job)


async def clip_response(
    request: Request,
    state: ServerState,
    clip: Any,
    job: Job | None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """The answer of ``POST /api/clip`` for ``clip`` (also ``/api/stream/{id}/next``'s).

    Encodes it (JPEG and MP3 data URLs) and keeps it for ``/api/clips/{id}/...``.

    Args:
        request: the request answered (its ``root_path`` prefixes the links).
        state: the server's state.
        clip: the clip made.
        job: the worker job that made it, or ``None`` for a clip made ahead (no queue time;
            its steps are those of its recipe's window).
        extra: more top-level fields of the answer.
    """
    encode_started = time.perf_counter()
    clip_id = secrets.token_hex(8)
    encoded = await run_in_threadpool(_encode, clip)
    encode_s = time.perf_counter() - encode_started
    state.recent[clip_id] = clip
    while len(state.recent) > MAX_RECENT_CLIPS:
        state.recent.popitem(last=False)
    debug = json.loads(json.dumps(clip.debug, default=float))
    debug["timings_s"]["queue"] = 0.0 if job is None else job.queued_s
    debug["timings_s"]["encode"] = encode_s
    debug["steps_run"] = (
        sum(len(steps) for steps in clip.debug["timesteps"]) if job is None else job.steps_done
    )
    base = app_path(request, f"/api/clips/{clip_id}")
    return JSONResponse(
        {
            "id": clip_id,
            **encoded,
            "duration_s": clip.duration_s,
            "recipe": clip.recipe.to_dict(),
            "recipe_url": clip.recipe.to_url(),
            "debug": debug,
            "device": str(state.riffuser.pipeline.device),
            "files": {
                "wav": f"{base}/audio.wav",
                "mp3": f"{base}/audio.mp3",
                "png": f"{base}/image.png",
                "recipe": f"{base}/recipe.json",
            },
            **(extra or {}),
        },
        headers={"Server-Timing": server_timing(job, clip, encode_s)},
    )


@router.get(
    "/api/clips/{clip_id}/{name}",
    summary="Download a file of a recent clip",
    response_class=Response,
    responses={
        200: {
            "description": "the file, as an attachment",
            "content": {
                "audio/wav": _BINARY,
                "audio/mpeg": _BINARY,
                "image/png": _BINARY,
                "application/json": {"schema": {"type": "object"}},
            },
        },
        **error_responses(404),
    },
)
async def clip_file(clip_id: str, name: str, state: State) -> Response:
    """A file of a recent clip, as an attachment.

    Takes the clip's ``id`` and a file name: ``audio.wav``, ``audio.mp3``, ``image.png`` or
    ``recipe.json``. Returns its bytes; 404 for an unknown clip (or one dropped) or file name.
    """
    clip = state.recent.get(clip_id)
    if clip is None:
        raise HTTPError(404, f"no recent clip {clip_id[:40]!r}", "clip_id")
    if name == "audio.wav":
        payload = await run_in_threadpool(media.wav_bytes, clip.audio)
    elif name == "audio.mp3":
        payload = await run_in_threadpool(media.mp3_bytes, clip.audio)
    elif name == "image.png":
        payload = await run_in_threadpool(media.image_bytes, clip.image, "PNG")
    elif name == "recipe.json":
        payload = clip.recipe.to_json().encode()
    else:
        raise HTTPError(404, "files are audio.wav, audio.mp3, image.png and recipe.json", "name")
    filename = f"riffusion-{clip_id}.{name.split('.')[-1]}"
    return Response(
        payload,
        media_type=_FILES[name],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _encode(clip: Any) -> dict[str, Any]:
    jpeg = media.data_url("image/jpeg", media.image_bytes(clip.image, "JPEG"))
    return {"image": jpeg, "audio": media.audio_data_url(clip.audio)}


def _riffuse_work(state: ServerState, data: dict[str, Any]) -> Callable[[Job], Any]:
    """The work for prompt inputs (checked here, before anything is queued)."""
    data = dict(data)
    scheduler = data.pop("scheduler", state.default_scheduler)
    if scheduler not in SCHEDULER_NAMES and scheduler != "default":
        raise InputError("scheduler", f"{scheduler!r} must be one of {list(SCHEDULER_NAMES)}")
    single = data.get("end") is None
    if single:
        data["end"] = data.get("start")
        data.setdefault("alpha", 0.0)
    inputs = InferenceInput.from_json(data)
    seed_source = state.assets.seed_source(inputs.seed_image_id)
    mask_id = state.assets.mask_source(inputs.mask_image_id)
    start = PromptInput(**inputs.start.to_dict())
    end = None if single else PromptInput(**inputs.end.to_dict())
    alpha = 0.0 if single else inputs.alpha
    inner = riffuse_job(
        state.riffuser,
        start,
        end,
        alpha,
        inputs.num_inference_steps,
        seed_source,
        mask_id,
        scheduler,
    )

    def work(job: Job) -> Any:
        clip = inner(job)
        # A seed image from the folder or an upload gets a "custom:" identity in the recipe:
        # remember its source so that the recipe can be rendered again here.
        state.assets.remember(clip.recipe.seed_image, seed_source)
        return clip

    return work


def _render_work(state: ServerState, data: dict[str, Any]) -> Callable[[Job], Any]:
    """The work for ``{"recipe": ...}`` (checked here, before anything is queued)."""
    if set(data) != {"recipe"}:
        extra = sorted(set(data) - {"recipe"})[0]
        raise InputError(extra, "unknown field; a recipe request takes only 'recipe'")
    try:
        recipe = Recipe.parse(data["recipe"])
    except ParameterError as error:
        raise InputError("recipe", str(error)) from None
    _check_recipe(state, recipe)
    sources = _recipe_sources(state, recipe)
    riffuser = state.riffuser

    def work(job: Job) -> Any:
        with riffuser.lock, riffuser.on_progress(job.on_progress):
            return riffuser.render(recipe, **sources)

    return work


def _check_recipe(state: ServerState, recipe: Recipe) -> None:
    """Refuse a recipe this server will not render: other model, over its limits."""
    if recipe.kind == "audio_to_audio":
        raise InputError("recipe.kind", "audio_to_audio recipes need their input audio")
    refused = sorted(set(recipe.scheduler_config or {}) - _RECIPE_SCHEDULER_KEYS)
    if refused:
        raise InputError(
            "recipe.scheduler_config",
            f"{refused[0][:64]!r} is not accepted by this server; it takes "
            f"{', '.join(sorted(_RECIPE_SCHEDULER_KEYS))}",
        )
    model = state.riffuser.model
    if recipe.model != model:
        raise InputError("recipe.model", f"{recipe.model!r} is not the served model {model!r}")
    if not 1 <= recipe.num_inference_steps <= MAX_NUM_INFERENCE_STEPS:
        raise InputError("recipe.num_inference_steps", f"must be in [1, {MAX_NUM_INFERENCE_STEPS}]")
    if recipe.duration_s > MAX_RECIPE_DURATION_S:
        raise InputError("recipe.duration_s", f"at most {MAX_RECIPE_DURATION_S:g} s here")
    for name, side in (("start", recipe.start), ("end", recipe.end)):
        for part in (side.prompt, side.negative_prompt or "") if side else ():
            if len(part) > MAX_PROMPT_CHARS:
                raise InputError(f"recipe.{name}.prompt", f"at most {MAX_PROMPT_CHARS} chars")


def _recipe_sources(state: ServerState, recipe: Recipe) -> dict[str, Any]:
    """``seed_image=`` / ``mask_image=`` for a recipe's ``custom:`` identities (ids checked)."""
    assets, sources = state.assets, {}
    for name in ("seed_image", "mask_image"):
        identity = getattr(recipe, name)
        if identity is not None and identity.startswith("custom:"):
            if identity not in assets.custom:
                raise InputError(
                    f"recipe.{name}",
                    f"{identity} is not known to this server; use the same seed image here "
                    "first (upload it again)",
                )
            sources[name] = assets.custom[identity]
        elif name == "seed_image" and identity is not None:
            check_asset_id(identity, "recipe.seed_image", assets.seeds)
        elif identity is not None:
            check_asset_id(identity, "recipe.mask_image", assets.masks)
    return sources
