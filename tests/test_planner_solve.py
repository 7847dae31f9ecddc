"""The planner MIP: exact on toy instances, accuracy floor, hysteresis, fallbacks."""

from __future__ import annotations

import functools
import random
from dataclasses import replace
from typing import Any

import pytest

from common.quality import QualityProfile
from planner.capacity import build_table
from planner.decision import PlanDecision, PlanStatus
from planner.inputs import ConfigKey, PlannerInput
from planner.solve import SolveOptions, plan
from tests.planner_helpers import brute_force, small_input, small_quality

EXACT = SolveOptions(relative_gap=1e-9, time_limit_s=10.0)

CASES = {
    "one-node": dict(tau_ladder=(0.9, 0.5), rates=(8.0, 20.0)),
    "two-nodes-no-tp4": dict(
        tau_ladder=(0.9, 0.5), rates=(12.0, 6.0), nodes=(2, 2), tp_degrees=(1, 2, 4)
    ),
    "three-taus-odd-node": dict(
        tau_ladder=(0.9, 0.7, 0.5), rates=(9.0, 14.0), nodes=(3,), batch_sizes=(1, 4, 8)
    ),
}


@functools.cache
def _brute_force_optimum(case: str) -> float:
    inp = small_input(**CASES[case])  # type: ignore[arg-type]
    return brute_force(inp, build_table(inp, prune=False))[0]  # unpruned: pruning is exact


# "lean": no pools beyond the LP's, so the restricted MIP leaves most out and the reduced-cost
# bound (and, where it is not enough, the proof MIP) must prove the left-out pools useless.
# "guess-too-small": the restricted MIP first looks only for plans within 1e-7 of the LP bound,
# finds none, and must look again for any plan.
SOLVE_MODES = {
    "staged": replace(EXACT, staged=True),
    "lean": replace(EXACT, staged=True, num_extra_pools=0),
    "guess-too-small": replace(EXACT, staged=True, lp_gap_guess=1e-7),
    "cold": replace(EXACT, staged=False),
}


@pytest.mark.parametrize("mode", sorted(SOLVE_MODES))
@pytest.mark.parametrize("case", sorted(CASES))
def test_mip_finds_the_brute_force_optimum(case: str, mode: str) -> None:
    inp = small_input(**CASES[case])  # type: ignore[arg-type]
    best = _brute_force_optimum(case)
    d = plan(inp, options=SOLVE_MODES[mode])
    assert d.status == PlanStatus.OPTIMAL, d.reason
    assert d.objective == pytest.approx(best, rel=1e-7, abs=1e-7)
    assert d.gpus_used <= inp.num_gpus
    assert max(d.shed.values()) > 0  # overloaded: the instances are not trivial


def test_gscip_agrees_with_highs() -> None:
    inp = small_input(**CASES["three-taus-odd-node"])  # type: ignore[arg-type]
    a = plan(inp, options=EXACT)
    b = plan(inp, options=replace(EXACT, solver="gscip"))
    assert b.objective == pytest.approx(a.objective, rel=1e-6)


def test_routing_shares_add_up_and_respect_class_floors() -> None:
    inp = small_input(rates=(6.0, 12.0), tau_ladder=(0.9, 0.7, 0.5))
    inp = replace(inp, classes=(replace(inp.classes[0], tau_floor=0.7), inp.classes[1]))
    d = plan(inp, options=EXACT)
    for c in inp.classes:
        assert sum(d.routing[c.name].values()) + d.shed[c.name] == pytest.approx(1.0, abs=1e-5)
    assert all(ConfigKey.parse(p).tau >= 0.7 for p in d.routing["tight"])
    pools = {p.pool_id: p for p in d.pools}
    assert all(p in pools for r in d.routing.values() for p in r)
    assert all(pools[p].tau_floor >= 0.7 for p in d.routing["tight"])


def test_accuracy_floor_holds_in_every_plan() -> None:
    rng = random.Random(7)
    for _ in range(12):
        floor = rng.uniform(0.70, 0.80)
        inp = small_input(
            rates=(rng.uniform(0.5, 12), rng.uniform(0.5, 20)), tau_ladder=(0.9, 0.7, 0.5),
            accuracy_floor=floor, nodes=rng.choice([(4,), (2, 2), (8,)]),
        )  # fmt: skip
        d = plan(inp)
        assert d.status == PlanStatus.OPTIMAL, d.reason
        served = {c.name: c.rate_rps * (1 - d.shed[c.name]) for c in inp.classes}
        if sum(served.values()) > 1e-6:
            assert d.accuracy >= floor - 1e-6
            acc = sum(
                c.rate_rps * s * inp.quality.at(ConfigKey.parse(p).tau).accuracy
                for c in inp.classes
                for p, s in d.routing[c.name].items()
            ) / sum(served.values())
            assert acc >= floor - 1e-6


