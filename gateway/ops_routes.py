"""Operator endpoints: `/metrics` (Prometheus), `/v1/cluster` (the cluster picture as JSON) and
`/dashboard` (a live page over the two and the per-request event streams)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from common.cluster_view import build_view, read_async

router = APIRouter()
STATIC_DIR = Path(__file__).resolve().parent / "static"


async def cluster_view(request: Request, with_requests: bool) -> dict[str, Any]:
    svc = request.app.state.service
    raw = await read_async(svc.store.client, svc.store.keys, time.time() * 1000.0, with_requests)
    return build_view(raw, [c.name for c in svc.settings.slo_classes])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    try:
        view: dict[str, Any] | None = await cluster_view(request, with_requests=False)
    except (redis.RedisError, OSError):
        view = None
    body = request.app.state.metrics.render(view)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/cluster")
async def cluster(request: Request, requests: bool = True) -> dict[str, Any]:
    """Plan, pools, workers, attainment windows, counters and (unless `requests=false`) the
    requests in flight and the last few finished."""
    return await cluster_view(request, with_requests=requests)


@router.get("/dashboard", include_in_schema=False)
async def dashboard() -> FileResponse:
    return FileResponse(STATIC_DIR / "dashboard.html", headers={"Cache-Control": "no-cache"})
