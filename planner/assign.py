"""Map a plan's pools onto concrete slots (GPUs), moving as few as possible.

A slot is one GPU on one node; a group is the d slots of one TP-d instance, always on one node.
Given the live slots, the groups running now and the plan's pools:
 1. keep every intact group whose pool the plan still wants (up to the pool's count);
 2. re-label groups whose pool went away to a wanted pool of the same TP degree: a τ or batch-cap
    change needs no regroup (the worker applies it at its next step);
 3. release the rest (their slots are "moved"), then place the missing groups largest TP
    first, best fit by node (the node with the fewest free slots that still fit the group);
 4. if a group fits nowhere, evict the fewest slots of smaller kept groups on one node and
    place those again later (needed only when kept groups fragment the nodes).
Steps 1–2 keep min(prev[d], new[d]) groups of every degree d, so without fragmentation the
slots moved are exactly Σ_d d · max(0, prev[d] − new[d]), the least any assignment can move.
When fragmentation makes the greedy move more than that, a small exact MIP (planner/keepset.py)
picks which groups to keep and the greedy reruns with that choice; the better result wins.
For power-of-two degrees step 4 always succeeds when the plan satisfies the MIP's node rows.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from planner.decision import PoolPlan
from planner.keepset import best_keep_set

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")  # group ids must fit common/plan.py's pattern


@dataclass(frozen=True, slots=True)
class Slot:
    slot_id: str  # e.g. "n0/cuda:3" (common/plan.py)
    node: str
    device: int = 0  # accelerator index on its node, unique there; groups take the lowest free


@dataclass(frozen=True, slots=True)
class Group:
    group_id: str
    pool_id: str
    tp: int
    slot_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Assignment:
    groups: tuple[Group, ...]
    idle_slot_ids: tuple[str, ...]
    moved_slot_ids: tuple[str, ...]  # were in a group that is gone (torn down or broken)
    retuned_group_ids: tuple[str, ...]  # kept their slots, changed pool
    unplaced: dict[str, int] = field(default_factory=dict)  # pool → instances that did not fit


@dataclass(slots=True)
class _State:
    slots: dict[str, Slot]
    free: dict[str, set[str]]  # node → free slot ids
    kept: list[Group] = field(default_factory=list)
    moved: set[str] = field(default_factory=set)
    retuned: list[str] = field(default_factory=list)
    unplaced: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def assign(
    slots: Sequence[Slot], current: Sequence[Group], pools: Sequence[PoolPlan]
) -> Assignment:
    greedy = _assign(slots, current, pools, release=set())
    bound = _least_moves(slots, current, pools)
    if len(greedy.moved_slot_ids) <= bound:
        return greedy
    state = _State({s.slot_id: s for s in slots}, defaultdict(set))
    intact = [g for g in current if _intact(state, g)]
    wanted: dict[int, int] = defaultdict(int)
    for p in pools:
        wanted[p.tp] += p.num_instances
    node_slots = Counter(s.node for s in slots)
    keep = best_keep_set(
        node_slots, [(g.group_id, state.slots[g.slot_ids[0]].node, g.tp) for g in intact], wanted
    )
    if keep is None:
        return greedy
    exact = _assign(slots, current, pools, release={g.group_id for g in current} - keep)
    return exact if len(exact.moved_slot_ids) < len(greedy.moved_slot_ids) else greedy


def _least_moves(slots: Sequence[Slot], current: Sequence[Group], pools: Sequence[PoolPlan]) -> int:
    """Σ_d d · max(0, prev[d] − new[d]) over intact groups, plus every broken group's slots."""
    state = _State({s.slot_id: s for s in slots}, defaultdict(set))
    prev: Counter[int] = Counter(g.tp for g in current if _intact(state, g))
    broken = sum(s in state.slots for g in current if not _intact(state, g) for s in g.slot_ids)
    new: Counter[int] = Counter()
    for p in pools:
        new[p.tp] += p.num_instances
    return broken + sum(d * max(0, n - new[d]) for d, n in prev.items())


def _assign(
    slots: Sequence[Slot], current: Sequence[Group], pools: Sequence[PoolPlan], release: set[str]
) -> Assignment:
    state = _State({s.slot_id: s for s in slots}, defaultdict(set))
    for s in slots:
        state.free[s.node].add(s.slot_id)
    demand = {p.pool_id: p.num_instances for p in pools}
    tp_of = {p.pool_id: p.tp for p in pools}
    leftovers = _keep_intact(state, current, demand, tp_of, release)
    _retune_or_release(state, leftovers, demand, tp_of)
    pending = [(tp_of[p], p) for p, n in demand.items() for _ in range(n)]
    _place_all(state, pending)
    return _result(state)


