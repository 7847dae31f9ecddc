"""Slot assignment: groups never span nodes, and as few slots move as any assignment could."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from planner.assign import Assignment, Group, Slot, assign
from planner.decision import PoolPlan
from tests.planner_helpers import packs


def slots_of(nodes: dict[str, int]) -> list[Slot]:
    return [Slot(f"{n}/cuda:{i}", n, i) for n, count in nodes.items() for i in range(count)]


def pool(pool_id: str, tp: int, n: int) -> PoolPlan:
    return PoolPlan(pool_id, tp, 0.9, 0.8, n, 8)


def check_valid(a: Assignment, slots: list[Slot], pools: list[PoolPlan]) -> None:
    node = {s.slot_id: s.node for s in slots}
    used = [s for g in a.groups for s in g.slot_ids]
    assert len(used) == len(set(used)), "a slot is in two groups"
    for g in a.groups:
        assert len(g.slot_ids) == g.tp
        assert len({node[s] for s in g.slot_ids}) == 1, f"{g.group_id} spans nodes"
    assert Counter(g.pool_id for g in a.groups) == {p.pool_id: p.num_instances for p in pools}
    assert not a.unplaced
    assert len({g.group_id for g in a.groups}) == len(a.groups)


def min_moved(slots: list[Slot], current: list[Group], pools: list[PoolPlan]) -> int:
    """Exhaustive: keep the subset of current groups that moves least and still lets the rest
    of the plan pack onto the free slots."""
    want = Counter({p.tp: p.num_instances for p in pools})
    best = None
    for r in range(len(current) + 1):
        for kept in itertools.combinations(current, r):
            if any(Counter(g.tp for g in kept)[d] > want[d] for d in want):
                continue
            if any(g.tp not in want for g in kept):
                continue
            left = want - Counter(g.tp for g in kept)
            free = Counter(s.node for s in slots)
            for g in kept:
                free[next(s.node for s in slots if s.slot_id == g.slot_ids[0])] -= g.tp
            sizes = [d for d, n in left.items() for _ in range(n)]
            if packs(tuple(free.values()), sizes):
                moved = sum(g.tp for g in current if g not in kept)
                best = moved if best is None else min(best, moved)
    assert best is not None
    return best


def test_fresh_cluster_places_every_group_on_one_node() -> None:
    slots = slots_of({"n0": 8, "n1": 8, "n2": 4})
    pools = [pool("a", 8, 1), pool("b", 4, 2), pool("c", 2, 1), pool("d", 1, 2)]
    a = assign(slots, [], pools)
    check_valid(a, slots, pools)
    assert not a.moved_slot_ids and len(a.idle_slot_ids) == 0


def test_tau_only_change_retunes_in_place() -> None:
    slots = slots_of({"n0": 4})
    first = assign(slots, [], [pool("tp2-tau0.90-b8", 2, 2)])
    second = assign(slots, list(first.groups), [pool("tp2-tau0.70-b8", 2, 2)])
    assert not second.moved_slot_ids
    assert len(second.retuned_group_ids) == 2
    assert {g.slot_ids for g in second.groups} == {g.slot_ids for g in first.groups}


def test_shrinking_a_degree_moves_exactly_the_lower_bound() -> None:
    slots = slots_of({"n0": 8, "n1": 8})
    before = [pool("x", 2, 6), pool("y", 1, 4)]
    first = assign(slots, [], before)
    after = [pool("x", 2, 4), pool("z", 4, 1), pool("y", 1, 4)]
    second = assign(slots, list(first.groups), after)
    check_valid(second, slots, after)
    assert len(second.moved_slot_ids) == 2 * (6 - 4)


def test_dead_slot_breaks_its_group_and_the_pool_is_refilled() -> None:
    slots = slots_of({"n0": 4, "n1": 4})
    first = assign(slots, [], [pool("x", 2, 2)])
    dead = first.groups[0].slot_ids[1]
    live = [s for s in slots if s.slot_id != dead]
    second = assign(live, list(first.groups), [pool("x", 2, 2)])
    check_valid(second, live, [pool("x", 2, 2)])
    assert dead not in {s for g in second.groups for s in g.slot_ids}


def test_fragmented_nodes_evict_the_fewest_slots() -> None:
    slots = slots_of({"n0": 4, "n1": 4})
    current = [  # one TP-1 group on each node blocks a TP-4 group everywhere
        Group("g0", "one", 1, ("n0/cuda:0",)),
        Group("g1", "one", 1, ("n1/cuda:0",)),
        Group("g2", "two", 2, ("n1/cuda:2", "n1/cuda:3")),
    ]
    pools = [pool("four", 4, 1), pool("one", 1, 2)]
    a = assign(slots, current, pools)
    check_valid(a, slots, pools)
    assert len(a.moved_slot_ids) == min_moved(slots, current, pools) == 3


def random_plan(rng: random.Random, slots: list[Slot], prefix: str) -> list[PoolPlan]:
    nodes = tuple(Counter(s.node for s in slots).values())
    while True:
        counts = {d: rng.randint(0, len(slots) // d // 2) for d in (4, 2, 1)}
        if packs(nodes, [d for d, n in counts.items() for _ in range(n)]):
            return [pool(f"{prefix}{d}", d, n) for d, n in counts.items() if n]


def random_layout(rng: random.Random, slots: list[Slot], pools: list[PoolPlan]) -> list[Group]:
    """Groups scattered at random (as an operator or an older planner might leave them)."""
    free = {n: [s.slot_id for s in slots if s.node == n] for n in {s.node for s in slots}}
    groups = []
    for p in pools:
        for i in range(p.num_instances):
            nodes = sorted(n for n, f in free.items() if len(f) >= p.tp)
            if not nodes:
                break
            chosen = rng.sample(free[node := rng.choice(nodes)], p.tp)
            free[node] = [s for s in free[node] if s not in chosen]
            groups.append(Group(f"{p.pool_id}-{i}", p.pool_id, p.tp, tuple(chosen)))
    return groups


@pytest.mark.parametrize("seed", range(40))
def test_moves_are_minimal_on_random_small_clusters(seed: int) -> None:
    rng = random.Random(seed)
    slots = slots_of({f"n{i}": rng.choice([2, 4, 4, 8]) for i in range(rng.randint(1, 3))})
    current = random_layout(rng, slots, random_plan(rng, slots, "p"))
    after = random_plan(rng, slots, rng.choice(["p", "q"]))
    a = assign(slots, current, after)
    check_valid(a, slots, after)
    assert len(a.moved_slot_ids) == min_moved(slots, current, after)
