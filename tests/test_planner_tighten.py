"""Reduced-cost bound tightening (planner/tighten.py): it keeps every plan above its target and
really narrows; and the staged solve that uses it still finds the brute-force optimum."""

from __future__ import annotations

import functools
import random
import time
from dataclasses import replace

import pytest
from ortools.math_opt.python import mathopt

from planner.bench import random_instance
from planner.capacity import build_table
from planner.decision import PlanStatus
from planner.inputs import PlannerInput
from planner.model import MipHandle, build_mip
from planner.solve import SolveOptions, plan
from planner.stages import Relaxation, _relaxation
from planner.tighten import narrowed
from tests.planner_helpers import brute_force, small_input

# two nodes of 2 GPUs, TP 1 and 2, overloaded: the LP splits instances and sits 0.4 % above the
# MIP optimum (more than the 0.1 % gap, so proving that gap takes more than the LP bound)
CASE = dict(tau_ladder=(0.9, 0.7, 0.5), rates=(9.0, 14.0), nodes=(2, 2), batch_sizes=(1, 4, 8))
EXACT = SolveOptions(relative_gap=1e-9, time_limit_s=10.0)


@functools.cache
def _optimum() -> float:
    inp = small_input(**CASE)  # type: ignore[arg-type]
    return brute_force(inp, build_table(inp, prune=False))[0]


def _lp(h: MipHandle) -> Relaxation:
    lp = _relaxation(h, EXACT, deadline=time.perf_counter() + 10.0)
    assert isinstance(lp, Relaxation)
    return lp


def _mip_within(h: MipHandle, lp: Relaxation, target: float) -> mathopt.SolveResult:
    """The MIP with every variable narrowed to where a plan worth more than `target` lies."""
    params = mathopt.SolveParameters(relative_gap_tolerance=1e-9, absolute_gap_tolerance=0.0)
    with narrowed(lp.priced, lp.upper - target) as count:
        assert count > 0
        return mathopt.solve(h.model, mathopt.SolverType.HIGHS, params=params)


@pytest.fixture
def handle() -> MipHandle:
    inp = small_input(**CASE)  # type: ignore[arg-type]
    return build_mip(inp, build_table(inp))


def test_the_case_has_an_integrality_gap(handle: MipHandle) -> None:
    assert _lp(handle).upper > _optimum() * (1 + 1e-3)  # else the next tests prove little


def test_narrowing_just_below_the_optimum_keeps_the_optimum(handle: MipHandle) -> None:
    res = _mip_within(handle, _lp(handle), _optimum() - 1e-6)
    assert res.termination.reason == mathopt.TerminationReason.OPTIMAL
    assert res.objective_value() == pytest.approx(_optimum(), rel=1e-7)


def test_narrowing_just_above_the_optimum_leaves_no_better_plan(handle: MipHandle) -> None:
    target = _optimum() + 1e-4
    res = _mip_within(handle, _lp(handle), target)
    if res.termination.reason == mathopt.TerminationReason.OPTIMAL:
        assert res.objective_value() <= target  # plans below the target may remain
    else:
        assert res.termination.reason == mathopt.TerminationReason.INFEASIBLE


def test_narrowing_fixes_pools_cuts_shares_and_restores_every_bound() -> None:
    inp = random_instance(random.Random(3), 64, num_classes=4)  # a bench-sized instance
    h = build_mip(inp, build_table(inp))
    lp = _lp(h)
    before = {v: (v.lower_bound, v.upper_bound) for v in h.model.variables()}
    with narrowed(lp.priced, 0.005 * lp.upper):  # the restricted MIP's first guess
        cut = [v for v in h.x.values() if v.upper_bound < 1.0]
        fixed = [n for n in h.n.values() if n.upper_bound == 0 < before[n][1]]
    assert len(cut) > len(h.x) / 2 and len(fixed) > len(h.n) / 3
    assert {v: (v.lower_bound, v.upper_bound) for v in h.model.variables()} == before


def test_narrowing_with_no_slack_leaves_only_the_lp_optimum_face(handle: MipHandle) -> None:
    lp = _lp(handle)
    with narrowed(lp.priced, 0.0):
        for it in lp.priced:
            if it.reduced < -1e-6:  # at its lower bound in the LP: may move only by the margin
                assert it.var.upper_bound - it.var.lower_bound <= 2e-6


# The staged solve with each way in: a guess of the LP gap that holds, one too small (the first
# restricted MIP finds nothing above it), and no extra pools (the proof MIP does the work).
MODES = {
    "default": EXACT,
    "guess-too-small": replace(EXACT, lp_gap_guess=1e-7),
    "lean": replace(EXACT, num_extra_pools=0),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_staged_solve_finds_the_brute_force_optimum(mode: str) -> None:
    d = plan(small_input(**CASE), options=MODES[mode])  # type: ignore[arg-type]
    assert d.status == PlanStatus.OPTIMAL, d.reason
    assert d.objective == pytest.approx(_optimum(), rel=1e-7, abs=1e-7)


def test_the_default_gap_proven_by_the_proof_stage_holds() -> None:
    """With no extra pools the restricted plan alone is not proven within 0.1 % here: the
    narrowed proof MIP (with HiGHS's cutoff) proves it, and the plan must really be that close."""
    opts = SolveOptions(relative_gap=1e-3, num_extra_pools=0)
    d = plan(small_input(**CASE), options=opts)  # type: ignore[arg-type]
    assert d.status == PlanStatus.OPTIMAL, d.reason
    assert "proof" in d.reason
    assert d.objective >= _optimum() * (1 - 1e-3) - 1e-9


def _bench_instance(seed: int, index: int) -> PlannerInput:
    """The `index`-th instance of `dilaserve bench-planner --sizes 64 --seed <seed>`."""
    rng = random.Random(seed)
    return [random_instance(rng, 64, num_classes=3 + i % 4) for i in range(index + 1)][-1]


def _within_gap_of_cold(inp: PlannerInput, objective: float) -> bool:
    cold = plan(inp, options=SolveOptions(relative_gap=1e-6, staged=False, time_limit_s=60.0))
    assert cold.status == PlanStatus.OPTIMAL, cold.reason
    return objective >= cold.objective * (1 - 1e-3) - 1e-9


def test_a_first_look_below_its_guess_goes_to_the_wider_look_then_the_proof() -> None:
    """The bench's 64-GPU instance (seed 0, 7th): the optimum lies 0.55 % below the LP bound
    and uses a TP-2 pool outside the restricted MIP's pools. The first look keeps a plan below
    its guess; the wider look, then the proof MIP, hinted with its plan, find and prove the
    optimum."""
    inp = _bench_instance(0, 6)
    d = plan(inp, options=SolveOptions(time_limit_s=10.0))
    assert d.status == PlanStatus.OPTIMAL, d.reason
    assert "(lp+restricted+wider+proof)" in d.reason
    assert _within_gap_of_cold(inp, d.objective)


def test_the_wider_look_finds_what_the_first_misses() -> None:
    """Seed 3, 17th instance: no plan within 0.5 % of the LP bound over the offered pools; the
    wider look (1 %, two more pools per TP degree) finds one that the bounds prove within the
    gap, so no proof MIP runs. Without the wider look the proof MIP has to find it."""
    inp = _bench_instance(3, 16)
    d = plan(inp, options=SolveOptions(time_limit_s=10.0))
    assert d.status == PlanStatus.OPTIMAL, d.reason
    assert d.reason.endswith("(lp+restricted+wider)"), d.reason
    assert _within_gap_of_cold(inp, d.objective)
