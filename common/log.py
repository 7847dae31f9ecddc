"""Logging setup, called once per entry point. `--log-json` gives one JSON object per line.

Every record carries the process's bound fields (`bind(service=..., worker_id=...)`) and, inside
a request's context (`request_context`, set by the gateway per HTTP request), that request's
fields such as `req_id`; a call may also pass them itself (`extra={"req_id": ...}`). So a grep or
a log pipeline can follow one request id through the gateway and the workers.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# fields copied from a record into the JSON line when present, in this order
FIELDS = (
    "service", "req_id", "worker_id", "pool", "method", "route", "path", "status_code",
    "duration_ms",
)  # fmt: skip
_bound: dict[str, Any] = {}
_request: ContextVar[dict[str, Any] | None] = ContextVar("dila_log_request", default=None)


def bind(**fields: Any) -> None:
    """Fields every later record of this process carries (e.g. service, worker_id, pool)."""
    _bound.update({k: v for k, v in fields.items() if v is not None})


@contextmanager
def request_context(**fields: Any) -> Iterator[dict[str, Any]]:
    """Records logged inside carry `fields`; `bind_request` adds to them from deeper code."""
    ctx = {k: v for k, v in fields.items() if v is not None}
    token = _request.set(ctx)
    try:
        yield ctx
    finally:
        _request.reset(token)


def bind_request(**fields: Any) -> None:
    """Add fields (e.g. the req_id once it is known) to the current request's context, if any.
    The context is a shared dict, so the caller that opened it sees them too."""
    ctx = _request.get()
    if ctx is not None:
        ctx.update({k: v for k, v in fields.items() if v is not None})


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for source in (_request.get() or {}, _bound):
            for name, value in source.items():
                if not hasattr(record, name):
                    setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO", json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
