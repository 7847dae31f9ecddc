"""Structured logs: JSON lines carry the process's bound fields and the request's id, from the
gateway's access log through to records logged deep inside a request."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from common import log as dlog
from common.config import RedisCfg, Settings


@pytest.fixture()
def json_lines() -> Iterator[io.StringIO]:
    """A JSON handler (as `setup_logging(json_lines=True)` installs) on the root logger, taken
    off again afterwards; the root's other handlers are left alone."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(dlog.ContextFilter())
    handler.setFormatter(dlog.JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    saved = dict(dlog._bound)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        dlog._bound.clear()
        dlog._bound.update(saved)


def _records(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_bound_and_request_fields(json_lines: io.StringIO) -> None:
    dlog.bind(service="worker", worker_id="w-1", pool="p")
    logger = logging.getLogger("dila.test")
    with dlog.request_context(req_id="r-1") as ctx:
        logger.info("inside")
        dlog.bind_request(route="/x")
    logger.info("outside", extra={"req_id": "r-2"})
    inside, outside = _records(json_lines)
    assert inside["msg"] == "inside" and inside["req_id"] == "r-1"
    assert (inside["service"], inside["worker_id"], inside["pool"]) == ("worker", "w-1", "p")
    assert ctx == {"req_id": "r-1", "route": "/x"}
    assert outside["req_id"] == "r-2" and outside["worker_id"] == "w-1"


def test_gateway_access_log_carries_request_id(
    json_lines: io.StringIO, redis_url: str, model_dir: Path
) -> None:
    settings = Settings(redis=RedisCfg(url=redis_url, prefix="tlog"))
    settings.engine.model_dir = model_dir
    from gateway.app import create_app

    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/requests", json={"prompt": "abc", "max_tokens": 8})
        assert r.status_code == 202
        req_id = r.json()["id"]
        client.delete(f"/v1/requests/{req_id}")
        bad = client.post("/v1/requests", json={"prompt": "abc", "max_tokens": 8, "slo_class": "x"})
        assert bad.status_code == 400
    access = [r for r in _records(json_lines) if r["logger"] == "gateway.access"]
    submit, cancel, rejected = access
    assert submit["req_id"] == req_id and submit["status_code"] == 202
    assert submit["route"] == "/v1/requests" and submit["service"] == "gateway"
    assert cancel["req_id"] == req_id and cancel["method"] == "DELETE"
    assert rejected["status_code"] == 400 and rejected["req_id"].startswith("req-")
