"""Reading a request body with a size limit and a deadline.

The body is read by hand rather than by FastAPI's body parameters: a declared
``Content-Length`` over the limit is refused before a byte is read (413), a body that grows
past it is refused as soon as it does, and a client that sends it too slowly gets 408 after
:data:`~riffusion.server.connections.BODY_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import Request

from riffusion.server.connections import BODY_TIMEOUT_S
from riffusion.server.errors import HTTPError

__all__ = ["read_body", "read_json"]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes.

    Raises:
        HTTPError: 413 over ``limit`` (declared or sent), 408 past the deadline.
    """
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        shown = length[:20]
        raise HTTPError(413, f"the body is {shown} bytes; at most {limit} are accepted")
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
            raise HTTPError(408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s") from None
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> Any:
    """The request body decoded as JSON, at most ``limit`` bytes.

    Raises:
        HTTPError: 400 for text that is not JSON, else as :func:`read_body`.
    """
    body = await read_body(request, limit)
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as error:
        raise HTTPError(400, f"the body is not valid JSON: {error}") from None
