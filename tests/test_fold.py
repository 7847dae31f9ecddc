"""The gateway's fold of the finished stream, on a real Redis: replicas share the stream (each
entry folded once), entries a dead replica left pending are reclaimed, windows count once."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from common.keys import Keys
from common.outcomes import bucket_start_s
from gateway import fold as fold_mod
from gateway.fold import GROUP, OutcomeFold
from gateway.metrics import OutcomeMetrics

KEYS = Keys("tf")


NOW_MS = time.time() * 1000.0


async def _finish(client: Redis, req_id: str, status: str, met: bool, now: float = NOW_MS) -> None:
    await client.hset(KEYS.req(req_id), mapping={
        "slo_class": "standard", "pool": "p", "arrival_ms": now - 900, "claimed_ms": now - 800,
        "finished_ms": now, "deadline_ms": now + (100 if met else -100), "steps": 4,
        "tokens_committed": 8, "tau_min": 0.9,
    })  # fmt: skip
    await client.xadd(KEYS.finished(), {"id": req_id, "status": status})


def _fold(client: Redis, name: str) -> tuple[OutcomeFold, OutcomeMetrics]:
    metrics = OutcomeMetrics(CollectorRegistry())
    f = OutcomeFold(client, KEYS, metrics, block_ms=50)
    f.consumer = name
    return f, metrics


def _done(m: OutcomeMetrics) -> float:
    return m.finished.labels("standard", "p", "done")._value.get()


async def test_replicas_share_and_reclaim(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        a, ma = _fold(client, "gw-a")
        b, mb = _fold(client, "gw-b")
        await a.ensure_group()
        await b.ensure_group()  # BUSYGROUP is fine
        for i in range(6):
            await _finish(client, f"r{i}", "done", met=i % 2 == 0)
        await _finish(client, "r-x", "cancelled", met=False)
        # a dead replica read two entries and never acked them
        await client.xreadgroup(GROUP, "gw-dead", {KEYS.finished(): ">"}, count=2)
        assert await a.fold_once() == 5
        assert await b.fold_once() == 0  # nothing new; the dead one's entries are not idle yet
        monkeypatch.setattr(fold_mod, "RECLAIM_IDLE_MS", 0)
        b._next_reclaim = 0.0
        assert await b.fold_once() == 2
        assert _done(ma) + _done(mb) == 6
        window = await client.hgetall(KEYS.window(bucket_start_s(NOW_MS)))
        assert window == {"standard|p|done": "6", "standard|p|met": "3", "standard|p|missed": "3",
                          "standard|p|cancelled": "1"}  # fmt: skip
        info = (await client.xinfo_groups(KEYS.finished()))[0]
        assert info["pending"] == 0
    finally:
        await client.aclose()
