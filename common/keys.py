"""Every Redis key of DiLaServe, built here and nowhere else (DESIGN §4).

All keys live under one prefix (default `dila`). Lua scripts that must find a request's keys from
an id they popped get the key *stems* from here (`req_stem`, `events_stem`, `queue_stem`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "dila"

    # ---- per request ----
    def req(self, req_id: str) -> str:
        """hash: the request record, status, canvas checkpoint, timings, result."""
        return f"{self.prefix}:req:{req_id}"

    def events(self, req_id: str) -> str:
        """stream: per-step progress events, capped, ending with a final event."""
        return f"{self.prefix}:ev:{req_id}"

    # ---- per pool ----
    def queue(self, pool: str) -> str:
        """zset: pending request ids, score = absolute deadline (epoch ms)."""
        return f"{self.prefix}:q:{pool}"

    # ---- cluster-wide ----
    def lease(self) -> str:
        """zset: running request ids, score = lease expiry (epoch ms)."""
        return f"{self.prefix}:lease"

    def worker(self, worker_id: str) -> str:
        """hash with TTL: a worker's heartbeat."""
        return f"{self.prefix}:worker:{worker_id}"

    def workers(self) -> str:
        """set: ids of workers that have heartbeat (entries whose hash expired are stale)."""
        return f"{self.prefix}:workers"

    def pools(self) -> str:
        """set: pool names that have ever had a queue."""
        return f"{self.prefix}:pools"

    def retired_pools(self) -> str:
        """set: pools an earlier plan had and the current one has not; whatever is queued for
        them (submit, hand-back, reap) goes where `redirect()` says instead."""
        return f"{self.prefix}:pools:retired"

    def slot(self, slot_id: str) -> str:
        """hash with TTL: a slot (one worker process on one device): node, device, state."""
        return f"{self.prefix}:slot:{slot_id}"

    def slots(self) -> str:
        """set: ids of slots that have registered (entries whose hash expired are gone)."""
        return f"{self.prefix}:slots"

    def rendezvous(self, group_id: str) -> str:
        """string (JSON, TTL): the store address a group's leader hosts for its ranks to join."""
        return f"{self.prefix}:rdv:{group_id}"

    def plan(self) -> str:
        return f"{self.prefix}:plan"

    def plan_log(self) -> str:
        return f"{self.prefix}:plan:log"

    def redirect(self) -> str:
        """hash: class → JSON [[pool, share], ...] of the current plan's routing, and `*` → the
        largest pool; where requests of a retired pool go (common/rehome.py)."""
        return f"{self.prefix}:plan:redirect"

    def ctl(self) -> str:
        """pub/sub channel: cancellations, enqueue wake-ups, plan changes."""
        return f"{self.prefix}:ctl"

    def stats(self, name: str) -> str:
        """counters (hash) and time-bucketed zsets for operators and the planner."""
        return f"{self.prefix}:stats:{name}"

    def profile(self, model: str) -> str:
        return f"{self.prefix}:profile:{model}"

    def finished(self) -> str:
        """stream: one entry (id, status) per request that ends, written by the script that ends
        it; entry ids are finish times. Folded into metrics and `window`s by the gateway."""
        return self.stats("finished")

    def arrivals(self, bucket_start_s: int) -> str:
        """hash with TTL: class → requests the gateway admitted or rejected in the bucket
        starting at epoch second `bucket_start_s` (the planner's arrival rates)."""
        return self.stats(f"arr:{bucket_start_s}")

    def window(self, bucket_start_s: int) -> str:
        """hash with TTL: per class/pool outcome counts of the requests that ended in one bucket."""
        return self.stats(f"win:{bucket_start_s}")

    # ---- stems for Lua scripts that derive keys from popped ids ----
    @property
    def req_stem(self) -> str:
        return self.req("")

    @property
    def events_stem(self) -> str:
        return self.events("")

    @property
    def queue_stem(self) -> str:
        return self.queue("")
