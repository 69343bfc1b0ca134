"""The JSON the server takes and gives, as pydantic models: what ``/api/openapi.json`` says.

Request bodies are read by hand (:mod:`riffusion.server.bodies`: the size limit and the
deadline first, then checks whose 400 names the field at fault), so the ``*Body`` models only
document them (:data:`BODY_MODELS`, placed in the schema by :mod:`riffusion.server.api_docs`);
``tests/test_server_openapi.py`` checks that they accept what the routes accept. The answer
models are the routes' ``response_model``; :func:`error_responses` documents the error body
``{"error": message, "field": name}`` of each status a route may answer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from riffusion.defaults import SCHEDULER_NAMES
from riffusion.inputs import ASSET_ID_PATTERN, MAX_NUM_INFERENCE_STEPS, MAX_PROMPT_CHARS, MAX_SEED
from riffusion.server.streams import (
    MAX_STEPS_PER_TRANSITION,
    MAX_STREAM_BUFFER,
    MAX_STREAM_PROMPTS,
)

__all__ = [
    "BODY_MODELS",
    "SCHEDULERS",
    "ClipAnswer",
    "ClipFiles",
    "ClipPromptBody",
    "ClipRecipeBody",
    "ErrorBody",
    "HealthAnswer",
    "HealthLimits",
    "InferenceAnswer",
    "MaskInfo",
    "PromptBody",
    "RandomPromptAnswer",
    "RunInferenceBody",
    "SeedImageInfo",
    "StreamClipAnswer",
    "StreamClosed",
    "StreamCreateBody",
    "StreamCreated",
    "StreamPosition",
    "StreamRetargeted",
    "StreamTargetBody",
    "UploadedSeedImage",
    "error_responses",
]

SCHEDULERS: list[str] = ["default", *sorted(set(SCHEDULER_NAMES) - {"default"})]
"""The ``scheduler`` names a request may give (``"default"``: the checkpoint's own)."""

_ID = ASSET_ID_PATTERN.pattern
_SEED_IMAGE = "id of a seed image of GET /seed_images (uploads included)"
_MASK = 'id of a mask of GET /masks; null or "" for none'
_SCHEDULER = (
    "the scheduler to sample with; by default the one the server was started with "
    "(GET /health: scheduler)"
)


def _optional(description: str, *, enum: list[str] | None = None, **constraints: Any) -> Any:
    """A field that may be left out, with no default in the schema (the server picks one)."""

    def extra(schema: dict[str, Any]) -> None:
        schema.pop("default", None)
        if enum is not None:
            schema["enum"] = enum

    return Field(None, description=description, json_schema_extra=extra, **constraints)


# --------------------------------------------------------------------------- request bodies
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromptBody(_Body):
    """One end point of a clip: a text prompt, its noise seed and how strongly to follow it."""

    prompt: str = Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="the text prompt",
        examples=["funky bass groove"],
    )
    seed: int = Field(ge=0, lt=MAX_SEED, description="seed of the starting noise", examples=[42])
    denoising: float = Field(
        0.75, ge=0, le=1, description="img2img strength: 0 keeps the seed image, 1 replaces it"
    )
    guidance: float = Field(7.0, ge=0, le=100, description="classifier-free guidance scale")
    negative_prompt: str | None = Field(
        None, max_length=MAX_PROMPT_CHARS, description="what to steer away from"
    )


class RunInferenceBody(_Body):
    """The original Riffusion web app's request: a clip between two prompts."""

    alpha: float = Field(ge=0, le=1, description="interpolation weight: 0 is start, 1 is end")
    start: PromptBody
    end: PromptBody
    num_inference_steps: int = Field(
        50, ge=1, le=MAX_NUM_INFERENCE_STEPS, description="scheduler steps"
    )
    seed_image_id: str = Field("og_beat", pattern=_ID, description=_SEED_IMAGE)
    mask_image_id: str | None = Field(None, description=_MASK)


