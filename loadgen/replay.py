"""Open-loop replay against a running gateway: submit each request at its arrival time, then
long-poll its record until it ends. Never waits for a reply before sending the next request
(open loop), so overload shows up as queueing, as it would in production."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from loadgen.metrics import Outcome

LONG_POLL_S = 30.0


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
    try:
        r = await _submit(client, job)
    except httpx.HTTPError as e:  # the gateway never answered: a miss, not a crash of the run
        out.extra["reason"] = repr(e)
        return out
    if r.status_code == 429 or r.status_code >= 500:  # refused or unavailable: a miss
        out.status = "rejected" if r.status_code == 429 else "unavailable"
        out.extra["reason"] = r.text[:200]
        return out
    r.raise_for_status()
    try:
        view = await asyncio.wait_for(_until_final(client, job.req_id), timeout_s)
    except TimeoutError:
        return out
    out.status = view["status"]
    out.e2e_ms = view["timings"].get("e2e_ms")
    out.slo_met = bool(view.get("slo_met"))
    taus = view.get("thresholds") or []
    out.mean_tau = sum(taus) / len(taus) if taus else None
    out.steps = view["progress"]["steps"]
    if out.status == "done" and job.check is not None:
        out.correct = job.check(view.get("text") or "")
    return out


async def _submit(client: httpx.AsyncClient, job: Job, attempts: int = 3) -> httpx.Response:
    """POST, retried on a transport error (e.g. the server closed a keep-alive connection as it
    was reused): safe, because the request id makes the submit idempotent."""
    for attempt in range(attempts):
        try:
            return await client.post(
                "/v1/requests", json=job.body, headers={"X-Request-Id": job.req_id}
            )
        except httpx.TransportError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


async def _until_final(client: httpx.AsyncClient, req_id: str) -> dict[str, Any]:
    """Long-poll the request until it ends: one wake-up per request, not one per step, so the
    load generator costs the cores it shares with the workers as little as it can. A broken
    connection (the gateway lost Redis for a moment) is retried, as a client would."""
    while True:
        try:
            r = await client.get(f"/v1/requests/{req_id}", params={"wait_s": LONG_POLL_S})
            if r.status_code == 200:
                view: dict[str, Any] = r.json()
                if view["status"] not in ("queued", "running"):
                    return view
                continue
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2)
