"""create_app(settings): the FastAPI app; the lifespan opens and closes the Redis pool."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import redis
from fastapi import Depends, FastAPI, Request

from common.config import Settings
from common.errors import Unauthorized
from gateway import errors, observe, openai_routes, routes
from gateway.model_info import ModelInfo
from gateway.service import Service
from gateway.store import Store

log = logging.getLogger(__name__)
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/dashboard")


def _auth(keys: list[str]):  # type: ignore[no-untyped-def]
    async def check(request: Request) -> None:
        if not keys or request.url.path in OPEN_PATHS:
            return
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer ") or header[7:] not in keys:
            raise Unauthorized("missing or wrong API key (Authorization: Bearer <key>)")

    return check


async def _reap_forever(store: Store, max_failures: int, every_s: float) -> None:
    """The lease reaper also runs here, so requests of dead workers return even with no
    worker alive to reap them (the script is idempotent; several reapers are harmless)."""
    while True:
        await asyncio.sleep(every_s)
        with suppress(redis.RedisError, OSError):
            await store._run(store.calls.reap(time.time() * 1000.0, max_failures))


def create_app(settings: Settings, model: ModelInfo | None = None) -> FastAPI:
    model = model or ModelInfo.load(settings.engine.model_dir, settings.gateway.model_name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store(settings.redis)
        app.state.service = Service(settings, model, store)
        tasks = [
            asyncio.create_task(
                _reap_forever(store, settings.worker.max_retries, settings.worker.reap_interval_s)
            ),
            asyncio.create_task(app.state.service.finishes.run_forever()),
        ]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task
        await store.close()

    auth = Depends(_auth(settings.gateway.api_keys))
    app = FastAPI(title="DiLaServe", lifespan=lifespan, dependencies=[auth])
    errors.install(app)
    app.include_router(routes.router)
    app.include_router(openai_routes.router)
    observe.install(app)
    return app