class ClipPromptBody(_Body):
    """A clip from prompt inputs: ``start`` alone, or between ``start`` and ``end``."""

    start: PromptBody
    end: PromptBody | None = Field(None, description="the prompt at alpha = 1; null: start alone")
    alpha: float = Field(
        0.0, ge=0, le=1, description="interpolation weight; required when end is given"
    )
    num_inference_steps: int = Field(
        50, ge=1, le=MAX_NUM_INFERENCE_STEPS, description="scheduler steps"
    )
    seed_image_id: str = Field("og_beat", pattern=_ID, description=_SEED_IMAGE)
    mask_image_id: str | None = Field(None, description=_MASK)
    scheduler: str = _optional(_SCHEDULER, enum=SCHEDULERS)


class ClipRecipeBody(_Body):
    """A clip made again, exactly, from its recipe (a clip's ``recipe`` or ``recipe_url``)."""

    recipe: str | dict[str, Any] = Field(
        description="a share string (recipe_url), the recipe as JSON text, or the recipe object; "
        "at most 30 s long, for the model this server serves"
    )


class StreamCreateBody(_Body):
    """A live stream: endless playback that morphs from prompt to prompt."""

    prompts: list[PromptBody | str] = Field(
        min_length=1,
        max_length=MAX_STREAM_PROMPTS,
        description="the prompts to visit in turn: objects, or strings (seeded 0, 1, ...)",
    )
    steps_per_transition: int = Field(
        4, ge=1, le=MAX_STEPS_PER_TRANSITION, description="clips from one prompt to the next"
    )
    num_inference_steps: int = Field(
        50, ge=1, le=MAX_NUM_INFERENCE_STEPS, description="scheduler steps per clip"
    )
    buffer_ahead: int = Field(2, ge=0, le=MAX_STREAM_BUFFER, description="clips made ahead")
    seed_image_id: str = Field("og_beat", pattern=_ID, description=_SEED_IMAGE)
    mask_image_id: str | None = Field(None, description=_MASK)
    scheduler: str = _optional(_SCHEDULER, enum=SCHEDULERS)


class StreamTargetBody(_Body):
    """What a stream plays next: any of these fields, at least one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    prompt: PromptBody | str = _optional(
        "the next prompt: an object, or a string (this text with the next seed)"
    )
    seed_image_id: str = _optional(_SEED_IMAGE, pattern=_ID)
    mask_image_id: str | None = _optional(_MASK)
    denoising: float | None = _optional(
        "img2img strength of every next clip; null: the prompts' own", ge=0, le=1
    )
    guidance: float | None = _optional(
        "guidance scale of every next clip; null: the prompts' own", ge=0, le=100
    )


BODY_MODELS: tuple[type[BaseModel], ...] = (
    PromptBody,
    RunInferenceBody,
    ClipPromptBody,
    ClipRecipeBody,
    StreamCreateBody,
    StreamTargetBody,
)
"""The request body models, placed in the schema's ``components`` by name."""


# ---------------------------------------------------------------------------------- answers
_IMAGE = "the spectrogram image, a data:image/jpeg;base64 URL"
_AUDIO = "the clip: a data:audio/mpeg;base64 URL (data:audio/wav where the server lacks MP3)"
_DURATION = "length of the audio (in seconds)"


class InferenceAnswer(BaseModel):
    """The original web app's answer."""

    image: str = Field(description=_IMAGE)
    audio: str = Field(description=_AUDIO)
    duration_s: float = Field(description=_DURATION)


class ClipFiles(BaseModel):
    """Download links of a clip, under the app's mount point; kept for the 32 latest clips."""

    wav: str = Field(description="16-bit WAV (GET)")
    mp3: str = Field(description="MP3 (GET)")
    png: str = Field(description="lossless spectrogram PNG with its parameters in EXIF (GET)")
    recipe: str = Field(description="the recipe as JSON (GET)")


