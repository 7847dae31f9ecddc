"""Open-loop replay against a running gateway: submit each request at its arrival time, follow
its event stream to the final event, read its record. Never waits for a reply before sending the
next request (open loop), so overload shows up as queueing, as it would in production."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from loadgen.metrics import Outcome


@dataclass(slots=True, frozen=True)
class Job:
    """One request of a run: when to send it and what to send."""

    req_id: str
    t_s: float
    body: dict[str, Any]
    slo_class: str
    check: Callable[[str], bool] | None = None  # answer checker (the demo task's)


async def replay(
    base_url: str,
    jobs: list[Job],
    timeout_s: float = 120.0,
    on_done: Callable[[], None] | None = None,
) -> list[Outcome]:
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits) as client:
        start = time.monotonic()

        async def one(job: Job) -> Outcome:
            await asyncio.sleep(max(0.0, start + job.t_s - time.monotonic()))
            try:
                return await _run_one(client, job, timeout_s)
            finally:
                if on_done:
                    on_done()

        return list(await asyncio.gather(*(one(j) for j in jobs)))


async def _run_one(client: httpx.AsyncClient, job: Job, timeout_s: float) -> Outcome:
    out = Outcome(job.req_id, job.slo_class, job.t_s, status="lost")
    r = await client.post("/v1/requests", json=job.body, headers={"X-Request-Id": job.req_id})
    if r.status_code == 429 or r.status_code >= 500:  # refused or unavailable: a miss, not a crash
        out.status = "rejected" if r.status_code == 429 else "unavailable"
        out.extra["reason"] = r.text[:200]
        return out
    r.raise_for_status()
    try:
        await asyncio.wait_for(_until_final(client, job.req_id), timeout_s)
    except TimeoutError:
        return out
    view = (await client.get(f"/v1/requests/{job.req_id}")).json()
    out.status = view["status"]
    out.e2e_ms = view["timings"].get("e2e_ms")
    out.slo_met = bool(view.get("slo_met"))
    taus = view.get("thresholds") or []
    out.mean_tau = sum(taus) / len(taus) if taus else None
    out.steps = view["progress"]["steps"]
    if out.status == "done" and job.check is not None:
        out.correct = job.check(view.get("text") or "")
    return out


async def _until_final(client: httpx.AsyncClient, req_id: str) -> None:
    """Follow the event stream to its final event; on a broken stream (the gateway lost Redis
    for a moment) reconnect after the last event seen, as an SSE client does."""
    last_id = ""
    while True:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            async with client.stream("GET", f"/v1/requests/{req_id}/events", headers=headers) as r:
                async for line in r.aiter_lines():
                    if line.startswith("id:"):
                        last_id = line.split(":", 1)[1].strip()
                    elif line.startswith("event:") and line.split(":", 1)[1].strip() == "final":
                        return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2)
