"""Typed Redis operations (sync client), used by workers, the reaper, tools and tests.

Every multi-key change is one Lua script (common/lua/); a worker step's publishes go out as one
pipeline, i.e. one round trip whatever the batch size. Connections use short timeouts and no
retries so that a dead Redis shows up as an error within a second, never as a hang.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.bus_calls import Call, Calls, load_scripts
from common.config import RedisCfg
from common.schemas import StepReport, WorkItem


def now_ms() -> float:
    return time.time() * 1000.0


def connect(cfg: RedisCfg, socket_timeout_s: float | None = None) -> redis.Redis:
    return redis.Redis.from_url(
        cfg.url,
        decode_responses=True,
        socket_timeout=socket_timeout_s or cfg.socket_timeout_s,
        socket_connect_timeout=cfg.connect_timeout_s,
        retry=Retry(NoBackoff(), 0),
        max_connections=cfg.max_connections,
    )


def pairs_to_dict(flat: list[Any]) -> dict[str, str]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


class Bus:
    def __init__(self, cfg: RedisCfg, client: redis.Redis | None = None) -> None:
        self.client = client or connect(cfg)
        self.calls = Calls(cfg)
        self.keys = self.calls.keys
        self._scripts = {n: self.client.register_script(s) for n, s in load_scripts().items()}

    def run(self, call: Call, pipe: Any = None) -> Any:
        return self._scripts[call.script](keys=call.keys, args=call.args, client=pipe)

    # ---- worker side ----

    def claim(
        self, pool: str, worker_id: str, n: int, lease_ms: float, at_ms: float | None = None
    ) -> list[WorkItem]:
        if n <= 0:
            return []
        at = now_ms() if at_ms is None else at_ms
        raw = self.run(self.calls.claim(pool, worker_id, n, at, lease_ms))
        return [WorkItem.from_hash(pairs_to_dict(flat)) for flat in raw]

    def publish_step(self, worker_id: str, reports: Iterable[StepReport], extra: list[Call]) -> (
        list[tuple[str, Any]]
    ):
        """One round trip: every report's progress call, then the extra calls (completions,
        hand-backs). Returns (req_id or script name, reply) in order."""
        pipe = self.client.pipeline(transaction=False)
        tags: list[str] = []
        for rep in reports:
            self.run(self.calls.progress(worker_id, rep), pipe)
            tags.append(rep.req_id)
        for call in extra:
            self.run(call, pipe)
            tags.append(call.script)
        if not tags:
            return []
        return list(zip(tags, pipe.execute(raise_on_error=False), strict=True))

    def heartbeat(
        self, worker_id: str, lease_s: float, fields: dict[str, str], held: dict[str, int]
    ) -> list[str]:
        expiry = now_ms() + lease_s * 1000.0
        ttl_s = max(2, int(lease_s * 2))
        return list(self.run(self.calls.heartbeat(worker_id, expiry, ttl_s, fields, held)))

    def reap(self, max_failures: int, at_ms: float | None = None) -> tuple[int, int]:
        requeued, failed = self.run(self.calls.reap(at_ms or now_ms(), max_failures))
        return int(requeued), int(failed)

    # ---- client side (tests, tools) ----

    def queue_len(self, pool: str) -> int:
        return int(self.client.zcard(self.keys.queue(pool)))

    def get(self, req_id: str) -> dict[str, str]:
        return dict(self.client.hgetall(self.keys.req(req_id)))

    def cancel(self, req_id: str) -> list[str]:
        return list(self.run(self.calls.cancel(req_id, now_ms())))

    def counters(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.client.hgetall(self.calls.counters).items()}
