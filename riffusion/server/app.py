"""The ASGI application: the web app's ``POST /run_inference/``, a richer JSON API and the
playground at ``/``.

Endpoints:
    ``GET /``: the playground (static HTML/CSS/JS shipped in this package).
    ``POST /run_inference/``: the original web app's call (see :mod:`riffusion.inputs`).
    ``POST /api/clip``: prompt inputs (or a recipe) in; clip out with image, audio, recipe,
        per-stage timings and links to its WAV / MP3 / PNG files.
    ``GET /api/clips/{id}/{audio.wav|audio.mp3|image.png|recipe.json}``: files of recent clips.
    ``POST /api/seed_image``: upload audio (the raw file as the body), get a seed image id.
    ``GET /health``, ``GET /seed_images``, ``GET /masks``, ``GET /random_prompt``.

Every generation goes through one :class:`~riffusion.server.worker.DeviceWorker` (one at a
time, bounded queue: full → 503 with ``Retry-After``); a request whose client disconnects is
dropped from the queue or stopped at the next denoising step. Bad input gets a 4xx JSON body
``{"error": message, "field": name}``. Nothing a request sends is used as a path.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import io
import json
import logging
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from riffusion.errors import GenerationCancelled, ParameterError, RiffusionError, install_hint
from riffusion.inputs import (
    ASSET_ID_PATTERN,
    MAX_BODY_BYTES,
    MAX_NUM_INFERENCE_STEPS,
    MAX_PROMPT_CHARS,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_DECODED_BYTES,
    InferenceInput,
    InferenceOutput,
    InputError,
    check_asset_id,
)

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool
except ImportError as error:  # pragma: no cover - depends on the environment
    raise RiffusionError(
        f"riffusion serve needs the 'server' extra: {install_hint('server')} ({error})"
    ) from error

from riffusion.server import media
from riffusion.server.connections import BODY_TIMEOUT_S
from riffusion.server.security import AccessGuard, check_api_key, check_origin
from riffusion.server.worker import DeviceWorker, Job, QueueFull

__all__ = ["MAX_RECENT_CLIPS", "MAX_RECIPE_DURATION_S", "create_app"]

logger = logging.getLogger("riffusion.server")

STATIC_DIR = Path(__file__).parent / "static"
MAX_RECENT_CLIPS = 32
"""Clips kept in memory for ``/api/clips/{id}/...`` downloads (oldest dropped first)."""
MAX_RECIPE_DURATION_S = 30.0
"""Longest clip a recipe sent to ``/api/clip`` may ask for (in seconds)."""
MAX_UPLOADS = 16
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
_DISCONNECT_POLL_S = 0.05
_CLIENT_CLOSED = 499  # nginx's "client closed request"; nobody reads it, logs do


class _HTTPError(Exception):
    def __init__(
        self, status: int, message: str, field: str | None = None, headers: dict | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers


def _strings(argument: str, values: Any) -> list[str]:
    if isinstance(values, str) or not all(isinstance(value, str) for value in values):
        raise ParameterError(f"{argument}={values!r} must be a list of strings")
    return list(values)


def _error_response(
    status: int, message: str, field: str | None = None, headers: dict | None = None
) -> JSONResponse:
    # A message may quote what the client sent, lone surrogates included: escape what UTF-8
    # cannot encode, so that answering the error can not fail in turn.
    body = {
        "error": message.encode("utf-8", "backslashreplace").decode("utf-8"),
        "field": None if field is None else field.encode("utf-8", "backslashreplace").decode(),
    }
    return JSONResponse(body, status_code=status, headers=headers)


# ----------------------------------------------------------------------------------- assets
class _Assets:
    """Seed images and masks by id: built-ins, PNGs of ``seed_image_dir``, uploaded audio."""

    def __init__(self, seed_image_dir: str | os.PathLike[str] | None) -> None:
        from riffusion.seeds import RIFFUSION_ALIASES, mask_images, seed_images

        self.seeds: dict[str, dict[str, Any]] = {
            s.name: {"id": s.name, "description": s.description, "bpm": s.bpm, "source": "built-in"}
            for s in seed_images()
        }
        masks = {m.name: m for m in mask_images()}
        # The original web app's ids (og_beat, mask_top_third_75, ...) are served by the
        # library's alias table; a PNG of the same name in seed_image_dir overrides them below.
        alias_masks: dict[str, dict[str, Any]] = {}
        for alias, target in RIFFUSION_ALIASES.items():
            if target in self.seeds:
                self.seeds[alias] = {
                    **self.seeds[target],
                    "id": alias,
                    "description": f"Riffusion's id, served by our {target}: "
                    + self.seeds[target]["description"],
                    "source": "riffusion-alias",
                }
            elif target in masks:
                alias_masks[alias] = {
                    "id": alias,
                    "description": f"Riffusion's id, served by our {target}: "
                    + masks[target].description,
                    "source": "riffusion-alias",
                }
        self._files: dict[str, Path] = {}
        if seed_image_dir is not None:
            folder = Path(seed_image_dir)
            if not folder.is_dir():
                raise ParameterError(f"seed_image_dir={str(folder)!r} is not a folder")
            for path in sorted(folder.glob("*.png")):
                if not ASSET_ID_PATTERN.fullmatch(path.stem):
                    logger.warning("skipping seed image %s: its name is not a valid id", path)
                    continue
                self._files[path.stem] = path.resolve()
                self.seeds[path.stem] = {
                    "id": path.stem,
                    "description": f"{path.name} from the seed image folder",
                    "bpm": None,
                    "source": "seed-image-dir",
                }
        self.masks = {
            m.name: {"id": m.name, "description": m.description, "source": "built-in"}
            for m in masks.values()
        }
        self.masks.update(alias_masks)
        self.uploads: collections.OrderedDict[str, Any] = collections.OrderedDict()
        # Recipe identity ("custom:<fingerprint>") -> the picture or audio it came from, so a
        # recipe made from a folder image or an upload can be rendered again.
        self.custom: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._thumbnails: dict[tuple[str, str], str] = {}

    def seed_ids(self) -> list[str]:
        return [*self.seeds, *self.uploads]

    def seed_source(self, seed_id: Any, field: str = "seed_image_id") -> Any:
        """What to pass as ``seed_image=`` for an id (checked; never a path from the request)."""
        check_asset_id(seed_id, field, self.seed_ids())
        upload = self.uploads.get(seed_id)  # .get: an upload may be dropped meanwhile
        if upload is not None:
            return upload
        if seed_id.startswith("upload-"):
            raise InputError(field, f"{seed_id!r} was dropped (only the last uploads are kept)")
        if seed_id in self._files:
            from riffusion.image import load_image

            return load_image(self._files[seed_id]).convert("RGB")
        return seed_id

    def mask_source(self, mask_id: Any, field: str = "mask_image_id") -> Any:
        if mask_id is None or mask_id == "":
            return None
        return check_asset_id(mask_id, field, self.masks)

    def remember(self, identity: str | None, source: Any) -> None:
        if identity is not None and identity.startswith("custom:"):
            self.custom[identity] = source
            self.custom.move_to_end(identity)
            while len(self.custom) > 4 * MAX_UPLOADS:
                self.custom.popitem(last=False)

    def add_upload(self, upload_id: str, audio: Any) -> None:
        self.uploads[upload_id] = audio
        self.uploads.move_to_end(upload_id)
        while len(self.uploads) > MAX_UPLOADS:
            dropped, _ = self.uploads.popitem(last=False)
            self._thumbnails.pop(("seed", dropped), None)

    def upload_thumbnail(self, upload_id: str, audio: Any, riffuser: Any) -> str:
        """The thumbnail of an upload not yet registered (cached for when it is)."""
        from riffusion.convert import audio_to_image

        image = audio_to_image(audio, riffuser.params)
        thumbnail = self._small(image)
        self._thumbnails[("seed", upload_id)] = thumbnail
        return thumbnail

    @staticmethod
    def _small(image: Any) -> str:
        small = image.convert("RGB").resize((128, 128))
        return media.data_url("image/jpeg", media.image_bytes(small, "JPEG"))

    def thumbnail(self, kind: str, asset_id: str, riffuser: Any) -> str:
        key = (kind, asset_id)
        if key not in self._thumbnails:
            if kind == "mask":
                from riffusion.seeds import load_mask_image

                image = load_mask_image(asset_id)
            else:
                source = self.seed_source(asset_id)
                if isinstance(source, str):
                    from riffusion.seeds import load_seed_image

                    image = load_seed_image(source)
                elif hasattr(source, "waveform"):
                    from riffusion.convert import audio_to_image

                    image = audio_to_image(source, riffuser.params)
                else:
                    image = source
            self._thumbnails[key] = self._small(image)
        return self._thumbnails[key]


# ------------------------------------------------------------------------------------ app
def create_app(
    riffuser: Any,
    *,
    seed_image_dir: str | os.PathLike[str] | None = None,
    max_queue: int = 8,
    cors_origins: Sequence[str] = (),
    allowed_hosts: Sequence[str] = (),
    api_key: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
) -> FastAPI:
    """Build the ASGI application around a loaded :class:`~riffusion.Riffuser`.

    Args:
        riffuser: the model to serve; only this app's worker thread generates with it.
        seed_image_dir: folder whose ``*.png`` files are served as seed images by file stem
            (``og_beat.png`` → id ``og_beat``, overriding the built-in of that name).
        max_queue: most requests waiting for the device (the running one not counted);
            beyond it, 503 with ``Retry-After``.
        cors_origins: origins (``"http://localhost:3000"``) whose pages may call the API from
            a browser; any other ``Origin`` but the server's own is refused (403).
        allowed_hosts: host names accepted in ``Host`` besides loopback names and IP
            addresses (DNS-rebinding protection: others get 403).
        api_key: when set, every request but static assets needs it (``Authorization: Bearer
            KEY``, or the cookie ``/?token=KEY`` sets); at least 8 characters.
        max_body_bytes: largest JSON body (413 beyond).
        max_upload_bytes: largest uploaded audio file (413 beyond).

    Returns:
        A FastAPI application; ``app.state.worker`` is its device worker.
    """
    from riffusion import Recipe, Riffuser, __version__
    from riffusion.diffusion import SCHEDULER_NAMES
    from riffusion.inputs import PromptInput

    if not isinstance(riffuser, Riffuser):
        raise ParameterError(f"riffuser must be a riffusion.Riffuser, got {type(riffuser)}")
    origins = [
        check_origin("cors_origins", origin) for origin in _strings("cors_origins", cors_origins)
    ]
    hosts = _strings("allowed_hosts", allowed_hosts)
    check_api_key("api_key", api_key)
    assets = _Assets(seed_image_dir)  # checks the folder before the worker thread starts
    worker = DeviceWorker(max_queue)
    default_scheduler = riffuser.scheduler_name
    recent: collections.OrderedDict[str, Any] = collections.OrderedDict()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await run_in_threadpool(worker.close)

    app = FastAPI(
        title="riffusion",
        version=__version__,
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.worker = worker
    app.state.riffuser = riffuser
    app.state.assets = assets
    if origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Authorization"],
        )
    # Outermost: foreign hosts and origins are refused before anything else runs.
    app.add_middleware(
        AccessGuard,
        allowed_hosts=hosts,
        allowed_origins=origins,
        api_key=api_key,
    )

    @app.exception_handler(_HTTPError)
    async def _http_error(request: Request, error: _HTTPError) -> JSONResponse:
        return _error_response(error.status, error.message, error.field, error.headers)

    @app.exception_handler(InputError)
    async def _input_error(request: Request, error: InputError) -> JSONResponse:
        return _error_response(400, error.message, error.field)

    @app.exception_handler(RiffusionError)
    async def _riffusion_error(request: Request, error: RiffusionError) -> JSONResponse:
        if isinstance(error, ValueError):
            return _error_response(400, str(error))
        logger.exception("generation failed", exc_info=error)
        return _error_response(500, f"{type(error).__name__}: {error}")

    # -------------------------------------------------------------------------- helpers
    async def read_body(request: Request, limit: int) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            shown = length[:20]
            raise _HTTPError(413, f"the body is {shown} bytes; at most {limit} are accepted")
        chunks, size = [], 0
        deadline = time.monotonic() + BODY_TIMEOUT_S
        stream = request.stream().__aiter__()
        while True:
            remaining = deadline - time.monotonic()
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), timeout=max(remaining, 0.0))
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise _HTTPError(
                    408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s"
                ) from None
            size += len(chunk)
            if size > limit:
                raise _HTTPError(413, f"the body is over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def read_json(request: Request) -> Any:
        body = await read_body(request, max_body_bytes)
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as error:
            raise _HTTPError(400, f"the body is not valid JSON: {error}") from None

    async def run_on_device(request: Request, work: Any) -> tuple[Any, Job]:
        try:
            job = worker.submit(work)
        except QueueFull as error:
            raise _HTTPError(
                503, str(error), headers={"Retry-After": str(error.retry_after_s)}
            ) from None
        waiting = asyncio.wrap_future(job.future)
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=_DISCONNECT_POLL_S)
            if done:
                break
            if await request.is_disconnected():
                worker.cancel(job)
                with contextlib.suppress(BaseException):
                    await waiting
                raise _HTTPError(_CLIENT_CLOSED, "the client disconnected; generation cancelled")
        try:
            return waiting.result(), job
        except GenerationCancelled as error:
            raise _HTTPError(_CLIENT_CLOSED, str(error)) from None

    def generate(
        start: Any, end: Any, alpha: float, steps: int, seed_source: Any, mask_id: Any, scheduler
    ):
        def work(job: Job) -> Any:
            with riffuser.lock:
                if riffuser.scheduler_name != scheduler:
                    riffuser.set_scheduler(scheduler)
                with riffuser.on_progress(job.on_progress):
                    return riffuser.riffuse(
                        start,
                        end,
                        alpha,
                        num_inference_steps=steps,
                        seed_image=seed_source,
                        mask_image=mask_id,
                    )

        return work

    def timing_header(job: Job, clip: Any, encode_s: float) -> str:
        generation = clip.debug["timings_s"]["total"]
        return (
            f"queue;dur={job.queued_s * 1000:.1f}, generate;dur={generation * 1000:.1f}, "
            f"encode;dur={encode_s * 1000:.1f}"
        )

    # ------------------------------------------------------------------------ endpoints
    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/health")
    async def health() -> dict[str, Any]:
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
                "max_body_bytes": max_body_bytes,
                "max_upload_bytes": max_upload_bytes,
            },
        }

    @app.get("/seed_images")
    async def list_seed_images() -> list[dict[str, Any]]:
        items = [dict(item) for item in assets.seeds.values()]
        items += [
            {"id": key, "description": "uploaded audio", "bpm": None, "source": "upload"}
            for key in list(assets.uploads)
        ]
        for item in items:
            try:
                item["thumbnail"] = await run_in_threadpool(
                    assets.thumbnail, "seed", item["id"], riffuser
                )
            except (RiffusionError, OSError) as error:  # one bad picture must not hide the list
                logger.warning("no thumbnail for seed image %r: %s", item["id"], error)
                item["thumbnail"] = None
        return items

    @app.get("/masks")
    async def list_masks() -> list[dict[str, Any]]:
        items = [dict(item) for item in assets.masks.values()]
        for item in items:
            item["thumbnail"] = await run_in_threadpool(assets.thumbnail, "mask", item["id"], None)
        return items

    @app.get("/random_prompt")
    async def random_prompt(seed: int | None = None) -> dict[str, str]:
        from riffusion.prompts import random_prompt as pick

        return {"prompt": pick(seed)}

    @app.post("/run_inference/")
    async def run_inference(request: Request) -> Response:
        inputs = InferenceInput.from_json(await read_json(request))
        seed_source = assets.seed_source(inputs.seed_image_id)
        mask_id = assets.mask_source(inputs.mask_image_id)
        start = PromptInput(**inputs.start.to_dict())
        end = PromptInput(**inputs.end.to_dict())
        work = generate(
            start,
            end,
            inputs.alpha,
            inputs.num_inference_steps,
            seed_source,
            mask_id,
            default_scheduler,
        )
        clip, job = await run_on_device(request, work)
        encode_started = time.perf_counter()

        def encode() -> dict[str, Any]:
            return InferenceOutput(
                image=media.data_url("image/jpeg", media.image_bytes(clip.image, "JPEG")),
                audio=media.audio_data_url(clip.audio),
                duration_s=clip.duration_s,
            ).to_dict()

        answer = await run_in_threadpool(encode)
        encode_s = time.perf_counter() - encode_started
        return JSONResponse(answer, headers={"Server-Timing": timing_header(job, clip, encode_s)})

    @app.post("/api/clip")
    async def api_clip(request: Request) -> Response:
        data = await read_json(request)
        if not isinstance(data, dict):
            raise InputError(None, f"body must be a JSON object, got {type(data).__name__}")
        work = render_work(data) if "recipe" in data else riffuse_work(data)
        clip, job = await run_on_device(request, work)
        encode_started = time.perf_counter()
        clip_id = secrets.token_hex(8)

        def encode() -> dict[str, Any]:
            jpeg = media.data_url("image/jpeg", media.image_bytes(clip.image, "JPEG"))
            return {"image": jpeg, "audio": media.audio_data_url(clip.audio)}

        encoded = await run_in_threadpool(encode)
        encode_s = time.perf_counter() - encode_started
        recent[clip_id] = clip
        while len(recent) > MAX_RECENT_CLIPS:
            recent.popitem(last=False)
        debug = json.loads(json.dumps(clip.debug, default=float))
        debug["timings_s"]["queue"] = job.queued_s
        debug["timings_s"]["encode"] = encode_s
        debug["steps_run"] = job.steps_done
        base = f"/api/clips/{clip_id}"
        return JSONResponse(
            {
                "id": clip_id,
                **encoded,
                "duration_s": clip.duration_s,
                "recipe": clip.recipe.to_dict(),
                "recipe_url": clip.recipe.to_url(),
                "debug": debug,
                "device": str(riffuser.pipeline.device),
                "files": {
                    "wav": f"{base}/audio.wav",
                    "mp3": f"{base}/audio.mp3",
                    "png": f"{base}/image.png",
                    "recipe": f"{base}/recipe.json",
                },
            },
            headers={"Server-Timing": timing_header(job, clip, encode_s)},
        )

    def riffuse_work(data: dict[str, Any]) -> Any:
        data = dict(data)
        scheduler = data.pop("scheduler", default_scheduler)
        if scheduler not in SCHEDULER_NAMES and scheduler != "default":
            raise InputError("scheduler", f"{scheduler!r} must be one of {list(SCHEDULER_NAMES)}")
        single = data.get("end") is None
        if single:
            data["end"] = data.get("start")
            data.setdefault("alpha", 0.0)
        inputs = InferenceInput.from_json(data)
        seed_source = assets.seed_source(inputs.seed_image_id)
        mask_id = assets.mask_source(inputs.mask_image_id)
        start = PromptInput(**inputs.start.to_dict())
        end = None if single else PromptInput(**inputs.end.to_dict())
        alpha = 0.0 if single else inputs.alpha
        inner = generate(
            start, end, alpha, inputs.num_inference_steps, seed_source, mask_id, scheduler
        )

        def work(job: Job) -> Any:
            clip = inner(job)
            assets.remember(clip.recipe.seed_image, seed_source)
            return clip

        return work

    def render_work(data: dict[str, Any]) -> Any:
        if set(data) != {"recipe"}:
            extra = sorted(set(data) - {"recipe"})[0]
            raise InputError(extra, "unknown field; a recipe request takes only 'recipe'")
        given = data["recipe"]
        try:
            if isinstance(given, str):
                text = given.strip()
                recipe = Recipe.from_url(text) if text.startswith("riffusion:") else None
                if recipe is None:
                    recipe = Recipe.from_json(text)
            else:
                recipe = Recipe.from_dict(given)
        except ParameterError as error:
            raise InputError("recipe", str(error)) from None
        if recipe.kind == "audio_to_audio":
            raise InputError("recipe.kind", "audio_to_audio recipes need their input audio")
        refused = sorted(set(recipe.scheduler_config or {}) - _RECIPE_SCHEDULER_KEYS)
        if refused:
            raise InputError(
                "recipe.scheduler_config",
                f"{refused[0][:64]!r} is not accepted by this server; it takes "
                f"{', '.join(sorted(_RECIPE_SCHEDULER_KEYS))}",
            )
        if recipe.model != riffuser.model:
            raise InputError(
                "recipe.model", f"{recipe.model!r} is not the served model {riffuser.model!r}"
            )
        if not 1 <= recipe.num_inference_steps <= MAX_NUM_INFERENCE_STEPS:
            raise InputError(
                "recipe.num_inference_steps", f"must be in [1, {MAX_NUM_INFERENCE_STEPS}]"
            )
        if recipe.duration_s > MAX_RECIPE_DURATION_S:
            raise InputError("recipe.duration_s", f"at most {MAX_RECIPE_DURATION_S:g} s here")
        for name, side in (("start", recipe.start), ("end", recipe.end)):
            for part in (side.prompt, side.negative_prompt or "") if side else ():
                if len(part) > MAX_PROMPT_CHARS:
                    raise InputError(f"recipe.{name}.prompt", f"at most {MAX_PROMPT_CHARS} chars")
        sources = {}
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

        def work(job: Job) -> Any:
            with riffuser.lock, riffuser.on_progress(job.on_progress):
                return riffuser.render(recipe, **sources)

        return work

    @app.get("/api/clips/{clip_id}/{name}")
    async def clip_file(clip_id: str, name: str) -> Response:
        clip = recent.get(clip_id)
        if clip is None:
            raise _HTTPError(404, f"no recent clip {clip_id[:40]!r}", "clip_id")
        if name == "audio.wav":
            payload, mime = await run_in_threadpool(media.wav_bytes, clip.audio), "audio/wav"
        elif name == "audio.mp3":
            payload, mime = await run_in_threadpool(media.mp3_bytes, clip.audio), "audio/mpeg"
        elif name == "image.png":
            payload = await run_in_threadpool(media.image_bytes, clip.image, "PNG")
            mime = "image/png"
        elif name == "recipe.json":
            payload, mime = clip.recipe.to_json().encode(), "application/json"
        else:
            raise _HTTPError(
                404, "files are audio.wav, audio.mp3, image.png and recipe.json", "name"
            )
        stem = f"riffusion-{clip_id}"
        filename = f"{stem}.{name.split('.')[-1]}"
        return Response(
            payload,
            media_type=mime,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @app.post("/api/seed_image")
    async def upload_seed_image(request: Request) -> dict[str, Any]:
        body = await read_body(request, max_upload_bytes)
        if not body:
            raise InputError("body", "send the audio file's bytes as the request body")
        digest = hashlib.sha256(body).hexdigest()[:16]

        def work(job: Job) -> dict[str, Any]:
            # On the device worker, like a generation: decoding is bounded work, but work, and
            # parallel uploads must queue (and get 503) like everything else.
            return decode_upload(body, digest)

        answer, _ = await run_on_device(request, work)
        return answer

    def decode_upload(body: bytes, digest: str) -> dict[str, Any]:
        from riffusion.audio import Audio
        from riffusion.errors import AudioFileError

        try:
            audio = Audio.load(io.BytesIO(body), max_bytes=MAX_UPLOAD_DECODED_BYTES)
        except AudioFileError as error:
            raise InputError("body", str(error)) from None
        if audio.duration_s < 0.5:
            raise InputError("body", f"the audio lasts {audio.duration_s:.2f} s; at least 0.5 s")
        upload_id = f"upload-{digest}"
        # Everything that can fail is done before the upload is registered: a failed upload
        # leaves nothing behind.
        thumbnail = assets.upload_thumbnail(upload_id, audio, riffuser)
        assets.add_upload(upload_id, audio)
        return {
            "id": upload_id,
            "description": "uploaded audio",
            "duration_s": audio.duration_s,
            "thumbnail": thumbnail,
        }

    return app
