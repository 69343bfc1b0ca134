"""``riffusion serve``: the web app's HTTP API and a one-page playground, on FastAPI.

Needs the ``server`` extra (``pip install -e ".[server]"`` in the clone). :func:`create_app`
builds the ASGI application around a loaded :class:`~riffusion.Riffuser`, so other apps can
mount it::

    from riffusion import Riffuser
    from riffusion.server import create_app

    app = create_app(Riffuser.from_pretrained())
    # uvicorn.run(app, host="127.0.0.1", port=3013)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from riffusion.server.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from riffusion.server.app import create_app

        return create_app
    raise AttributeError(f"module 'riffusion.server' has no attribute {name!r}")
