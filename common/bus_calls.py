"""Arguments for every Lua script call, built in one place for the sync and the async bus.

A `Call` is (script name, keys, args); `common.bus.Bus` runs it on a redis client or pipeline,
`gateway.store.Store` on an asyncio client. Keeping the argument order here, next to nothing
else, is what lets the two stay in step with `common/lua/*.lua`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.config import RedisCfg
from common.keys import Keys
from common.outcomes import ARRIVALS_TTL_S, bucket_start_s
from common.schemas import RequestRecord, StepReport, encode

LUA_DIR = Path(__file__).resolve().parent / "lua"
SCRIPT_NAMES = (
    "submit", "claim", "progress", "complete", "handback", "heartbeat", "reap", "cancel",
    "rehome",
)  # fmt: skip
STATS_COUNTERS = "counters"
# Added to the queue score of a request handed back as hopeless (a `serve` class past saving):
# it is claimed only when no on-time request waits in its pool (the best-effort lane).
LATE_LANE_MS = 1e13


def load_scripts() -> dict[str, str]:
    """Each script with the shared helpers (lib.lua) in front."""
    lib = (LUA_DIR / "lib.lua").read_text()
    return {name: lib + (LUA_DIR / f"{name}.lua").read_text() for name in SCRIPT_NAMES}


def count_arrival(client: Any, keys: Keys, slo_class: str, at_ms: float) -> None:
    """One arrival of `slo_class` at `at_ms`, as the submit script counts it; `client` may be a
    pipeline (the planner's replays and tests write counts this way)."""
    key = keys.arrivals(bucket_start_s(at_ms))
    client.hincrby(key, slo_class, 1)
    client.expire(key, ARRIVALS_TTL_S)


@dataclass(slots=True)
class Call:
    script: str
    keys: list[str]
    args: list[Any]


class Calls:
    def __init__(self, cfg: RedisCfg) -> None:
        self.keys = Keys(cfg.prefix)
        self.ttl_s = cfg.result_ttl_s
        self.maxlen = cfg.events_maxlen

    @property
    def counters(self) -> str:
        return self.keys.stats(STATS_COUNTERS)

    def submit(
        self, rec: RequestRecord, queue_bound: int, event: dict[str, Any],
        ahead_limit: int | None = None, drop_if_late: bool = False,
    ) -> Call:  # fmt: skip
        """`ahead_limit` (None: no check): the most requests that may be claimed before this one
        for it to still make its deadline (checked in the script, atomically with the enqueue)."""
        k = self.keys
        fields = [x for kv in rec.to_redis().items() for x in kv]
        return Call(
            "submit",
            [k.req(rec.id), k.queue(rec.pool), k.events(rec.id), k.pools(), self.counters,
             k.arrivals(bucket_start_s(rec.arrival_ms)), k.retired_pools(), k.redirect()],
            [rec.id, rec.queue_score or rec.deadline_ms, queue_bound, rec.pool, self.maxlen,
             k.ctl(), encode(event), rec.slo_class, k.queue_stem, ARRIVALS_TTL_S,
             "" if ahead_limit is None else ahead_limit,
             int(drop_if_late), *fields],
        )  # fmt: skip

    def claim(self, pool: str, worker_id: str, n: int, now_ms: float, lease_ms: float) -> Call:
        k = self.keys
        return Call(
            "claim",
            [k.queue(pool), k.lease()],
            [worker_id, n, now_ms, lease_ms, k.req_stem, k.events_stem, self.maxlen],
        )

    def progress(self, worker_id: str, rep: StepReport) -> Call:
        canvas = encode(rep.canvas) if rep.canvas is not None else ""
        return Call(
            "progress",
            [self.keys.req(rep.req_id), self.keys.events(rep.req_id)],
            [worker_id, rep.attempt, self.maxlen, encode(rep.event()), rep.steps,
             rep.tokens_committed, rep.tokens_total, rep.block, rep.partial_text, rep.tau,
             canvas, rep.block],
        )  # fmt: skip

    def complete(
        self,
        worker_id: str,
        req_id: str,
        attempt: int,
        status: str,
        now_ms: float,
        fields: dict[str, str],
    ) -> Call:
        k = self.keys
        final = {"status": status, **{f: v for f, v in fields.items() if f in ("text", "error")}}
        flat = [x for kv in fields.items() for x in kv]
        return Call(
            "complete",
            [k.req(req_id), k.events(req_id), k.lease(), self.counters, k.finished()],
            [worker_id, attempt, req_id, status, now_ms, self.ttl_s, self.maxlen, encode(final),
             *flat],
        )  # fmt: skip

    def handback(
        self,
        worker_id: str,
        req_id: str,
        attempt: int,
        pool: str,
        canvas: list[int] | None,
        ckpt_block: int,
        reason: str,
        error: str = "",
        late: bool = False,
    ) -> Call:
        k = self.keys
        return Call(
            "handback",
            [k.req(req_id), k.events(req_id), k.lease(), k.queue(pool), self.counters,
             k.retired_pools(), k.redirect()],
            [worker_id, attempt, req_id, encode(canvas) if canvas is not None else "", ckpt_block,
             1 if error else 0, reason, error, self.maxlen, k.ctl(), pool,
             LATE_LANE_MS if late else 0, k.queue_stem],
        )  # fmt: skip

    def heartbeat(
        self,
        worker_id: str,
        expiry_ms: float,
        ttl_s: int,
        fields: dict[str, str],
        held: dict[str, int],
    ) -> Call:
        k = self.keys
        flat = [x for kv in fields.items() for x in kv]
        leases = [x for kv in held.items() for x in kv]
        return Call(
            "heartbeat",
            [k.lease(), k.worker(worker_id), k.workers()],
            [worker_id, expiry_ms, ttl_s, k.req_stem, len(fields), *flat, *leases],
        )

    def reap(self, now_ms: float, max_failures: int, limit: int = 100) -> Call:
        k = self.keys
        return Call(
            "reap",
            [k.lease(), self.counters, k.finished(), k.retired_pools(), k.redirect()],
            [now_ms, k.req_stem, k.events_stem, k.queue_stem, max_failures, self.ttl_s,
             self.maxlen, k.ctl(), limit],
        )  # fmt: skip

    def rehome(self, pool: str) -> Call:
        """Move what is queued for `pool` to live pools, if a plan retired it."""
        k = self.keys
        return Call(
            "rehome",
            [k.queue(pool), k.retired_pools(), k.redirect(), k.pools()],
            [pool, k.req_stem, k.events_stem, k.queue_stem, k.ctl(), self.maxlen],
        )

    def cancel(self, req_id: str, now_ms: float) -> Call:
        k = self.keys
        return Call(
            "cancel",
            [k.req(req_id), k.events(req_id), k.lease(), self.counters, k.finished()],
            [req_id, now_ms, self.ttl_s, self.maxlen, k.ctl(), k.queue_stem],
        )
