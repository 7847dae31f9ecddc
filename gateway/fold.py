"""Fold the finished stream into metrics and window buckets (a background task of the gateway).

Gateway replicas read `keys.finished()` as one consumer group, so each finished request is folded
by one replica: its Prometheus observations land there, and its window-bucket increments and the
ack go out in one MULTI, so the buckets count each request once even across crashes (an entry a
dead replica left pending is claimed by another after `RECLAIM_IDLE_MS`). The stream is trimmed by
age here too: entries older than `KEEP_S` go.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from contextlib import suppress
from typing import Any

import redis
from redis.asyncio import Redis

from common.keys import Keys
from common.outcomes import REQ_FIELDS, WINDOW_TTL_S, Outcome, bucket_start_s, outcome
from common.outcomes import window_fields as fields_of
from gateway.metrics import OutcomeMetrics

log = logging.getLogger(__name__)
GROUP = "metrics"
BATCH = 500
RECLAIM_IDLE_MS = 30_000
RECLAIM_EVERY_S = 10.0
KEEP_S = 900  # finished-stream entries older than this are trimmed
IDLE_CONSUMER_MS = 600_000  # a consumer idle this long with nothing pending is deleted


def consumer_name() -> str:
    return f"gw-{socket.gethostname()}-{os.getpid()}"


class OutcomeFold:
    def __init__(self, client: Redis, keys: Keys, metrics: OutcomeMetrics, block_ms: int) -> None:
        self.client, self.keys, self.metrics, self.block_ms = client, keys, metrics, block_ms
        self.stream = keys.finished()
        self.consumer = consumer_name()
        self._next_reclaim = self._next_trim = 0.0

    async def ensure_group(self) -> None:
        """Create the group at the stream's end (new records only), unless it exists."""
        try:
            await self.client.xgroup_create(self.stream, GROUP, id="$", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def run_forever(self) -> None:
        while True:
            try:
                await self.fold_once()
            except redis.ResponseError as e:
                if "NOGROUP" not in str(e):
                    raise
                await self.ensure_group()  # the stream was deleted (e.g. FLUSHDB)
            except (redis.RedisError, OSError) as e:
                log.debug("outcome fold: redis unavailable (%s)", e)
                await asyncio.sleep(0.5)

    async def fold_once(self) -> int:
        """Read (and reclaim) a batch, fold it; → number of entries folded."""
        got = await self.client.xreadgroup(
            GROUP, self.consumer, {self.stream: ">"}, count=BATCH, block=self.block_ms
        )
        entries = list(got[0][1]) if got else []
        entries += await self._reclaim()
        await self._trim()
        if entries:
            await self.fold(entries)
        return len(entries)

    async def fold(self, entries: list[tuple[str, dict[str, str] | None]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for _, f in entries:
            pipe.hmget(self.keys.req((f or {}).get("id", "")), REQ_FIELDS)
        hashes = await pipe.execute()
        outs = [
            outcome(eid, f, {k: v for k, v in zip(REQ_FIELDS, h, strict=True) if v is not None})
            for (eid, f), h in zip(entries, hashes, strict=True)
            if f  # an entry trimmed while pending comes back without fields
        ]
        await self._commit(outs, [eid for eid, _ in entries])
        for o in outs:
            self.metrics.observe(o)

    async def _commit(self, outs: list[Outcome], ids: list[str]) -> None:
        tx = self.client.pipeline(transaction=True)
        touched: set[str] = set()
        for o in outs:
            key = self.keys.window(bucket_start_s(o.finished_ms))
            touched.add(key)
            for name in fields_of(o):
                tx.hincrby(key, name, 1)
        for key in touched:
            tx.expire(key, WINDOW_TTL_S)
        tx.xack(self.stream, GROUP, *ids)
        await tx.execute()

    async def _reclaim(self) -> list[Any]:
        now = time.monotonic()
        if now < self._next_reclaim:
            return []
        self._next_reclaim = now + RECLAIM_EVERY_S
        reply = await self.client.xautoclaim(
            self.stream, GROUP, self.consumer, RECLAIM_IDLE_MS, start_id="0-0", count=BATCH
        )
        return list(reply[1])

    async def _trim(self) -> None:
        now = time.monotonic()
        if now < self._next_trim:
            return
        self._next_trim = now + 60.0
        min_id = f"{int((time.time() - KEEP_S) * 1000)}-0"
        await self.client.xtrim(self.stream, minid=min_id, approximate=True)
        # consumers of gone replicas (one per gateway process ever started) once they hold nothing
        for c in await self.client.xinfo_consumers(self.stream, GROUP):
            if c["name"] != self.consumer and c["pending"] == 0 and c["idle"] > IDLE_CONSUMER_MS:
                await self.client.xgroup_delconsumer(self.stream, GROUP, c["name"])


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
