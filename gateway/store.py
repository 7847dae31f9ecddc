"""The gateway's Redis operations (asyncio client): submit, read, cancel, follow events.

Short socket timeouts, no retries: when Redis is down every call raises within a second and the
app answers 503; the pool reconnects by itself when Redis is back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from common.bus_calls import Call, Calls, load_scripts
from common.config import RedisCfg
from common.plan import ClusterPlan
from common.schemas import EventType, RequestRecord


@dataclass(slots=True)
class Event:
    id: str
    type: str
    data: dict[str, Any]


class Store:
    def __init__(self, cfg: RedisCfg) -> None:
        self.client = Redis.from_url(
            cfg.url,
            decode_responses=True,
            socket_timeout=cfg.socket_timeout_s,
            socket_connect_timeout=cfg.connect_timeout_s,
            retry=Retry(NoBackoff(), 0),
            max_connections=cfg.max_connections,
        )
        self.calls = Calls(cfg)
        self.keys = self.calls.keys
        # XREAD BLOCK must return before the socket timeout fires
        self.block_ms = max(10, int(cfg.socket_timeout_s * 1000 * 0.6))
        self._scripts = {n: self.client.register_script(s) for n, s in load_scripts().items()}

    async def close(self) -> None:
        await self.client.aclose()

    async def _run(self, call: Call) -> Any:
        return await self._scripts[call.script](keys=call.keys, args=call.args)

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def submit(
        self, rec: RequestRecord, queue_bound: int, ahead_limit: int | None = None,
        drop_if_late: bool = False,
    ) -> list[str]:  # fmt: skip
        """Enqueue (counting the arrival): ['ok', pool] | ['exists', status] | ['full', n, pool]
        | ['infeasible', n ahead, pool] (see Calls.submit). The pool differs from `rec.pool`
        when the plan has just retired that one."""
        event = {"arrival_ms": rec.arrival_ms, "deadline_ms": rec.deadline_ms, "pool": rec.pool}
        call = self.calls.submit(rec, queue_bound, event, ahead_limit, drop_if_late)
        return list(await self._run(call))

    async def get(self, req_id: str) -> dict[str, str]:
        return dict(await self.client.hgetall(self.keys.req(req_id)))

    async def status(self, req_id: str) -> str | None:
        return await self.client.hget(self.keys.req(req_id), "status")  # type: ignore[no-any-return]

    async def cancel(self, req_id: str, now_ms: float) -> list[str]:
        return list(await self._run(self.calls.cancel(req_id, now_ms)))

    async def queue_len(self, pool: str) -> int:
        return int(await self.client.zcard(self.keys.queue(pool)))

    async def plan(self) -> ClusterPlan | None:
        raw = await self.client.get(self.keys.plan())
        return ClusterPlan.from_json(raw) if raw else None

    async def pool_rate(self, pool: str) -> tuple[float, int]:
        """(Σ measured service rate in req/s, live workers) over the pool's heartbeats."""
        ids = await self.client.smembers(self.keys.workers())
        pipe = self.client.pipeline(transaction=False)
        for w in ids:
            pipe.hmget(self.keys.worker(w), "pool", "service_rate_rps")
        rps, n = 0.0, 0
        for pool_name, rate in await pipe.execute():
            if pool_name == pool:
                n += 1
                rps += float(rate or 0.0)
        return rps, n

    async def follow(self, req_id: str, after: str = "0-0") -> AsyncIterator[Event]:
        """Every event after `after` (all of them by default), live, until the final one.

        Ends early if the stream disappears (expired) while nothing more arrives."""
        key = self.keys.events(req_id)
        last = after
        while True:
            got = await self.client.xread({key: last}, count=200, block=self.block_ms)
            if not got:
                if not await self.client.exists(key):
                    return
                continue
            for entry_id, fields in got[0][1]:
                last = entry_id
                ev = Event(entry_id, fields.get("type", ""), json.loads(fields.get("data", "{}")))
                yield ev
                if ev.type == EventType.FINAL:
                    return
