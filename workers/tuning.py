"""A pool's settings from the plan — default τ, τ floor, batch cap — as a running worker applies
them, between steps, without a restart.

Slot leaders get them from their assignment (workers/slot_group.py's PlanWatcher); a plain
worker (`dilaserve worker`) whose pool the plan lists follows that pool's entry (PoolFollower).
Either way the loop applies a change at its next iteration, on its own thread
(`WorkerLoop.request_retune`), so request state is never touched from another thread.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import redis

from common.keys import Keys
from common.plan import Assignment, PoolSpec
from common.plan_bus import read_plan

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PoolTuning:
    tau: float  # default threshold of new and running requests (a client's own floor may lift it)
    tau_floor: float  # deadline-aware τ control never goes below it
    max_batch_size: int  # requests the worker holds at most


def runner_capacity(default_batch: int, asg: Assignment) -> int:
    """Batch slots a slot's runner is built with: room for the worker's default cap and the
    plan's, so a later batch-cap change up to it applies in place (the same on every rank)."""
    return max(default_batch, asg.max_batch_size or 0)


def tuning_of(spec: Assignment | PoolSpec, default_batch: int, capacity: int) -> PoolTuning:
    """The plan's settings for a pool; no cap in the plan → the worker's own; never above what
    the runner holds."""
    cap = min(spec.max_batch_size or default_batch, capacity)
    return PoolTuning(spec.tau, spec.tau_floor, cap)


class PoolFollower(threading.Thread):
    """A plain worker's plan watcher: when the plan lists this worker's pool, its τ, floor and
    batch cap apply (pools the plan does not list keep the worker's configured settings)."""

    def __init__(
        self, client: redis.Redis, keys: Keys, pool: str, poll_s: float, default_batch: int,
        apply: Any,
    ) -> None:  # fmt: skip
        super().__init__(name="pool-follow", daemon=True)
        self.client, self.keys, self.pool, self.poll_s = client, keys, pool, poll_s
        self.default_batch, self.apply = default_batch, apply
        self.current: PoolTuning | None = None
        self._done = threading.Event()

    def close(self) -> None:
        self._done.set()
        self.join(timeout=2.0)

    def run(self) -> None:
        while True:
            self.poll()
            if self._done.wait(self.poll_s):
                return

    def poll(self) -> None:
        try:
            plan = read_plan(self.client, self.keys)
        except (redis.RedisError, ValueError) as e:
            log.warning("reading the plan: %s", e)
            return
        spec = next((p for p in plan.pools if p.pool_id == self.pool), None) if plan else None
        if spec is None:
            return
        new = tuning_of(spec, self.default_batch, self.default_batch)
        if new != self.current:
            self.current = new
            self.apply(new)
