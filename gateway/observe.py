"""Observability wiring for the gateway: operator routes, the dashboard's static files, HTTP
metrics and access logs with request ids, and the finished-stream fold as a lifespan task.

`install(app)` is the one call `create_app` makes; nothing here changes how requests are served.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import redis
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import disable_created_metrics
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.log import bind, request_context
from gateway import ops_routes
from gateway.fold import OutcomeFold, stop
from gateway.metrics import HttpMetrics, Metrics

access_log = logging.getLogger("gateway.access")
REQ_PATH_RE = re.compile(r"^/v1/requests/([^/]+)")
QUIET_ROUTES = ("/metrics", "/healthz", "/readyz", "/v1/cluster")


class ObserveMiddleware:
    """Counts and times every HTTP request by route template; logs one access line per request
    (INFO for POST/DELETE and errors, DEBUG otherwise) carrying its req_id."""

    def __init__(self, app: ASGIApp, http: HttpMetrics) -> None:
        self.app, self.http = app, http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        seen = _Seen()

        async def send_and_see(msg: Message) -> None:
            seen.see(msg)
            await send(msg)

        with request_context(req_id=_req_id(scope)) as ctx:
            try:
                await self.app(scope, receive, send_and_see)
            finally:
                if seen.code == 429:
                    self.http.rejected.labels(seen.reason()).inc()
                self._done(scope, seen.code, time.perf_counter() - start, ctx)

    def _done(self, scope: Scope, code: int, duration_s: float, ctx: dict[str, Any]) -> None:
        path = scope.get("path", "")
        route = getattr(scope.get("route"), "path", None) or (
            "/dashboard/static" if path.startswith("/dashboard/static/") else "unmatched"
        )
        method = scope.get("method", "")
        self.http.observe(method, route, code, duration_s)
        if route in QUIET_ROUTES or route.startswith("/dashboard"):
            return
        level = logging.INFO if method in ("POST", "DELETE") or code >= 400 else logging.DEBUG
        access_log.log(
            level, "%s %s %d %.1fms", method, path, code, duration_s * 1000,
            extra={"method": method, "route": route, "path": path,
                   "status_code": code, "duration_ms": round(duration_s * 1000, 2), **ctx},
        )  # fmt: skip


class _Seen:
    """The status of a response, and the body of a 429 (small JSON) for its `reason`."""

    def __init__(self) -> None:
        self.code = 500
        self.body = b""

    def see(self, msg: Message) -> None:
        if msg["type"] == "http.response.start":
            self.code = int(msg["status"])
        elif msg["type"] == "http.response.body" and self.code == 429 and len(self.body) < 8192:
            self.body += msg.get("body", b"")

    def reason(self) -> str:
        try:
            return str(json.loads(self.body)["error"].get("reason") or "unknown")
        except (ValueError, KeyError, TypeError, AttributeError):
            return "unknown"


def _req_id(scope: Scope) -> str | None:
    m = REQ_PATH_RE.match(scope.get("path", ""))
    if m:
        return m.group(1)
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            return str(value.decode("latin-1"))
    return None


def _with_fold(app: FastAPI, metrics: Metrics) -> None:
    """Run the finished-stream fold for as long as the app's own lifespan (inside it, so the
    Redis pool outlives the task)."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            store = a.state.service.store
            fold = OutcomeFold(store.client, store.keys, metrics.outcomes, store.block_ms)
            with suppress(redis.RedisError, OSError):
                await fold.ensure_group()
            task = asyncio.create_task(fold.run_forever())
            try:
                yield state
            finally:
                await stop(task)

    app.router.lifespan_context = lifespan


def install(app: FastAPI) -> None:
    bind(service="gateway")
    disable_created_metrics()  # no `*_created` series: half the exposition, no use to us
    metrics = Metrics()
    app.state.metrics = metrics
    app.include_router(ops_routes.router)
    static = StaticFiles(directory=ops_routes.STATIC_DIR)
    app.mount("/dashboard/static", static, name="dashboard-static")
    app.add_middleware(ObserveMiddleware, http=metrics.http)
    _with_fold(app, metrics)
