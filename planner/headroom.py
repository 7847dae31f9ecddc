"""Give GPUs the plan leaves idle to the busiest pools, as headroom. Pure.

The MIP deploys only the instances its objective needs (idle instances cost a little), so a
lightly loaded cluster would keep GPUs dark. Serving, they are better spent as spare capacity
for bursts: each round adds one instance to the pool with the most load per instance whose TP
group still fits the nodes. Predictions stay as solved (more instances only lower utilisation).
"""

from __future__ import annotations

from dataclasses import replace

from planner.decision import PlanDecision, PoolPlan
from planner.inputs import PlannerInput


def fill_idle(d: PlanDecision, inp: PlannerInput) -> PlanDecision:
    load = {p.pool_id: 0.0 for p in d.pools}
    for c in inp.classes:
        for pool, share in d.routing.get(c.name, {}).items():
            load[pool] = load.get(pool, 0.0) + c.rate_rps * share
    pools = {p.pool_id: p for p in d.pools}
    while True:
        fits = [p for p in pools.values() if load[p.pool_id] > 0 and _fits(inp, pools, p.tp)]
        if not fits:
            break
        best = max(fits, key=lambda p: (load[p.pool_id] / p.num_instances, -p.tp, p.pool_id))
        pools[best.pool_id] = replace(best, num_instances=best.num_instances + 1)
    if pools == {p.pool_id: p for p in d.pools}:
        return d
    return replace(d, pools=tuple(pools[p.pool_id] for p in d.pools))


def _fits(inp: PlannerInput, pools: dict[str, PoolPlan], extra_tp: int) -> bool:
    """One more TP-`extra_tp` group still satisfies every node row of the MIP."""
    for d in inp.tp_degrees:
        used = sum(p.tp * p.num_instances for p in pools.values() if p.tp >= d)
        used += extra_tp if extra_tp >= d else 0
        if used > sum(d * (g // d) for g in inp.gpus_per_node):
            return False
    return True
