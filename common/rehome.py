"""Requests must not be stranded in a pool that a new plan drops (a *retired* pool).

Publishing a plan (common/plan_bus.py) records, in the same transaction, which pools the new
version retired (`keys.retired_pools()`) and where each class goes now (`keys.redirect()`: the
plan's routing shares per class, and the largest pool for classes it does not route). Then
`rehome_retired` moves whatever is queued for a retired pool to the live pools its class goes to
(common/lua/rehome.lua, one atomic script per pool, deadlines and checkpoints kept). From then
on every script that queues a request — submit (a gateway still routing by the old plan for up
to a second), hand-back (a regrouping worker) and reap — sends a request for a retired pool to
a live one itself (common/lua/lib.lua), so nothing can be queued where nobody claims.
"""

from __future__ import annotations

import json
from typing import Any

from common.bus_calls import Calls, load_scripts
from common.config import RedisCfg
from common.keys import Keys
from common.plan import ClusterPlan

ANY_CLASS = "*"  # redirect field for classes the plan does not route


def redirect_table(plan: ClusterPlan) -> dict[str, str]:
    """class → JSON [[pool, share], ...] (shares normalised over the pools that get some);
    `*` → the largest pool (most GPUs, then the first id). Empty for a plan without pools."""
    out: dict[str, str] = {}
    live = {p.pool_id for p in plan.pools}
    for cls, shares in sorted(plan.routing.items()):
        routed = sorted((p, w) for p, w in shares.items() if w > 0 and p in live)
        total = sum(w for _, w in routed)
        if total > 0:
            out[cls] = json.dumps([[p, w / total] for p, w in routed])
    if plan.pools:
        largest = min(plan.pools, key=lambda p: (-p.tp * p.num_instances, p.pool_id))
        out[ANY_CLASS] = json.dumps([[largest.pool_id, 1.0]])
    return out


def queue_plan_change(pipe: Any, keys: Keys, old_pool_ids: set[str], plan: ClusterPlan) -> None:
    """Inside the publishing transaction: retire the pools `plan` drops, revive the ones it
    has, and replace the redirect table."""
    new = {p.pool_id for p in plan.pools}
    if old_pool_ids - new:
        pipe.sadd(keys.retired_pools(), *sorted(old_pool_ids - new))
    if new:
        pipe.srem(keys.retired_pools(), *sorted(new))
    pipe.delete(keys.redirect())
    table = redirect_table(plan)
    if table:
        pipe.hset(keys.redirect(), mapping=table)


def rehome_retired(client: Any, calls: Calls) -> int:
    """Move what is queued for retired pools to live pools; → requests moved. Idempotent."""
    keys = calls.keys
    retired = sorted(str(p) for p in client.smembers(keys.retired_pools()))
    if not retired:
        return 0
    pipe = client.pipeline(transaction=False)
    for pool in retired:
        pipe.zcard(keys.queue(pool))
    busy = [p for p, n in zip(retired, pipe.execute(), strict=True) if n]
    if not busy:
        return 0
    script = client.register_script(load_scripts()["rehome"])
    moved = 0
    for pool in busy:
        call = calls.rehome(pool)
        moved += int(script(keys=call.keys, args=call.args))
    return moved


def default_calls(keys: Keys) -> Calls:
    """Calls for tools that have only the key prefix (defaults for the rest of RedisCfg)."""
    return Calls(RedisCfg().model_copy(update={"prefix": keys.prefix}))
