"""The original Riffusion web app's call: ``POST /run_inference/``.

Request and response are :class:`~riffusion.inputs.InferenceInput` and
:class:`~riffusion.inputs.InferenceOutput`, field for field as the web app sends and reads
them; the generation uses the scheduler the model was loaded with.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from riffusion.inputs import InferenceInput, InferenceOutput, PromptInput
from riffusion.server import media
from riffusion.server.api_docs import json_body
from riffusion.server.bodies import read_json
from riffusion.server.device import riffuse_job, run_on_device, server_timing
from riffusion.server.schemas import InferenceAnswer, RunInferenceBody, error_responses
from riffusion.server.state import State

__all__ = ["router"]

router = APIRouter(tags=["web app"], responses=error_responses(401, 403))


@router.post(
    "/run_inference/",
    summary="Generate one clip for the original web app",
    response_model=InferenceAnswer,
    responses=error_responses(400, 408, 413, 500, 503),
    openapi_extra=json_body(RunInferenceBody, description="the web app's request"),
)
async def run_inference(request: Request, state: State) -> Response:
    """Generate one clip for the web app.

    Takes an ``InferenceInput`` JSON body; returns an
    ``InferenceOutput`` (JPEG and audio data URLs, duration) with a
    ``Server-Timing`` header.
    """
    inputs = InferenceInput.from_json(await read_json(request, state.max_body_bytes))
    seed_source = state.assets.seed_source(inputs.seed_image_id)
    mask_id = state.assets.mask_source(inputs.mask_image_id)
    work = riffuse_job(
        state.riffuser,
        PromptInput(**inputs.start.to_dict()),
        PromptInput(**inputs.end.to_dict()),
        inputs.alpha,
        inputs.num_inference_steps,
        seed_source,
        mask_id,
        state.default_scheduler,
    )
    clip, job = await run_on_device(request, state.worker, work)
    encode_started = time.perf_counter()
    answer = await run_in_threadpool(_encode, clip)
    encode_s = time.perf_counter() - encode_started
    return JSONResponse(answer, headers={"Server-Timing": server_timing(job, clip, encode_s)})


def _encode(clip: Any) -> dict[str, Any]:
    return InferenceOutput(
        image=media.data_url("image/jpeg", media.image_bytes(clip.image, "JPEG")),
        audio=media.audio_data_url(clip.audio),
        duration_s=clip.duration_s,
    ).to_dict()
