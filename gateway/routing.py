"""Route each request to a pool by the current plan's weights for its SLO class.

The plan (`dila:plan`, common/plan.py) carries, per class, each pool's share of that class's
requests. The gateway re-reads it at most every REFRESH_S and spreads requests over pools with
smooth weighted round robin (deterministic, and exact shares over any window, unlike a random
draw). Classes the plan does not route go to the configured default pool.
"""

from __future__ import annotations

import time

from common.plan import ClusterPlan

REFRESH_S = 1.0


class Router:
    def __init__(self, default_pool: str) -> None:
        self.default_pool = default_pool
        self.plan_version = -1
        self._routing: dict[str, dict[str, float]] = {}
        self._credit: dict[str, dict[str, float]] = {}
        self._read_at_s = float("-inf")

    def stale(self) -> bool:
        return time.monotonic() - self._read_at_s >= REFRESH_S

    def update(self, plan: ClusterPlan | None) -> None:
        self._read_at_s = time.monotonic()
        version = plan.version if plan else -1
        if version == self.plan_version:
            return
        self.plan_version = version
        self._routing = {
            cls: {p: w for p, w in shares.items() if w > 0}
            for cls, shares in (plan.routing if plan else {}).items()
        }
        self._credit = {}

    def pool_for(self, slo_class: str) -> str:
        shares = self._routing.get(slo_class)
        if not shares:
            return self.default_pool
        credit = self._credit.setdefault(slo_class, dict.fromkeys(shares, 0.0))
        total = sum(shares.values())
        for pool, w in shares.items():
            credit[pool] += w
        best = max(credit, key=lambda p: credit[p])
        credit[best] -= total
        return best
