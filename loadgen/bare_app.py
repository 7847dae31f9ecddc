"""A FastAPI app that does no work: the baseline the gateway's overhead is measured against."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI

app = FastAPI()


@app.post("/v1/requests", status_code=202)
async def submit(body: dict[str, Any]) -> dict[str, str]:
    return {"id": uuid.uuid4().hex, "status": "queued"}


@app.get("/v1/requests/{req_id}")
async def poll(req_id: str) -> dict[str, str]:
    return {"id": req_id, "status": "queued"}
