"""What the routes share: submit (idempotent, bounded), read, cancel, wait for the end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from common.config import Settings
from common.errors import Conflict, NotFound, Overloaded, Unavailable
from common.plan import ClusterPlan
from common.schemas import RequestRecord, RequestStatus
from gateway.admission import Admission, now_ms
from gateway.feasibility import DeadlineCheck
from gateway.model_info import ModelInfo
from gateway.routing import Router
from gateway.store import Event, Store
from gateway.waiters import Finishes

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Submitted:
    id: str
    status: str
    deadline_ms: float
    created: bool  # False: the id existed (idempotent replay)


class Service:
    def __init__(self, settings: Settings, model: ModelInfo, store: Store) -> None:
        self.settings, self.model, self.store = settings, model, store
        self.admission = Admission(settings, model)
        self.router = Router(settings.worker.pool)
        self.deadlines = DeadlineCheck(
            Path(settings.engine.model_dir), settings.slo_classes, settings.engine.max_batch_size
        )
        # Deadline-feasibility admission is part of the deadline-aware policy; the fixed
        # baselines (today's DLM servers) queue everything.
        self.admit_by_deadline = self.deadlines.enabled and settings.scheduler.policy == "dilaserve"
        self.draining = False
        self.finishes = Finishes(store.client, store.keys.finished(), store.block_ms)
        self._rate_refresh: dict[str, asyncio.Task[None]] = {}  # pool → the one refresh running

    async def submit(self, rec: RequestRecord) -> Submitted:
        gw = self.settings.gateway
        if self.router.stale():
            self.router.update(await self._plan())
        rec.pool = self.router.pool_for(rec.slo_class)
        # The submit script refuses a `drop` request that cannot make its deadline (429) and
        # admits a `serve` one flagged `deadline_infeasible`; it counts the arrival either way.
        drop = self.deadlines.late_action(rec) == "drop"
        reply = await self.store.submit(rec, gw.max_queue_len, self._ahead_limit(rec), drop)
        if reply[0] == "infeasible":
            raise self._infeasible(rec)
        if reply[0] == "full":
            raise Overloaded(
                f"pool {reply[2]!r} queue holds {reply[1]} requests, its bound is "
                f"{gw.max_queue_len}",
                reason="queue_full",
                retry_after_s=gw.retry_after_s,
            )
        if reply[0] == "exists":
            h = await self.store.get(rec.id)
            return Submitted(rec.id, reply[1], float(h.get("deadline_ms", 0)), created=False)
        rec.pool = reply[1]
        return Submitted(rec.id, "queued", rec.deadline_ms, created=True)

    async def _plan(self) -> ClusterPlan | None:
        try:
            return await self.store.plan()
        except ValueError:  # a malformed plan must not take submits down: keep routing as is
            log.exception("ignoring an unreadable plan in Redis")
            return None

    def _ahead_limit(self, rec: RequestRecord) -> int | None:
        """How much queued work `rec` can wait behind (DeadlineCheck.ahead_limit); None when
        deadline admission is off. Never waits on Redis: a submit uses the pool's last known
        service rate while one background task refreshes it. (Awaiting the refresh here cost
        every submit that came while it ran a round trip of its own; on a busy event loop that
        was ~120 ms of each request's deadline.)"""
        if not self.admit_by_deadline:
            return None
        rate, due = self.deadlines.rate(rec.pool)
        if due and rec.pool not in self._rate_refresh:
            task = asyncio.create_task(self._refresh_rate(rec.pool))
            self._rate_refresh[rec.pool] = task
        return self.deadlines.ahead_limit(rec, rate)

    async def _refresh_rate(self, pool: str) -> None:
        try:
            self.deadlines.remember_rate(pool, *await self.store.pool_rate(pool))
        except (RedisError, ValueError) as e:  # keep the last rate; the next submit retries
            log.warning("could not refresh pool %r's service rate: %s", pool, e)
        finally:
            del self._rate_refresh[pool]

    def _infeasible(self, rec: RequestRecord) -> Overloaded:
        return Overloaded(
            f"deadline_ms={rec.deadline_ms:.0f} cannot be met even at the {rec.slo_class!r} "
            "class's threshold floor with the work queued ahead; relax the deadline or retry "
            "later",
            reason="deadline_infeasible",
            retry_after_s=self.settings.gateway.retry_after_s,
        )

    async def get(self, req_id: str) -> dict[str, str]:
        h = await self.store.get(req_id)
        if not h:
            raise NotFound(f"no request with id {req_id!r}", param="id")
        return h

    async def cancel(self, req_id: str) -> str:
        reply = await self.store.cancel(req_id, now_ms())
        if reply[0] == "missing":
            raise NotFound(f"no request with id {req_id!r}", param="id")
        if reply[0] == "finished":
            raise Conflict(f"request {req_id!r} already finished with status {reply[1]!r}")
        return reply[1]

    async def follow(self, req_id: str, after: str = "0-0") -> AsyncIterator[Event]:
        async for ev in self.store.follow(req_id, after):
            yield ev

    async def wait(self, req_id: str, timeout_s: float | None = None) -> dict[str, str]:
        """Block until the request ends (→ its final hash); past the gateway's wait timeout,
        503. With `timeout_s` (a long poll) → its hash as it is then, finished or not."""
        limit_s = self.settings.gateway.wait_timeout_s if timeout_s is None else timeout_s
        await self.get(req_id)  # 404 before waiting

        async def finished() -> bool:
            status = await self.store.status(req_id)
            return status is not None and RequestStatus(status).is_finished

        if not await self.finishes.wait(req_id, finished, limit_s) and timeout_s is None:
            raise Unavailable(f"request {req_id!r} did not finish in time")
        return await self.get(req_id)

    def model_card(self) -> dict[str, Any]:
        return {
            "id": self.model.name,
            "object": "model",
            "created": 0,
            "owned_by": "dilaserve",
            "max_model_len": self.model.max_seq_len,
        }