def _tied_input(**kw: Any) -> PlannerInput:
    """τ 0.9 and 0.8 with identical profiles, light load, free GPUs: many plans are optimal."""
    point = small_quality().curve()[0]
    twin = QualityProfile("twin", 64, 16, 100, {"dual": [point, replace(point, tau=0.8)]})
    inp = small_input(rates=(0.5, 0.5), tau_ladder=(0.9, 0.8), nodes=(8,))
    return replace(inp, quality=twin, **kw)


def _ties_of(free: PlanDecision) -> list[dict[ConfigKey, int]]:
    """Plans as good as `free`: its pools with τ swapped, and with an extra idle TP-2 group."""
    counts = free.instance_counts()
    swapped = {replace(k, tau=0.8 if k.tau == 0.9 else 0.9): n for k, n in counts.items()}
    spare = ConfigKey(2, 0.9, 1)
    extra = {**counts, spare: counts.get(spare, 0) + 1}
    return [swapped, extra]


def test_hysteresis_keeps_the_current_plan_when_plans_tie() -> None:
    free = plan(_tied_input(move_penalty=0.0, retune_penalty=0.0), options=EXACT)
    assert free.status == PlanStatus.OPTIMAL and free.gpus_used <= 6
    for current in _ties_of(free):
        d = plan(_tied_input(current=current), options=EXACT)
        assert d.status == PlanStatus.OPTIMAL, d.reason
        assert (d.moved_gpus, d.retuned_gpus) == (0, 0), (current, d.pools)
        assert d.instance_counts() == current
        assert d.goodput_rps == pytest.approx(free.goodput_rps, rel=1e-6)  # nothing given up


def test_hysteresis_reduces_moves_versus_no_penalty() -> None:
    free = plan(_tied_input(move_penalty=0.0, retune_penalty=0.0), options=EXACT)
    changed = {True: 0, False: 0}
    for current in _ties_of(free):
        for penalised in (True, False):
            off = {} if penalised else {"move_penalty": 0.0, "retune_penalty": 0.0}
            d = plan(_tied_input(current=current, **off), options=EXACT)
            changed[penalised] += d.moved_gpus + d.retuned_gpus
    assert changed[True] == 0
    assert changed[True] <= changed[False]


def test_hysteresis_does_not_block_a_needed_move() -> None:
    inp = small_input(rates=(8.0, 20.0), tau_ladder=(0.9,))
    stuck = {ConfigKey(1, 0.9, 1): 4}  # batch cap 1 everywhere: far below the optimum
    stay = plan(replace(inp, batch_sizes=(1,), tp_degrees=(1,)), options=EXACT)
    assert stay.instance_counts() == stuck
    d = plan(replace(inp, current=stuck), options=EXACT)
    assert d.moved_gpus + d.retuned_gpus > 0
    assert d.goodput_rps > 1.2 * stay.goodput_rps


def _previous() -> PlanDecision:
    d = plan(small_input(rates=(2.0, 4.0)))
    assert d.status == PlanStatus.OPTIMAL
    return d


def test_unreachable_accuracy_floor_keeps_the_previous_plan() -> None:
    prev = _previous()
    d = plan(small_input(accuracy_floor=0.95), previous=prev)
    assert d.status == PlanStatus.KEPT_PREVIOUS and "accuracy floor" in d.reason
    assert d.pools == prev.pools and d.routing == prev.routing
    assert plan(small_input(accuracy_floor=0.95)).status == PlanStatus.FAILED


def test_overload_without_shedding_is_infeasible_and_keeps_the_previous_plan() -> None:
    prev = _previous()
    d = plan(small_input(rates=(50.0, 80.0), allow_shed=False), previous=prev)
    assert d.status == PlanStatus.KEPT_PREVIOUS and "infeasible" in d.reason
    assert d.pools == prev.pools


def test_tiny_time_limit_keeps_the_previous_plan() -> None:
    prev = _previous()
    inp = small_input(
        rates=(9.0, 14.0), tau_ladder=(0.9, 0.7, 0.5), batch_sizes=(1, 2, 4, 8), nodes=(8, 8)
    )
    d = plan(inp, previous=prev, options=SolveOptions(time_limit_s=1e-6))
    assert d.status == PlanStatus.KEPT_PREVIOUS, d.reason
    assert d.pools == prev.pools


def test_invalid_input_and_broken_profile_keep_the_previous_plan() -> None:
    prev = _previous()
    bad = plan(small_input(tp_degrees=(2, 3)), previous=prev)
    assert bad.status == PlanStatus.KEPT_PREVIOUS and "divide" in bad.reason
    broken = replace(small_input(), quality=QualityProfile("x", 64, 16, 0, {"dual": []}))
    d = plan(broken, previous=prev)
    assert d.status == PlanStatus.KEPT_PREVIOUS and "error" in d.reason


def test_decision_round_trips_through_json() -> None:
    d = plan(small_input(rates=(3.0, 5.0), current={ConfigKey(1, 0.9, 4): 1}))
    again = PlanDecision.from_json(d.to_json())
    assert again == d
    assert again.instance_counts() == {
        ConfigKey(p.tp, p.tau, p.max_batch_size): p.num_instances for p in d.pools
    }
