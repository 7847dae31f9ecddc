"""Native API: submit, poll, cancel, server-sent events; health and readiness."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import redis
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from common.schemas import GenerateRequest, RequestView, SubmitResponse
from gateway.service import Service
from gateway.views import request_view

router = APIRouter()
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


@router.get("/healthz")
async def healthz(request: Request) -> dict[str, str]:
    """Liveness: the process and its event loop answer. Never touches Redis."""
    return {"status": "draining" if service(request).draining else "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    svc = service(request)
    if svc.draining:
        return JSONResponse({"status": "draining"}, 503)
    try:
        await svc.store.ping()
    except (redis.RedisError, OSError):
        return JSONResponse({"status": "redis_unavailable"}, 503, headers={"Retry-After": "1"})
    return JSONResponse({"status": "ready"})


@router.post("/v1/requests", status_code=202, response_model=SubmitResponse)
async def submit(
    body: GenerateRequest,
    request: Request,
    x_request_id: str | None = Header(None),
) -> JSONResponse:
    svc = service(request)
    req_id = svc.admission.request_id(x_request_id, body.request_id)
    rec = svc.admission.build(req_id, body.prompt, body, kind="native")
    sub = await svc.submit(rec)
    out = SubmitResponse(
        id=sub.id,
        status=sub.status,  # type: ignore[arg-type]
        deadline_ms=sub.deadline_ms,
        poll_url=f"/v1/requests/{sub.id}",
        events_url=f"/v1/requests/{sub.id}/events",
    )
    headers = {} if sub.created else {"X-Idempotent-Replay": "true"}
    return JSONResponse(out.model_dump(mode="json"), 202, headers=headers)


MAX_WAIT_S = 60.0


@router.get("/v1/requests/{req_id}", response_model=RequestView)
async def poll(
    req_id: str,
    request: Request,
    wait_s: float = Query(
        0.0, ge=0.0, le=MAX_WAIT_S,
        description="long poll: answer as soon as the request ends, or after this many seconds",
    ),
) -> RequestView:  # fmt: skip
    svc = service(request)
    if wait_s > 0:
        return request_view(await svc.wait(req_id, timeout_s=wait_s))
    return request_view(await svc.get(req_id))


@router.delete("/v1/requests/{req_id}")
async def cancel(req_id: str, request: Request) -> dict[str, str]:
    previous = await service(request).cancel(req_id)
    return {"id": req_id, "status": "cancelled", "previous_status": previous}


@router.get("/v1/requests/{req_id}/events")
async def events(
    req_id: str, request: Request, last_event_id: str | None = Header(None)
) -> StreamingResponse:
    """Per-step progress as SSE, replayed from the start (or after Last-Event-ID), then live,
    ending with the `final` event."""
    svc = service(request)
    await svc.get(req_id)  # 404 before the stream starts

    async def gen() -> AsyncIterator[str]:
        try:
            async for ev in svc.follow(req_id, last_event_id or "0-0"):
                yield f"id: {ev.id}\nevent: {ev.type}\ndata: {json.dumps(ev.data)}\n\n"
        except (redis.RedisError, OSError):
            yield 'event: error\ndata: {"error": "redis_unavailable"}\n\n'

    return StreamingResponse(gen(), media_type="text/event-stream", headers=SSE_HEADERS)
