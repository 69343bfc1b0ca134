"""The playground and what it asks for first: ``GET /``, ``GET /health``,
``GET /random_prompt``; its static files are mounted at ``/static`` from :data:`STATIC_DIR`.

The page asks for everything by relative URL (``static/playground.js``, ``api/clip``), so it
works wherever the app is mounted, as long as its own address ends with ``/``: ``/riff`` is
redirected to ``/riff/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from riffusion import __version__
from riffusion.defaults import SCHEDULER_NAMES
from riffusion.inputs import MAX_NUM_INFERENCE_STEPS, MAX_PROMPT_CHARS
from riffusion.prompts import random_prompt as pick_prompt
from riffusion.server import media
from riffusion.server.schemas import HealthAnswer, RandomPromptAnswer
from riffusion.server.state import State

__all__ = ["STATIC_DIR", "router"]

STATIC_DIR = Path(__file__).parent / "static"
"""The playground's HTML, CSS and JavaScript."""

router = APIRouter()


@router.get("/", include_in_schema=False)
async def playground(request: Request) -> Response:
    """The playground page, at an address ending with ``/`` (its URLs are relative)."""
    path = request.url.path
    if not path.endswith("/"):
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"{path}/{query}", status_code=307)
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.get("/health", summary="The server's state and limits", response_model=HealthAnswer)
async def health(state: State) -> dict[str, Any]:
    """The server's model, device, queue and limits.

    Returns ``status``, ``version``, ``model``, ``device``, ``dtype``, ``scheduler`` (the
    current one), ``schedulers`` (the names ``/api/clip`` takes), ``queue_depth``,
    ``max_queue``, ``seconds_per_clip`` (recent average), ``audio_format`` (``mp3`` or
    ``wav``) and ``limits``.
    """
    riffuser, worker = state.riffuser, state.worker
    return {
        "status": "ok",
        "version": __version__,
        "model": riffuser.model,
        "device": str(riffuser.pipeline.device),
        "dtype": str(riffuser.pipeline.dtype).removeprefix("torch."),
        "scheduler": riffuser.scheduler_name,
        "schedulers": ["default", *sorted(set(SCHEDULER_NAMES) - {"default"})],
        "queue_depth": worker.depth,
        "max_queue": worker.max_queue,
        "seconds_per_clip": round(worker.seconds_per_job, 3),
        "audio_format": "mp3" if media.mp3_available() else "wav",
        "limits": {
            "max_num_inference_steps": MAX_NUM_INFERENCE_STEPS,
            "max_prompt_chars": MAX_PROMPT_CHARS,
            "max_body_bytes": state.max_body_bytes,
            "max_upload_bytes": state.max_upload_bytes,
        },
    }


@router.get("/random_prompt", summary="A random prompt", response_model=RandomPromptAnswer)
async def random_prompt(seed: int | None = None) -> dict[str, str]:
    """A random prompt of the library's list: ``{"prompt": text}`` (reproducible by ``seed``)."""
    return {"prompt": pick_prompt(seed)}
