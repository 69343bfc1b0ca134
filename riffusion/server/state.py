"""What every route shares: one :class:`ServerState` on ``app.state.server``.

Routes take it as a dependency (``state: ServerState = Depends(server_state)``, spelled
:data:`State`), so that no route closes over the model, the worker or the settings.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from starlette.concurrency import run_in_threadpool

from riffusion.server.assets import Assets
from riffusion.server.streams import StreamRegistry
from riffusion.server.worker import DeviceWorker

__all__ = ["ServerState", "State", "lifespan", "server_state"]


@dataclass(eq=False)
class ServerState:
    """The served model and what the routes share.

    Attributes:
        riffuser: the loaded :class:`~riffusion.Riffuser`; only ``worker``'s thread generates
            with it.
        worker: the device worker every generation and upload queues on.
        assets: the seed images and masks on offer, uploads included.
        max_body_bytes: largest JSON body (413 beyond).
        max_upload_bytes: largest uploaded audio file (413 beyond).
        default_scheduler: the scheduler the model was loaded with, which the web app's
            requests use.
        recent: clip id → the clip, for ``/api/clips/{id}/...`` (oldest first).
        streams: the live streams of ``/api/stream`` (made here, on ``worker``).
    """

    riffuser: Any
    worker: DeviceWorker
    assets: Assets
    max_body_bytes: int
    max_upload_bytes: int
    default_scheduler: str
    recent: collections.OrderedDict[str, Any] = field(default_factory=collections.OrderedDict)
    streams: StreamRegistry = field(init=False)

    def __post_init__(self) -> None:
        self.streams = StreamRegistry(self.worker, self.riffuser)


async def server_state(request: Request) -> ServerState:
    """The app's :class:`ServerState` (a dependency; async, so it does not take a thread)."""
    return request.app.state.server


State = Annotated[ServerState, Depends(server_state)]
"""A route parameter annotated ``State`` receives the app's :class:`ServerState`."""


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The app's lifespan: at shutdown its streams close, and its worker cancels every job
    and stops."""
    yield
    app.state.server.streams.close_all()
    await run_in_threadpool(app.state.server.worker.close)
