"""Seed images and masks: ``GET /seed_images``, ``GET /masks``, ``POST /api/seed_image``.

The lists carry a small JPEG thumbnail of each picture; an upload is audio, decoded on the
device worker and offered as seed image ``upload-<digest>`` (the last
:data:`~riffusion.server.assets.MAX_UPLOADS` are kept).
"""

from __future__ import annotations

import hashlib
import io
import logging
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from riffusion.audio import Audio
from riffusion.errors import AudioFileError, RiffusionError
from riffusion.inputs import MAX_UPLOAD_DECODED_BYTES, InputError
from riffusion.server.api_docs import binary_body
from riffusion.server.bodies import read_body
from riffusion.server.device import run_on_device
from riffusion.server.schemas import MaskInfo, SeedImageInfo, UploadedSeedImage, error_responses
from riffusion.server.state import ServerState, State
from riffusion.server.worker import Job

__all__ = ["router"]

logger = logging.getLogger("riffusion.server")

router = APIRouter(tags=["seed images and masks"], responses=error_responses(401, 403))


@router.get("/seed_images", summary="The seed images on offer", response_model=list[SeedImageInfo])
async def list_seed_images(state: State) -> list[dict[str, Any]]:
    """The seed images on offer.

    Returns a list of ``{"id", "description", "bpm", "source", "thumbnail"}``: built-ins,
    the original web app's ids, the seed image folder's PNGs, then uploads. ``thumbnail`` is
    a JPEG data URL, or ``None`` for a picture that could not be read.
    """
    assets = state.assets
    items = [dict(item) for item in assets.seeds.values()]
    items += [
        {"id": key, "description": "uploaded audio", "bpm": None, "source": "upload"}
        for key in list(assets.uploads)
    ]
    for item in items:
        try:
            item["thumbnail"] = await run_in_threadpool(
                assets.thumbnail, "seed", item["id"], state.riffuser
            )
        except (RiffusionError, OSError) as error:  # one bad picture must not hide the list
            logger.warning("no thumbnail for seed image %r: %s", item["id"], error)
            item["thumbnail"] = None
    return items


@router.get("/masks", summary="The masks on offer", response_model=list[MaskInfo])
async def list_masks(state: State) -> list[dict[str, Any]]:
    """The masks on offer: a list of ``{"id", "description", "source", "thumbnail"}``."""
    items = [dict(item) for item in state.assets.masks.values()]
    for item in items:
        item["thumbnail"] = await run_in_threadpool(
            state.assets.thumbnail, "mask", item["id"], None
        )
    return items


@router.post(
    "/api/seed_image",
    summary="Offer uploaded audio as a seed image",
    response_model=UploadedSeedImage,
    responses=error_responses(400, 408, 413, 503),
    openapi_extra=binary_body(
        "application/octet-stream",
        "audio/*",
        description="the audio file's bytes (WAV, FLAC, OGG, MP3, ...; at least 0.5 s)",
    ),
)
async def upload_seed_image(request: Request, state: State) -> dict[str, Any]:
    """Offer uploaded audio as a seed image.

    Takes the audio file's bytes as the body (any format the library decodes, at least
    0.5 s). Returns ``{"id", "description", "duration_s", "thumbnail"}``; the same audio
    gets the same id.
    """
    body = await read_body(request, state.max_upload_bytes)
    if not body:
        raise InputError("body", "send the audio file's bytes as the request body")
    digest = hashlib.sha256(body).hexdigest()[:16]

    def work(job: Job) -> dict[str, Any]:
        # On the device worker, like a generation: decoding is bounded work, but work, and
        # parallel uploads must queue (and get 503) like everything else.
        return _decode_upload(state, body, digest)

    answer, _ = await run_on_device(request, state.worker, work)
    return answer


def _decode_upload(state: ServerState, body: bytes, digest: str) -> dict[str, Any]:
    try:
        audio = Audio.load(io.BytesIO(body), max_bytes=MAX_UPLOAD_DECODED_BYTES)
    except AudioFileError as error:
        raise InputError("body", str(error)) from None
    if audio.duration_s < 0.5:
        raise InputError("body", f"the audio lasts {audio.duration_s:.2f} s; at least 0.5 s")
    upload_id = f"upload-{digest}"
    # Everything that can fail is done before the upload is registered: a failed upload
    # leaves nothing behind.
    thumbnail = state.assets.upload_thumbnail(upload_id, audio, state.riffuser)
    state.assets.add_upload(upload_id, audio)
    return {
        "id": upload_id,
        "description": "uploaded audio",
        "duration_s": audio.duration_s,
        "thumbnail": thumbnail,
    }
