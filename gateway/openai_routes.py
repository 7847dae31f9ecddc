"""OpenAI-compatible completions and chat completions (blocking and `stream=true`), models.

Extras (`slo_class`, `deadline_ms`, `slo_ms`, `min_threshold`, `block_length`, `priority`,
`request_id`) are read from the body the way vLLM reads its extras; unknown fields are ignored.
Streaming sends the committed text of each finished block as a delta, in order.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import redis
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse

from common.errors import BadRequest, Conflict, DilaError, NotFound
from common.schemas import ChatRequest, CompletionRequest, EventType, OpenAIExtras
from gateway.routes import SSE_HEADERS, service
from gateway.service import Service

router = APIRouter()


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [service(request).model_card()]}


@router.post("/v1/completions", response_model=None)
async def completions(
    body: CompletionRequest, request: Request, x_request_id: str | None = Header(None)
) -> JSONResponse | StreamingResponse:
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise BadRequest("exactly one prompt per request is supported", param="prompt")
        prompt = prompt[0]
    return await _serve(service(request), prompt, body, x_request_id, "completion")


@router.post("/v1/chat/completions", response_model=None)
async def chat(
    body: ChatRequest, request: Request, x_request_id: str | None = Header(None)
) -> JSONResponse | StreamingResponse:
    svc = service(request)
    return await _serve(svc, svc.model.chat_prompt(body.messages), body, x_request_id, "chat")


async def _serve(
    svc: Service, prompt: str, body: OpenAIExtras, header_id: str | None, kind: str
) -> JSONResponse | StreamingResponse:
    if body.model and body.model != svc.model.name:
        raise NotFound(f"the model {body.model!r} does not exist", param="model")
    req_id = svc.admission.request_id(header_id, body.request_id)
    rec = svc.admission.build(req_id, prompt, body, kind=kind)
    await svc.submit(rec)
    if body.stream:
        stream = _stream(svc, req_id, kind, len(rec.prompt_ids))
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
    h = await svc.wait(req_id)
    _raise_unless_done(h)
    text = h.get("text", "")
    choice: dict[str, Any] = {"index": 0, "finish_reason": h.get("finish_reason", "length")}
    if kind == "chat":
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice.update(text=text, logprobs=None)
    return JSONResponse({
        "id": req_id, "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": int(time.time()), "model": svc.model.name, "choices": [choice],
        "usage": _usage(svc, len(rec.prompt_ids), text),
    })  # fmt: skip


def _raise_unless_done(h: dict[str, str]) -> None:
    status = h.get("status")
    if status == "cancelled":
        raise Conflict("the request was cancelled")
    if status != "done":
        raise DilaError(f"generation {status}: {h.get('error', 'unknown error')}")


def _usage(svc: Service, num_prompt: int, text: str) -> dict[str, int]:
    num_out = len(svc.model.encode(text)) if text else 0
    return {"prompt_tokens": num_prompt, "completion_tokens": num_out,
            "total_tokens": num_prompt + num_out}  # fmt: skip


def _chunk(req_id: str, kind: str, model: str, delta: str | None, finish: str | None) -> str:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    if kind == "chat":
        choice["delta"] = {} if delta is None else {"role": "assistant", "content": delta}
    else:
        choice.update(text=delta or "", logprobs=None)
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
    body = {"id": req_id, "object": obj, "created": int(time.time()), "model": model,
            "choices": [choice]}  # fmt: skip
    return f"data: {json.dumps(body)}\n\n"


async def _stream(svc: Service, req_id: str, kind: str, num_prompt: int) -> AsyncIterator[str]:
    sent = ""
    finished = False
    name = svc.model.name
    try:
        if kind == "chat":
            yield _chunk(req_id, kind, name, "", None)
        async for ev in svc.follow(req_id):
            if ev.type == EventType.FINAL:
                finished = True
                break
            text = ev.data.get("done_text")
            if text is not None and text.startswith(sent) and len(text) > len(sent):
                yield _chunk(req_id, kind, name, text[len(sent) :], None)
                sent = text
        h = await svc.get(req_id)
        if h.get("status") != "done":
            err = {"message": f"generation {h.get('status')}: {h.get('error', '')}",
                   "type": "generation_failed"}  # fmt: skip
            yield f"data: {json.dumps({'error': err})}\n\n"
        else:
            text = h.get("text", "")
            if text.startswith(sent) and len(text) > len(sent):
                yield _chunk(req_id, kind, name, text[len(sent) :], None)
            yield _chunk(req_id, kind, name, None, h.get("finish_reason", "length"))
        yield "data: [DONE]\n\n"
    except (redis.RedisError, OSError):
        yield 'data: {"error": {"message": "redis unavailable", "type": "unavailable"}}\n\n'
    finally:
        if not finished:  # the client went away (or Redis did): do not burn a worker on it
            try:
                await svc.cancel(req_id)
            except (DilaError, redis.RedisError, OSError):
                pass
