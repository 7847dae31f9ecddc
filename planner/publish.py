"""A decision plus its slot assignment → the cluster plan document (common/plan.py). Pure.

Pool ids in the published plan are labels, not configurations: a pool whose groups all come
from one old pool keeps that pool's label, so a τ or batch-cap change keeps each slot's
formation (group id, pool, slots) and applies at the next step without a regroup
(common/plan.py). The configuration lives in the pool's fields.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from common.plan import ClusterPlan, GroupPlan, PoolSpec
from planner.assign import Assignment, Group
from planner.decision import PlanDecision
from planner.inputs import ConfigKey


@dataclass(frozen=True, slots=True)
class CurrentState:
    """The published plan as the planner sees it."""

    counts: dict[ConfigKey, int]  # instances per configuration
    groups: list[Group]  # running groups, pool ids rewritten to configuration ids
    labels: dict[str, str]  # group id → its published pool label
    routing: dict[str, dict[ConfigKey, float]]  # class → configuration → share


def current_state(plan: ClusterPlan | None, default_batch: int) -> CurrentState:
    if plan is None:
        return CurrentState({}, [], {}, {})
    key = {p.pool_id: ConfigKey(p.tp, p.tau, p.max_batch_size or default_batch) for p in plan.pools}
    counts: Counter[ConfigKey] = Counter()
    groups, labels = [], {}
    for g in plan.groups:
        k = key[g.pool_id]
        counts[k] += 1
        groups.append(Group(g.group_id, k.pool_id, k.tp, tuple(g.slots)))
        labels[g.group_id] = g.pool_id
    routing = {c: {key[p]: s for p, s in shares.items()} for c, shares in plan.routing.items()}
    return CurrentState(dict(counts), groups, labels, routing)


def pool_labels(a: Assignment, old_labels: Mapping[str, str]) -> dict[str, str]:
    """Configuration pool id → published label: the label most of its groups had, if free."""
    votes: dict[str, Counter[str]] = {}
    for g in a.groups:
        votes.setdefault(g.pool_id, Counter())
        if g.group_id in old_labels:
            votes[g.pool_id][old_labels[g.group_id]] += 1
    taken: set[str] = set()
    out: dict[str, str] = {}
    for pool in sorted(votes, key=lambda p: (-sum(votes[p].values()), p)):
        choice = next((lab for lab, _ in votes[pool].most_common() if lab not in taken), pool)
        while choice in taken:
            choice += "-x"
        out[pool] = choice
        taken.add(choice)
    return out


def to_cluster_plan(
    d: PlanDecision, a: Assignment, old_labels: Mapping[str, str],
    rates_rps: Mapping[str, float] | None = None,
) -> ClusterPlan:  # fmt: skip
    """The plan document, with the decision's predictions and the rates it was made for."""
    labels = pool_labels(a, old_labels)
    pools = [
        PoolSpec(
            pool_id=labels[p.pool_id], tp=p.tp, tau=p.tau, tau_floor=p.tau_floor,
            max_batch_size=p.max_batch_size, num_instances=0,  # 0: counted from the groups
        )
        for p in d.pools
        if p.pool_id in labels
    ]  # fmt: skip
    groups = [GroupPlan(group_id=g.group_id, pool_id=labels[g.pool_id], slots=list(g.slot_ids))
              for g in a.groups]  # fmt: skip
    routing = {
        c: {labels[p]: share for p, share in shares.items() if p in labels}
        for c, shares in d.routing.items()
    }
    return ClusterPlan(
        version=0, created_ms=0.0, source="planner", pools=pools, groups=groups, routing=routing,
        status=str(d.status), reason=d.reason, solve_ms=round(d.solve_ms, 1),
        attainment=dict(d.attainment), accuracy=d.accuracy, goodput_rps=d.goodput_rps,
        rates_rps={c: round(r, 4) for c, r in (rates_rps or {}).items()},
    )  # fmt: skip  # version and time are set on publish


def differs(new: ClusterPlan, old: ClusterPlan | None, routing_tolerance: float) -> bool:
    """Worth publishing: other groups or pool settings, or a routing share moved enough."""
    if old is None:
        return True
    if {p.model_dump_json() for p in new.pools} != {p.model_dump_json() for p in old.pools}:
        return True
    if {g.model_dump_json() for g in new.groups} != {g.model_dump_json() for g in old.groups}:
        return True
    for c in set(new.routing) | set(old.routing):
        a, b = new.routing.get(c, {}), old.routing.get(c, {})
        if any(abs(a.get(p, 0.0) - b.get(p, 0.0)) > routing_tolerance for p in set(a) | set(b)):
            return True
    return False