class ClipAnswer(InferenceAnswer):
    """A clip: its image and audio, the recipe that makes it again, timings and links."""

    id: str = Field(description="the clip's id in its files' links")
    recipe: dict[str, Any] = Field(description="the recipe (POST it back as {recipe: ...})")
    recipe_url: str = Field(description="the recipe as a share string")
    debug: dict[str, Any] = Field(
        description="timings_s (per stage, in seconds; queue and encode included), steps_run, "
        "timesteps, strengths and the other values the library reports"
    )
    device: str = Field(description="the device that made it (cpu, cuda:0, ...)")
    files: ClipFiles


class StreamPosition(BaseModel):
    """Where a clip stands in its stream."""

    id: str = Field(description="the stream's id")
    index: int = Field(description="the clip's index in the stream, from 0")
    buffered: int = Field(description="clips still made ahead")


class StreamClipAnswer(ClipAnswer):
    """A stream's next clip."""

    stream: StreamPosition


class StreamCreated(BaseModel):
    """A new stream and its links (under the app's mount point)."""

    id: str
    buffer_ahead: int = Field(description="clips made ahead")
    idle_timeout_s: float = Field(description="seconds without a request before it is closed")
    next: str = Field(description="GET: the next clip")
    target: str = Field(description="POST: change what plays next")
    stream: str = Field(description="DELETE: close the stream")


class StreamRetargeted(BaseModel):
    """The answer to a change of target."""

    id: str
    dropped: int = Field(description="clips made ahead that were dropped")


class StreamClosed(BaseModel):
    """The answer to closing a stream."""

    id: str
    closed: Literal[True]


class SeedImageInfo(BaseModel):
    """A seed image on offer."""

    id: str
    description: str
    bpm: float | None = Field(description="tempo in beats per minute, where known")
    source: str = Field(description="built-in, riffusion-alias, seed-image-dir or upload")
    thumbnail: str | None = Field(description="a small JPEG data URL; null if unreadable")


class MaskInfo(BaseModel):
    """A mask on offer."""

    id: str
    description: str
    source: str = Field(description="built-in or riffusion-alias")
    thumbnail: str = Field(description="a small JPEG data URL")


class UploadedSeedImage(BaseModel):
    """Uploaded audio, now a seed image (the same audio gets the same id)."""

    id: str = Field(description="use it as seed_image_id")
    description: str
    duration_s: float = Field(description="length of the uploaded audio (in seconds)")
    thumbnail: str = Field(description="a small JPEG data URL")


class HealthLimits(BaseModel):
    """The limits requests are checked against."""

    max_num_inference_steps: int
    max_prompt_chars: int
    max_body_bytes: int
    max_upload_bytes: int


class HealthAnswer(BaseModel):
    """The server's model, device, queue and limits."""

    status: Literal["ok"]
    version: str
    model: str
    device: str
    dtype: str
    scheduler: str = Field(description="the scheduler requests use by default")
    schedulers: list[str] = Field(description="the names a request's scheduler may take")
    queue_depth: int
    max_queue: int
    seconds_per_clip: float = Field(description="recent average (in seconds)")
    audio_format: Literal["mp3", "wav"]
    limits: HealthLimits


class RandomPromptAnswer(BaseModel):
    """A random prompt."""

    prompt: str


class ErrorBody(BaseModel):
    """Every error of the server."""

    error: str = Field(description="what was wrong and what is expected")
    field: str | None = Field(description="the request part at fault (start.seed, Host, ...)")


_ERRORS = {
    400: "A bad value; field names it.",
    401: "The API key is missing or wrong (servers started with an API key).",
    403: "A foreign Host or Origin.",
    404: "Unknown or gone; field names what.",
    408: "The body did not arrive in time.",
    409: "Another request for this stream's next clip is waiting.",
    413: "The body is over the server's limit (GET /health: limits).",
    500: "The generation failed.",
    503: "The device queue is full: try again after Retry-After seconds.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` documenting the JSON error body for each of ``statuses``.

    Args:
        statuses: HTTP status codes, each one of 400, 401, 403, 404, 408, 409, 413, 500, 503.
    """
    return {status: {"model": ErrorBody, "description": _ERRORS[status]} for status in statuses}
