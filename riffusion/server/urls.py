"""The URLs the server hands out, under the app's mount point.

An app mounted in another (``parent.mount("/riff", create_app(...))``), or served behind a
proxy with ``--root-path /riff``, sees that prefix as the request's ``root_path``; every link
in an answer carries it, so that ``/api/clips/{id}/audio.wav`` reaches a client as
``/riff/api/clips/{id}/audio.wav``.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

__all__ = ["app_path"]


def app_path(request: HTTPConnection, path: str) -> str:
    """``path`` of this app as the client must ask for it: prefixed with the ``root_path``.

    Args:
        request: the request being answered.
        path: a path of this app, starting with ``/`` (``"/api/clips/0a1b/audio.wav"``).

    Returns:
        The path with the mount point before it (``"/riff/api/clips/0a1b/audio.wav"``); the
        path as given for an app served at the root.
    """
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return f"{root}{path}"
