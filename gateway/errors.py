"""Exception → HTTP mapping. Every error body is OpenAI-shaped: {"error": {message, type, param}}.

Nothing a client sends may produce a 500; Redis being down is a 503 with Retry-After."""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from common.errors import DilaError, Overloaded

log = logging.getLogger(__name__)


def error_body(message: str, type_: str, param: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": None, **extra}}


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "header", "path")]
    return ".".join(parts) or "body"


def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errs = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errs):
        return JSONResponse(error_body("malformed JSON body", "invalid_request_error"), 400)
    msg = "; ".join(f"{_loc(tuple(e['loc']))}: {e['msg']}" for e in errs)
    param = _loc(tuple(errs[0]["loc"])) if errs else None
    return JSONResponse(error_body(msg, "invalid_request_error", param), 422)


def _dila(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DilaError)
    headers = {}
    extra: dict[str, Any] = {}
    if isinstance(exc, Overloaded):
        headers["Retry-After"] = str(exc.retry_after_s)
        extra["reason"] = exc.reason
    body = error_body(exc.message, exc.error_type, exc.param, **extra)
    return JSONResponse(body, exc.status_code, headers=headers)


def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    type_ = "invalid_request_error" if exc.status_code < 500 else "internal_error"
    return JSONResponse(error_body(str(exc.detail), type_), exc.status_code, headers=exc.headers)


def _redis_down(_: Request, exc: Exception) -> JSONResponse:
    log.warning("redis unavailable: %s", exc)
    body = error_body("the request store (Redis) is unreachable; retry shortly", "unavailable")
    return JSONResponse(body, 503, headers={"Retry-After": "1"})


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse(error_body("internal error", "internal_error"), 500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(DilaError, _dila)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(redis.RedisError, _redis_down)
    app.add_exception_handler(OSError, _redis_down)
    app.add_exception_handler(Exception, _unexpected)
