"""Slow and excess clients: a deadline for request headers, a connection cap, quiet refusals.

uvicorn times out idle keep-alive connections but not a client that sends its request line and
headers a byte at a time ("slowloris"): a thousand such connections hold a thousand file
descriptors, at a common limit of 1,024 the server can no longer accept anyone, and asyncio logs
every refused ``accept``. :func:`serve_config` gives uvicorn a protocol that

- closes a connection whose request headers are not complete :data:`HEADER_TIMEOUT_S` seconds
  after they began (``408``);
- answers ``503`` and closes at once when :data:`MAX_CONNECTIONS` are already open, so the
  descriptors never run out;

and installs :class:`RepeatFilter`, which logs a repeated message (a refused connection, a
refused ``accept``) once per :data:`LOG_INTERVAL_S` with the count of those it held back.
Request bodies have their own deadline in the application (:data:`BODY_TIMEOUT_S`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

__all__ = [
    "BODY_TIMEOUT_S",
    "HEADER_TIMEOUT_S",
    "LOG_INTERVAL_S",
    "MAX_CONNECTIONS",
    "RepeatFilter",
    "guarded_protocol",
    "serve_config",
]

HEADER_TIMEOUT_S = 10.0
"""Seconds a client has to send a request's line and headers, from its first byte."""

BODY_TIMEOUT_S = 30.0
"""Seconds a client has to send a request body (an upload) once its headers arrived."""

MAX_CONNECTIONS = 256
"""Open connections beyond which new ones get ``503`` and are closed at once."""

LOG_INTERVAL_S = 60.0
"""A message that repeats is logged at most once per this many seconds."""

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
)
_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
    b"Content-Length: 0\r\n\r\n"
)

logger = logging.getLogger(__name__)


class RepeatFilter(logging.Filter):
    """Let a log message through once per ``interval_s``; count the repeats held back.

    Messages are keyed by their unformatted text (``record.msg``), so "refused a connection
    from %s" from a thousand clients is one message. The next one let through says how many
    were held back.

    Args:
        interval_s: seconds between two records of the same message.
    """

    def __init__(self, interval_s: float = LOG_INTERVAL_S) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            self._last[key] = now
            held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it in the last {self.interval_s:g} s)"
        if record.exc_info and last is not None:
            record.exc_info = None  # one traceback per message is enough
        return True


def guarded_protocol(
    *, header_timeout_s: float = HEADER_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS
) -> type:
    """uvicorn's h11 protocol with a header deadline and a connection cap.

    Args:
        header_timeout_s: seconds from a request's first byte to its complete headers.
        max_connections: open connections beyond which new ones are refused with 503.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _header_deadline: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                logger.warning(
                    "refused a connection: %d are open (the cap is %d)",
                    len(self.connections) - 1,
                    max_connections,
                )
                transport.write(_BUSY_RESPONSE)
                transport.close()
                return
            self._arm_header_deadline()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self._arm_header_deadline()  # a request's headers are still arriving
            else:
                self._disarm_header_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_deadline()
            super().connection_lost(exc)

        def _arm_header_deadline(self) -> None:
            if self._header_deadline is None:
                self._header_deadline = self.loop.call_later(header_timeout_s, self._header_timeout)

        def _disarm_header_deadline(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None

        def _header_timeout(self) -> None:
            self._header_deadline = None
            if not self.transport.is_closing():
                logger.warning(
                    "closed a connection that sent no complete request headers in %g s",
                    header_timeout_s,
                )
                self.transport.write(_TIMEOUT_RESPONSE)
                self.transport.close()

    return GuardedH11Protocol


def serve_config(
    app: Any,
    *,
    host: str,
    port: int,
    header_timeout_s: float = HEADER_TIMEOUT_S,
    max_connections: int = MAX_CONNECTIONS,
    log_level: str = "warning",
) -> Any:
    """A ``uvicorn.Config`` for ``app`` with the guarded protocol and quiet repeated logs.

    Args:
        app: the ASGI application (:func:`riffusion.server.create_app`).
        host: address to bind.
        port: port to bind (0: any free one).
        header_timeout_s: see :func:`guarded_protocol`.
        max_connections: see :func:`guarded_protocol`.
        log_level: uvicorn's log level.
    """
    import uvicorn

    repeat_filter = RepeatFilter()
    for name in ("asyncio", "uvicorn.error", __name__):
        named = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in named.filters):
            named.addFilter(repeat_filter)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=guarded_protocol(header_timeout_s=header_timeout_s, max_connections=max_connections),
        timeout_keep_alive=5,
    )