def _keep_intact(
    state: _State, current: Sequence[Group], demand: dict[str, int], tp_of: dict[str, int],
    release: set[str],
) -> list[Group]:  # fmt: skip
    leftovers = []
    for g in sorted(current, key=lambda g: g.group_id):
        if not _intact(state, g) or g.group_id in release:
            state.moved |= {s for s in g.slot_ids if s in state.slots}
        elif demand.get(g.pool_id, 0) > 0 and tp_of[g.pool_id] == g.tp:
            _take(state, g)
            demand[g.pool_id] -= 1
        else:
            leftovers.append(g)
    return leftovers


def _retune_or_release(
    state: _State, leftovers: list[Group], demand: dict[str, int], tp_of: dict[str, int]
) -> None:
    for g in leftovers:
        pool = next((p for p in sorted(demand) if demand[p] > 0 and tp_of[p] == g.tp), None)
        if pool is None:
            state.moved |= set(g.slot_ids)
            continue
        _take(state, replace(g, pool_id=pool))
        state.retuned.append(g.group_id)
        demand[pool] -= 1


def _intact(state: _State, g: Group) -> bool:
    if len(g.slot_ids) != g.tp or not all(s in state.slots for s in g.slot_ids):
        return False
    return len({state.slots[s].node for s in g.slot_ids}) == 1


def _take(state: _State, g: Group) -> None:
    state.kept.append(g)
    state.free[state.slots[g.slot_ids[0]].node] -= set(g.slot_ids)


def _place_all(state: _State, pending: list[tuple[int, str]]) -> None:
    pending.sort(key=lambda tp_pool: (-tp_pool[0], tp_pool[1]))
    while pending:
        tp, pool = pending.pop(0)
        node = _best_fit(state, tp) or _evict_for(state, tp, pending)
        if node is None:
            state.unplaced[pool] += 1
            continue
        chosen = sorted(state.free[node], key=lambda s: (state.slots[s].device, s))[:tp]
        group_id = _ID_UNSAFE.sub("_", f"g-{node}-{state.slots[chosen[0]].device}")
        state.kept.append(Group(group_id, pool, tp, tuple(chosen)))
        state.free[node] -= set(chosen)


def _best_fit(state: _State, tp: int) -> str | None:
    fits = [(len(free), node) for node, free in state.free.items() if len(free) >= tp]
    return min(fits)[1] if fits else None


def _evict_for(state: _State, tp: int, pending: list[tuple[int, str]]) -> str | None:
    """Free `tp` slots on one node by evicting the fewest slots of smaller groups."""
    best: tuple[int, str, list[Group]] | None = None
    for node, free in state.free.items():
        smaller = [g for g in state.kept if g.tp < tp and state.slots[g.slot_ids[0]].node == node]
        evict = _cover(smaller, tp - len(free))
        cost = sum(g.tp for g in evict) if evict is not None else 0
        if evict is not None and (best is None or (cost, node) < (best[0], best[1])):
            best = (cost, node, evict)
    if best is None:
        return None
    for g in best[2]:
        state.kept.remove(g)
        state.free[best[1]] |= set(g.slot_ids)
        state.moved |= set(g.slot_ids)
        if g.group_id in state.retuned:
            state.retuned.remove(g.group_id)
        pending.append((g.tp, g.pool_id))
    pending.sort(key=lambda tp_pool: (-tp_pool[0], tp_pool[1]))
    return best[1]


def _cover(groups: list[Group], need: int) -> list[Group] | None:
    """Groups whose slots add up to ≥ need, few slots: largest that still fit first, then the
    smallest that closes the rest. None when all of them are not enough."""
    if sum(g.tp for g in groups) < need:
        return None
    chosen: list[Group] = []
    for g in sorted(groups, key=lambda g: (-g.tp, g.group_id)):
        if 0 < g.tp <= need:
            chosen.append(g)
            need -= g.tp
    for g in sorted(groups, key=lambda g: (g.tp, g.group_id)):
        if need <= 0:
            break
        if g not in chosen:
            chosen.append(g)
            need -= g.tp
    return chosen


def _result(state: _State) -> Assignment:
    used = {s for g in state.kept for s in g.slot_ids}
    return Assignment(
        groups=tuple(sorted(state.kept, key=lambda g: g.group_id)),
        idle_slot_ids=tuple(sorted(set(state.slots) - used)),
        moved_slot_ids=tuple(sorted(state.moved)),
        retuned_group_ids=tuple(sorted(state.retuned)),
        unplaced=dict(state.unplaced),
    )
