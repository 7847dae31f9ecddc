"""Open-loop replay against a running gateway: submit each request at its arrival time, then
long-poll its record until it ends. Never waits for a reply before sending the next request
(open loop), so overload shows up as queueing, as it would in production.

The load generator shares this machine's cores with the gateway and the workers, so it is built
to cost little: aiohttp on uvloop (several times less CPU per request than httpx on asyncio) and
one long poll per request instead of following its per-step event stream.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import aiohttp

from loadgen.metrics import Outcome

LONG_POLL_S = 30.0
SUBMIT_ATTEMPTS = 3


@dataclass(slots=True, frozen=True)
class Job:
    """One request of a run: when to send it and what to send."""

    req_id: str
    t_s: float
    body: dict[str, Any]
    slo_class: str
    check: Callable[[str], bool] | None = None  # answer checker (the demo task's)


def run_replay(
    base_url: str,
    jobs: list[Job],
    timeout_s: float = 120.0,
    on_done: Callable[[], None] | None = None,
    niceness: int = 0,
) -> list[Outcome]:
    """`replay` on a fresh uvloop event loop (plain asyncio where uvloop is missing), in a thread
    of its own at `niceness` (Linux niceness is per thread: the caller's, and so the processes it
    starts later, keep theirs)."""
    with ThreadPoolExecutor(1, thread_name_prefix="replay") as pool:  # re-raises its errors
        return pool.submit(_run_loop, base_url, jobs, timeout_s, on_done, niceness).result()


def _run_loop(
    base_url: str, jobs: list[Job], timeout_s: float, on_done: Callable[[], None] | None,
    niceness: int,
) -> list[Outcome]:  # fmt: skip
    if niceness:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(replay(base_url, jobs, timeout_s, on_done))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(replay(base_url, jobs, timeout_s, on_done))


async def replay(
    base_url: str,
    jobs: list[Job],
    timeout_s: float = 120.0,
    on_done: Callable[[], None] | None = None,
) -> list[Outcome]:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=4.0)  # under uvicorn's 5 s
    timeout = aiohttp.ClientTimeout(total=LONG_POLL_S + 10.0)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as client:
        start, start_wall_ms = time.monotonic(), time.time() * 1e3

        async def one(job: Job) -> Outcome:
            await asyncio.sleep(max(0.0, start + job.t_s - time.monotonic()))
            try:
                out = await _run_one(client, job, timeout_s)
                if out.gateway_arrival_ms is not None:  # same host, same clock
                    out.send_lag_ms = out.gateway_arrival_ms - start_wall_ms - job.t_s * 1e3
                return out
            finally:
                if on_done:
                    on_done()

        return list(await asyncio.gather(*(one(j) for j in jobs)))


async def _run_one(client: aiohttp.ClientSession, job: Job, timeout_s: float) -> Outcome:
    out = Outcome(job.req_id, job.slo_class, job.t_s, status="lost")
    try:
        code, text = await _submit(client, job)
    except (aiohttp.ClientError, TimeoutError) as e:  # never answered: a miss, not a crash
        out.extra["reason"] = repr(e)
        return out
    if code == 429 or code >= 500:  # refused or unavailable: a miss
        out.status = "rejected" if code == 429 else "unavailable"
        out.extra["reason"] = text[:200]
        return out
    if code != 202:
        raise RuntimeError(f"submit of {job.req_id} answered {code}: {text[:200]}")
    try:
        view = await asyncio.wait_for(_until_final(client, job.req_id), timeout_s)
    except TimeoutError:
        out.extra["reason"] = f"no final status within {timeout_s:g} s"
        return out
    out.status = view["status"]
    out.gateway_arrival_ms = view.get("arrival_ms")
    out.e2e_ms = view["timings"].get("e2e_ms")
    out.queued_ms = view["timings"].get("queued_ms")
    out.slo_met = bool(view.get("slo_met"))
    taus = view.get("thresholds") or []
    out.mean_tau = sum(taus) / len(taus) if taus else None
    out.steps = view["progress"]["steps"]
    if out.status == "done" and job.check is not None:
        out.correct = job.check(view.get("text") or "")
    return out


async def _submit(client: aiohttp.ClientSession, job: Job) -> tuple[int, str]:
    """POST, retried on a connection error (e.g. the server closed a keep-alive connection as it
    was reused): safe, because the request id makes the submit idempotent."""
    headers = {"X-Request-Id": job.req_id}
    for attempt in range(SUBMIT_ATTEMPTS):
        try:
            async with client.post("/v1/requests", json=job.body, headers=headers) as r:
                return r.status, await r.text()
        except aiohttp.ClientConnectionError:
            if attempt == SUBMIT_ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


async def _until_final(client: aiohttp.ClientSession, req_id: str) -> dict[str, Any]:
    """Long-poll the request until it ends: one wake-up per request, not one per step. A broken
    connection (the gateway lost Redis for a moment) is retried, as a client would."""
    params = {"wait_s": str(LONG_POLL_S)}
    while True:
        try:
            async with client.get(f"/v1/requests/{req_id}", params=params) as r:
                if r.status == 200:
                    view: dict[str, Any] = await r.json()
                    if view["status"] not in ("queued", "running"):
                        return view
                    continue
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.2)
