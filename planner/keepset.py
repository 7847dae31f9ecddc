"""Which running groups to keep so the fewest slots move: exact, by a small MIP (HiGHS).

Only needed when kept groups fragment the nodes (planner/assign.py tries a greedy first).
Slots of one node are interchangeable, so per node only counts matter:
    k[g] ∈ {0,1}         keep intact group g (its TP degree is still wanted)
    m[d,node] ∈ ℤ≥0      new groups of degree d placed on the node
    Σ_{g on node} d_g k[g] + Σ_d d m[d,node] ≤ slots(node)        every node
    Σ_{g: d_g = d} k[g] + Σ_node m[d,node] = wanted[d]             every degree
    minimise Σ_g d_g (1 − k[g])                                    slots moved
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import timedelta

from ortools.math_opt.python import mathopt


def best_keep_set(
    node_slots: Mapping[str, int],
    groups: Sequence[tuple[str, str, int]],  # (group id, node, TP degree), intact groups only
    wanted: Mapping[int, int],  # TP degree → groups the plan wants
    time_limit_s: float = 1.0,
) -> set[str] | None:
    """Ids of the groups to keep; None when no keep set lets the plan fit."""
    model = mathopt.Model(name="keep-set")
    keep = {gid: model.add_binary_variable(name=gid) for gid, _, d in groups if wanted.get(d)}
    place = {
        (d, node): model.add_integer_variable(lb=0, ub=wanted[d], name=f"m[{d},{node}]")
        for d in wanted
        for node in node_slots
    }
    for node, capacity in node_slots.items():
        kept = [d * keep[gid] for gid, n, d in groups if n == node and gid in keep]
        new = [d * place[(d, node)] for d in wanted]
        model.add_linear_constraint(mathopt.fast_sum(kept + new) <= capacity)
    for d, count in wanted.items():
        kept = [keep[gid] for gid, _, e in groups if e == d and gid in keep]
        new = [place[(d, node)] for node in node_slots]
        model.add_linear_constraint(mathopt.fast_sum(kept + new) == count)
    sizes = Counter({gid: d for gid, _, d in groups})
    model.maximize(mathopt.fast_sum(sizes[gid] * k for gid, k in keep.items()))
    params = mathopt.SolveParameters(time_limit=timedelta(seconds=time_limit_s))
    result = mathopt.solve(model, mathopt.SolverType.HIGHS, params=params)
    if result.termination.reason != mathopt.TerminationReason.OPTIMAL:
        return None
    values = result.variable_values()
    return {gid for gid, k in keep.items() if values[k] > 0.5}
