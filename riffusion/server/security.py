"""Who may call the server: host names, origins and an optional API key.

A server on ``127.0.0.1`` is reachable by every web page the user visits. Without checks, a page
on another site can ``POST`` to it with ``Content-Type: text/plain`` (a "simple" cross-site
request that needs no CORS preflight) and make it generate or take uploads; and with DNS
rebinding (a name the attacker controls, re-pointed at ``127.0.0.1``) the page can also read
the answers. :class:`AccessGuard` refuses, before any route runs:

- a ``Host`` that is neither a loopback name (``localhost``, ``*.localhost``), an IP address,
  nor a name the operator allowed (``--allowed-host``): 403. DNS rebinding needs a name, so IP
  addresses are safe to accept;
- an ``Origin`` that is neither the server's own (``scheme://Host``) nor an allowed
  ``--cors-origin``: 403. Browsers send ``Origin`` with every cross-site request that could
  change state; requests without one (curl, scripts, the original web app's Next.js proxy)
  pass;
- when an API key is set, any request without it (``Authorization: Bearer KEY``, or the cookie
  that opening ``/?token=KEY`` sets, as Jupyter does): 401. Static assets (the playground's
  and the API docs page's) stay public.

Refusals are JSON, ``{"error": message, "field": "Host" | "Origin" | "Authorization"}``, like
every other error of the server.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from riffusion.errors import ParameterError

__all__ = [
    "TOKEN_COOKIE",
    "AccessGuard",
    "add_access_control",
    "check_api_key",
    "check_origin",
    "host_name",
    "is_loopback_host",
]

TOKEN_COOKIE = "riffusion_token"
"""Cookie that carries the API key for the playground after ``/?token=KEY`` was opened."""

_PUBLIC_PREFIXES = ("/static/", "/api/docs/assets/")  # the playground's and Swagger UI's files

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def host_name(host_header: str) -> str:
    """The name or address in a ``Host`` header, lower-cased, without port or IPv6 brackets.

    Args:
        host_header: the header's value, e.g. ``"127.0.0.1:3013"``, ``"[::1]:3013"``.
    """
    host = host_header.strip().lower()
    if host.startswith("["):  # [v6]:port
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host  # a bare name, or an IPv6 address without brackets


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_loopback_host(host: str) -> bool:
    """Whether a bind address or host name stays on this machine (``127.0.0.0/8``, ``::1``,
    ``localhost``, ``*.localhost``).

    Args:
        host: an address or a name, without port.
    """
    host = host.strip().lower().strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_origin(argument: str, origin: Any) -> str:
    """``origin`` if it is a browser origin (``scheme://host[:port]``, no path), else an error.

    Args:
        argument: the argument's name for the message (``"cors_origins"``).
        origin: the value to check.
    """
    if (
        not isinstance(origin, str)
        or not origin.startswith(("http://", "https://"))
        or "/" in origin.split("://", 1)[1]
        or origin != origin.strip()
        or len(origin) > 253 + 16
    ):
        raise ParameterError(
            f"{argument}={origin!r} must be an origin like 'http://localhost:3000' "
            "(scheme and host, optional port, no path)"
        )
    return origin.rstrip("/").lower()


def check_api_key(argument: str, key: Any) -> str | None:
    """``key`` if it is ``None`` or a usable API key (at least 8 visible ASCII characters).

    Args:
        argument: the argument's name for the message (``"api_key"``).
        key: the value to check.
    """
    if key is None:
        return None
    if not isinstance(key, str) or len(key) < 8 or not all(33 <= ord(c) < 127 for c in key):
        raise ParameterError(
            f"{argument} must be at least 8 visible ASCII characters (no spaces), got "
            f"{'a ' + type(key).__name__ if not isinstance(key, str) else f'{len(key)} characters'}"
        )
    return key


def add_access_control(
    app: Any, *, cors_origins: Any = (), allowed_hosts: Any = (), api_key: str | None = None
) -> None:
    """Check the access settings, then add their middleware to a Starlette / FastAPI app.

    Args:
        app: the application (``add_middleware`` is called on it).
        cors_origins: origins whose pages may call the app from a browser (``CORS``).
        allowed_hosts: host names accepted besides loopback names and IP addresses.
        api_key: when set, every request but static assets must carry it.

    Raises:
        ParameterError: a setting that is not a list of strings, an origin or a usable key.
    """
    origins = [
        check_origin("cors_origins", origin) for origin in _strings("cors_origins", cors_origins)
    ]
    hosts = _strings("allowed_hosts", allowed_hosts)
    check_api_key("api_key", api_key)
    if origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "Authorization"],
        )
    # Added last, so outermost: foreign hosts and origins are refused before anything else
    # runs (CORS included).
    app.add_middleware(AccessGuard, allowed_hosts=hosts, allowed_origins=origins, api_key=api_key)


def _strings(argument: str, values: Any) -> list[str]:
    if isinstance(values, str) or not all(isinstance(value, str) for value in values):
        raise ParameterError(f"{argument}={values!r} must be a list of strings")
    return list(values)


class AccessGuard:
    """ASGI middleware: refuse foreign hosts, foreign origins and (optionally) keyless calls.

    Args:
        app: the ASGI application to protect.
        allowed_hosts: host names accepted besides loopback names and IP addresses.
        allowed_origins: origins accepted besides the server's own (``--cors-origin``).
        api_key: when set, every request but static assets must carry it.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
        api_key: str | None = None,
    ) -> None:
        self.app = app
        self.allowed_hosts = frozenset(host_name(host) for host in allowed_hosts)
        self.allowed_origins = frozenset(
            check_origin("allowed_origins", origin) for origin in allowed_origins
        )
        self.api_key = check_api_key("api_key", api_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, message, field = refusal
            await _send_json(send, status, {"error": message, "field": field}, field)
            return
        token = self._token_from_query(scope)
        if token is None:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                path = scope.get("root_path") or "/"
                cookie = f"{TOKEN_COOKIE}={token}; Path={path}; HttpOnly; SameSite=Strict"
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    # ------------------------------------------------------------------------------ checks
    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, str] | None:
        host_header = headers.get("host", "")
        host = host_name(host_header)
        if not (is_loopback_host(host) or _is_ip(host) or host in self.allowed_hosts):
            shown = host_header[:100]
            return (
                403,
                f"Host {shown!r} is not allowed: this server answers loopback names, IP "
                "addresses and the names given with --allowed-host (protection against DNS "
                "rebinding)",
                "Host",
            )
        origin = headers.get("origin")
        if origin is not None:
            own = f"{scope.get('scheme', 'http')}://{host_header.strip().lower()}"
            if origin.lower() != own and origin.rstrip("/").lower() not in self.allowed_origins:
                return (
                    403,
                    f"Origin {origin[:100]!r} may not call this server: only its own pages and "
                    "the origins given with --cors-origin may",
                    "Origin",
                )
        authorised = self.api_key is None or self._public(scope) or self._authorised(scope, headers)
        if not authorised:
            return (
                401,
                "this server needs its API key: send 'Authorization: Bearer KEY', or open "
                "/?token=KEY once in the browser",
                "Authorization",
            )
        return None

    def _public(self, scope: Scope) -> bool:
        if scope.get("method") == "OPTIONS":  # CORS preflights carry no credentials
            return True
        return _relative_path(scope).startswith(_PUBLIC_PREFIXES)

    def _authorised(self, scope: Scope, headers: dict[str, str]) -> bool:
        assert self.api_key is not None
        candidates: list[str | None] = []
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            candidates.append(value.strip())
        candidates.append(_cookie(headers.get("cookie", ""), TOKEN_COOKIE))
        candidates.append(self._token_from_query(scope, check=False))
        return any(_same_secret(candidate, self.api_key) for candidate in candidates)

    def _token_from_query(self, scope: Scope, *, check: bool = True) -> str | None:
        """The ``token`` of ``GET /?token=KEY`` (only the page's own address takes one)."""
        if self.api_key is None or scope.get("method") != "GET" or _relative_path(scope) != "/":
            return None
        query = scope.get("query_string", b"").decode("latin-1")
        values = parse_qs(query).get("token")
        if not values:
            return None
        token = values[0]
        if check and not _same_secret(token, self.api_key):
            return None
        return token


def _same_secret(candidate: str | None, key: str) -> bool:
    # Bytes, in constant time: compare_digest refuses str with non-ASCII characters, which a
    # header or a query may hold.
    if candidate is None:
        return False
    return secrets.compare_digest(candidate.encode("utf-8", "surrogateescape"), key.encode())


def _headers(scope: Scope) -> dict[str, str]:
    return {
        key.decode("latin-1").lower(): value.decode("latin-1")
        for key, value in scope.get("headers", [])
    }


def _relative_path(scope: Scope) -> str:
    """The path within this app: without the mount point (``root_path``) when it has one."""
    path, root = scope.get("path", "/"), scope.get("root_path", "").rstrip("/")
    if root and (path == root or path.startswith(f"{root}/")):
        return path[len(root) :] or "/"
    return path


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


async def _send_json(send: Send, status: int, body: dict[str, Any], field: str) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if field == "Authorization":
        headers.append((b"www-authenticate", b'Bearer realm="riffusion"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
