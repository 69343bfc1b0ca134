"""The API's documentation: its OpenAPI schema and a Swagger UI page that works offline.

- ``GET /api/docs``: Swagger UI, every route with its request and answer, "Try it out"
  included; ``GET /docs`` redirects there.
- ``GET /api/openapi.json``: the OpenAPI schema.
- ``GET /api/docs/assets/...``: Swagger UI's JavaScript, CSS and icon, from the
  ``fastapi-offline`` package (the ``server`` extra): no CDN, nothing fetched from elsewhere.

Every link carries the request's ``root_path``, so the page works as well in an app mounted at
``/riff`` (``/riff/api/docs``). The JSON bodies are read by hand (:mod:`riffusion.server.bodies`
checks their size first); :func:`json_body` and :func:`binary_body` describe them in a route's
``openapi_extra`` by the models of :mod:`riffusion.server.schemas`, whose schemas
:func:`add_api_docs` places in the schema's ``components``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from riffusion.errors import RiffusionError, install_hint
from riffusion.server.schemas import BODY_MODELS, ErrorBody
from riffusion.server.urls import app_path

try:
    import fastapi_offline
except ImportError as error:  # pragma: no cover - depends on the environment
    raise RiffusionError(
        f"riffusion serve needs the 'server' extra: {install_hint('server')} ({error})"
    ) from error

__all__ = [
    "ASSETS_URL",
    "DESCRIPTION",
    "DOCS_URL",
    "OPENAPI_URL",
    "SWAGGER_UI_DIR",
    "add_api_docs",
    "binary_body",
    "json_body",
]

DOCS_URL = "/api/docs"
"""The API's documentation page (Swagger UI)."""
OPENAPI_URL = "/api/openapi.json"
"""The API's OpenAPI schema."""
ASSETS_URL = "/api/docs/assets"
"""Where Swagger UI's files are served (public, like ``/static``)."""
SWAGGER_UI_DIR = Path(fastapi_offline.__file__).parent / "static"
"""Swagger UI's files: ``swagger-ui-bundle.js``, ``swagger-ui.css``, ``favicon.png``."""

DESCRIPTION = """\
Make music from text prompts with a Riffusion model.

- Every error is JSON: `{"error": message, "field": name}`, the field at fault named.
- JSON bodies are at most `limits.max_body_bytes` long, uploads `limits.max_upload_bytes`
  (`GET /health`); a bigger one gets 413 before it is read.
- Generations queue for the one device: a full queue answers 503 with `Retry-After`.
- A server started with an API key wants `Authorization: Bearer KEY` on every request.
- The links in answers (`files`, a stream's `next`) include the app's mount point.
"""
"""The schema's ``info.description``: the conventions every route follows."""

_REF = "#/components/schemas/"
# Nothing the page loads comes from elsewhere: no validator badge (validator.swagger.io).
_SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


def json_body(*models: type[BaseModel], description: str) -> dict[str, Any]:
    """``openapi_extra`` documenting a required JSON body: one of ``models``.

    Args:
        models: the body's models, each one of :data:`~riffusion.server.schemas.BODY_MODELS`.
        description: what the body is.
    """
    unknown = [model.__name__ for model in models if model not in BODY_MODELS]
    if unknown:
        raise RiffusionError(f"{unknown} are not in riffusion.server.schemas.BODY_MODELS")
    refs = [{"$ref": f"{_REF}{model.__name__}"} for model in models]
    schema = refs[0] if len(refs) == 1 else {"anyOf": refs}
    content = {"application/json": {"schema": schema}}
    return {"requestBody": {"required": True, "description": description, "content": content}}


def binary_body(*media_types: str, description: str) -> dict[str, Any]:
    """``openapi_extra`` documenting a required body of raw bytes (a file).

    Args:
        media_types: the content types accepted (``"audio/*"``).
        description: what the body is.
    """
    schema = {"type": "string", "format": "binary"}
    content = {media_type: {"schema": schema} for media_type in media_types}
    return {"requestBody": {"required": True, "description": description, "content": content}}


def add_api_docs(app: FastAPI) -> None:
    """Serve the docs page, its assets and the ``/docs`` redirect; complete the schema.

    The app must be made with ``openapi_url=OPENAPI_URL`` and ``docs_url=None`` (FastAPI's
    own page loads its assets from a CDN).

    Args:
        app: the application.
    """
    if app.openapi_url != OPENAPI_URL or app.docs_url is not None:
        raise RiffusionError(f"make the app with openapi_url={OPENAPI_URL!r}, docs_url=None")
    app.mount(ASSETS_URL, StaticFiles(directory=SWAGGER_UI_DIR), name="api_docs_assets")
    app.add_api_route(DOCS_URL, _docs_page, include_in_schema=False)
    app.add_api_route("/docs", _docs_redirect, include_in_schema=False)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI's, kept until the routes change
        _complete(schema)  # idempotent
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented extension point


async def _docs_page(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=app_path(request, OPENAPI_URL),
        title=f"{request.app.title} API",
        swagger_js_url=app_path(request, f"{ASSETS_URL}/swagger-ui-bundle.js"),
        swagger_css_url=app_path(request, f"{ASSETS_URL}/swagger-ui.css"),
        swagger_favicon_url=app_path(request, f"{ASSETS_URL}/favicon.png"),
        swagger_ui_parameters=_SWAGGER_UI_PARAMETERS,
    )


async def _docs_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(app_path(request, DOCS_URL))


@functools.cache
def _model_schemas() -> dict[str, Any]:
    """The request body models' and the error body's JSON schemas, by model name."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((model, "validation") for model in BODY_MODELS),
        (ErrorBody, "serialization"),
    ]
    _, definitions = models_json_schema(models, ref_template=f"{_REF}{{model}}")
    return definitions.get("$defs", {})


def _complete(schema: dict[str, Any]) -> None:
    """Put the request body models' schemas in ``components.schemas`` (by model name), and
    document FastAPI's parameter errors as what :mod:`riffusion.server.errors` answers (400
    with the error body), not 422."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in _model_schemas().items():
        components.setdefault(name, definition)  # ErrorBody: FastAPI's own, when it made one
    error = {"application/json": {"schema": {"$ref": f"{_REF}{ErrorBody.__name__}"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None:
                responses.setdefault("400", {"description": "A bad value; field names it."})
                responses["400"]["content"] = error
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
