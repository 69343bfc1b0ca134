"""The ASGI application: :func:`create_app` builds it from one router per concern.

``routes_pages`` (``/``, ``/static``, ``/health``, ``/random_prompt``), ``routes_webapp`` (the
web app's ``POST /run_inference/``), ``routes_api`` (``/api/clip``, ``/api/clips/...``) and
``routes_seeds`` (``/seed_images``, ``/masks``, ``/api/seed_image``) and ``routes_stream``
(``/api/stream``, the live stream) share one
:class:`~riffusion.server.state.ServerState`. Every generation goes through its one
:class:`~riffusion.server.worker.DeviceWorker` (one at a time, bounded queue: full → 503 with
``Retry-After``); a request whose client disconnects is dropped from the queue or stopped at
the next denoising step. Bad input gets a 4xx JSON body ``{"error": message, "field": name}``.
Nothing a request sends is used as a path. ``api_docs`` serves the API's documentation at
``/api/docs`` (Swagger UI, offline) and its OpenAPI schema at ``/api/openapi.json``.

Mounted in another app (``parent.mount("/riff", create_app(riffuser))``) every route answers
under the prefix, and the links in answers carry it. A mounted app's lifespan is not run by
its parent: run it from the parent's (``async with sub.router.lifespan_context(sub): yield``)
so that streams and the worker are closed at shutdown.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from riffusion.errors import ParameterError, RiffusionError, install_hint
from riffusion.inputs import MAX_BODY_BYTES, MAX_UPLOAD_BYTES

try:
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles
except ImportError as error:  # pragma: no cover - depends on the environment
    raise RiffusionError(
        f"riffusion serve needs the 'server' extra: {install_hint('server')} ({error})"
    ) from error

from riffusion.server import (
    routes_api,
    routes_pages,
    routes_seeds,
    routes_stream,
    routes_webapp,
)
from riffusion.server.api_docs import DESCRIPTION, OPENAPI_URL, add_api_docs
from riffusion.server.assets import Assets
from riffusion.server.errors import add_error_handlers
from riffusion.server.security import add_access_control
from riffusion.server.state import ServerState, lifespan
from riffusion.server.worker import DeviceWorker

__all__ = ["create_app"]


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
        A FastAPI application; ``app.state.worker`` is its device worker and
        ``app.state.server`` the :class:`~riffusion.server.state.ServerState` its routes share.
    """
    from riffusion import Riffuser, __version__

    if not isinstance(riffuser, Riffuser):
        raise ParameterError(f"riffuser must be a riffusion.Riffuser, got {type(riffuser)}")
    app = FastAPI(
        title="riffusion",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # api_docs serves the page, with its assets (FastAPI's takes a CDN's)
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        openapi_url=OPENAPI_URL,
    )
    add_access_control(app, cors_origins=cors_origins, allowed_hosts=allowed_hosts, api_key=api_key)
    app.state.server = ServerState(
        riffuser=riffuser,
        assets=Assets(seed_image_dir),  # checks the folder before the worker thread starts
        worker=DeviceWorker(max_queue),
        max_body_bytes=max_body_bytes,
        max_upload_bytes=max_upload_bytes,
        default_scheduler=riffuser.scheduler_name,
    )
    app.state.worker = app.state.server.worker
    add_error_handlers(app)
    app.include_router(routes_pages.router)
    app.mount("/static", StaticFiles(directory=routes_pages.STATIC_DIR), name="static")
    app.include_router(routes_seeds.router)
    app.include_router(routes_webapp.router)
    app.include_router(routes_api.router)
    app.include_router(routes_stream.router)
    add_api_docs(app)
    return app
