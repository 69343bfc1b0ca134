"""How the server answers a failure: a JSON body ``{"error": message, "field": name}``.

Routes raise :class:`HTTPError` for a status of their own (404, 408, 413, 499, 503), or let
:class:`~riffusion.inputs.InputError` (400) and other library errors (400 for bad values, 500
for anything else) reach the handlers :func:`add_error_handlers` installs. A parameter FastAPI
checks itself (a query's ``?seed=abc``) is answered 400 the same way, not FastAPI's 422.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from riffusion._checks import describe
from riffusion.errors import RiffusionError
from riffusion.inputs import InputError

__all__ = ["CLIENT_CLOSED", "HTTPError", "add_error_handlers", "error_response"]

logger = logging.getLogger("riffusion.server")

CLIENT_CLOSED = 499
"""nginx's "client closed request": nobody reads the answer, logs do."""


class HTTPError(Exception):
    """A failure answered with ``status`` and the JSON error body.

    Args:
        status: the HTTP status code.
        message: the ``"error"`` of the body.
        field: the ``"field"`` of the body: the request part at fault, or ``None``.
        headers: extra response headers (``Retry-After``).
    """

    def __init__(
        self, status: int, message: str, field: str | None = None, headers: dict | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers


def error_response(
    status: int, message: str, field: str | None = None, headers: dict | None = None
) -> JSONResponse:
    """The JSON error body ``{"error": message, "field": field}`` with ``status``."""
    # A message may quote what the client sent, lone surrogates included: escape what UTF-8
    # cannot encode, so that answering the error can not fail in turn.
    body = {
        "error": message.encode("utf-8", "backslashreplace").decode("utf-8"),
        "field": None if field is None else field.encode("utf-8", "backslashreplace").decode(),
    }
    return JSONResponse(body, status_code=status, headers=headers)


# Starlette types handlers by Exception; each is registered for its own class only.
async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPError)
    return error_response(error.status, error.message, error.field, error.headers)


async def _input_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, InputError)
    return error_response(400, error.message, error.field)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = error.errors()
    if not problems:
        return error_response(400, "the request is not valid")
    first = problems[0]
    # loc is ("query" | "path" | "header" | "body", name, ...): the field is what follows.
    field = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
    got = f" (got {describe(first['input'])})" if "input" in first else ""
    return error_response(400, f"{first.get('msg', 'not valid')}{got}", field)


async def _riffusion_error(request: Request, error: Exception) -> JSONResponse:
    if isinstance(error, ValueError):
        return error_response(400, str(error))
    logger.exception("generation failed", exc_info=error)
    return error_response(500, f"{type(error).__name__}: {error}")


def add_error_handlers(app: FastAPI) -> None:
    """Answer :class:`HTTPError`, ``InputError``, ``RiffusionError`` and FastAPI's own
    parameter checks with JSON bodies."""
    app.add_exception_handler(HTTPError, _http_error)
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(RiffusionError, _riffusion_error)
