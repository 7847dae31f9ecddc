"""How the MIP is solved: LP bound → restricted MIP → proof MIP → (rarely) the full MIP.

HiGHS proves small instances of this model slowly from a cold start (most of the time goes to
root heuristics and cuts), and quickly once it holds a good incumbent and tight bounds. So:
 1. LP relaxation: an upper bound UB on the MIP optimum, which pools the LP wants, and every
    variable's reduced cost (each pool's d_k ≤ 0: the LP sits at n_k = 0 for every pool it
    leaves out).
 2. Restricted MIP over the LP's pools, the pools with the smallest |d_k|, and the pools the
    current plan runs (all others fixed to 0), looking only for plans within `lp_gap_guess`
    of UB (planner/tighten.py narrows the variables to where such plans lie). If that look
    keeps no plan that close (HiGHS keeps one below the cutoff when it meets one), a wider
    look: `wider_gap_guess` of UB, and the `fillers_per_degree` best further pools of each TP
    degree offered too. Only if neither finds any plan, again for any plan. A plan of value
    LB, in a few ms (the wider look: up to a few hundred).
 3. A bound on the full optimum: a plan either uses only offered pools (≤ the restricted MIP's
    dual bound) or runs ≥ 1 instance of some left-out pool k (≤ UB + d_k, LP duality). If the
    larger of these is within the gap of LB, done.
 4. Else the proof MIP: every pool, every variable narrowed to where a plan worth more than
    LB · (1 + gap) can put it (pools with UB + d_k below that are fixed to 0: reduced-cost
    fixing), and such plans only (HiGHS's cutoff). Its dual bound (or that target, whichever
    is larger) bounds the full optimum. Only if that fails, solve the full MIP, hinted.
A re-plan first prices the plan running now and keeps it while it is proven within the gap
(planner/current.py). Narrowing is skipped when the target lies over 1 % below UB.
Every stage shares one time limit. The model is mutated for each stage and restored.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from ortools.math_opt.python import mathopt

from planner.current import price_counts
from planner.inputs import ConfigKey
from planner.model import MipHandle
from planner.tighten import Priced, narrowed, priced

Values = dict[mathopt.Variable, float]
OK = (mathopt.TerminationReason.OPTIMAL, mathopt.TerminationReason.FEASIBLE)
PROOF_SHARE = 0.999  # of the gap: the proof stage proves LB within 0.999 · gap
# Narrow only when the target is within this share of the LP bound: further below, the ranges
# barely shrink, and on small clusters (LP gaps of 2-3 %) narrowing made HiGHS slower.
NARROW_WITHIN = 0.01


HIGHS = mathopt.SolverType.HIGHS
SOLVERS = {"highs": HIGHS, "gscip": mathopt.SolverType.GSCIP}


@dataclass(frozen=True, slots=True)
class SolveOptions:
    time_limit_s: float = 1.0  # all stages together
    relative_gap: float = 1e-3  # 0.1 %: stop once the plan is proven this close to optimal
    solver: str = "highs"  # "gscip" as a cross-check; never CP-SAT (it rounds continuous vars)
    num_extra_pools: int = 8  # pools beyond the LP's support in the restricted MIP
    lp_gap_guess: float = 0.005  # the restricted MIP first looks only this far below the LP
    wider_gap_guess: float = 0.01  # if that finds nothing there, a wider look goes this far
    fillers_per_degree: int = 2  # pools per TP degree the wider look adds (planner docs)
    staged: bool = True  # False: one cold full-MIP solve (for comparison and tests)

    @property
    def solver_type(self) -> mathopt.SolverType:
        return SOLVERS[self.solver]


@dataclass(slots=True)
class Outcome:
    reason: mathopt.TerminationReason
    detail: str
    values: Values | None = None
    primal: float = 0.0
    dual_bound: float = float("inf")
    stages: list[str] = field(default_factory=list)

    @property
    def gap(self) -> float:
        return abs(self.dual_bound - self.primal) / max(abs(self.primal), 1e-9)


@dataclass(slots=True)
class Relaxation:
    """The LP relaxation's answer: the bound, the instance counts and every reduced cost."""

    upper: float  # UB: no plan beats this
    counts: dict[ConfigKey, float]  # n_k in the LP optimum
    reduced: dict[ConfigKey, float]  # d_k ≤ 0 where n_k = 0 (a maximisation)
    priced: list[Priced]  # every variable's reduced cost and bounds, for planner/tighten.py

    def bound_if_used(self, k: ConfigKey) -> float:
        """No plan running ≥ 1 instance of k (where the LP has none) beats UB + d_k."""
        return self.upper + min(self.reduced[k], 0.0)


def solve_staged(
    h: MipHandle, opts: SolveOptions, current: Mapping[ConfigKey, int] | None = None
) -> Outcome:
    """Solve `h`; `current` is the plan running now (its pools are always offered to the
    restricted MIP, and it is kept whenever it is proven within the gap: planner/current.py)."""
    deadline = time.perf_counter() + opts.time_limit_s
    if not opts.staged:
        return _full(h, opts, deadline, None, Outcome(mathopt.TerminationReason.OTHER_ERROR, ""))
    out = Outcome(mathopt.TerminationReason.OTHER_ERROR, "", stages=["lp"])
    lp = _relaxation(h, opts, deadline)
    if isinstance(lp, mathopt.TerminationReason):
        return Outcome(lp, f"the LP relaxation is {lp.name.lower()}", stages=["lp"])
    out.dual_bound = lp.upper
    now = price_counts(h, current or {}, _params(opts, deadline, gap=False))
    if now is not None:
        out.values, out.primal = now
        out.stages.append("current")
    offered = _pools_to_offer(h, lp, opts, set(current or {}))
    for stage, pools, floor in _stages(h, opts, lp, offered, out):
        if _proven(out, opts.relative_gap, now):
            return out
        if time.perf_counter() >= deadline:
            return _expired(out)
        _restricted(h, opts, deadline, pools, lp, out, stage, floor)
    if _proven(out, opts.relative_gap, now):
        return out
    if time.perf_counter() >= deadline:
        return _expired(out)
    out = _full(h, opts, deadline, out.values, out)
    if out.reason in OK:
        _proven(out, opts.relative_gap, now)  # also prefers the current plan if it qualifies
    return out


def _stages(
    h: MipHandle, opts: SolveOptions, lp: Relaxation, offered: set[ConfigKey], out: Outcome
) -> Iterator[tuple[str, set[ConfigKey], float | None]]:
    """(stage, pools offered, floor) in turn, each decided once the one before has run."""
    guess = lp.upper - opts.lp_gap_guess * abs(lp.upper)
    if out.values is None or out.primal < guess:  # plans near the LP bound first
        yield "restricted", offered, guess
    if out.values is None or out.primal < guess:  # lower, or with a filler pool not offered
        yield "wider", offered | _fillers(h, lp, offered, opts), _wider_floor(lp, opts, out)
    if out.values is None:  # none at all yet: any plan
        yield "restricted", offered, None
    # With a plan in hand the proof MIP improves on it: an un-narrowed look over the
    # restricted pools (RENS/RINS on) costs more and often misses the optimum's pools anyway.
    if out.values is not None:
        yield "proof", set(h.n), _proof_target(out, opts.relative_gap)


def _proven(out: Outcome, gap: float, now: tuple[Values, float] | None) -> bool:
    """Is the best plan proven within the gap? If so, and the plan running now (`now`) is too,
    answer with that one instead: a re-plan moves only for a gain the gap cannot explain."""
    if out.values is None or out.gap > gap:
        return False
    stage = out.stages[-1]
    if now is not None and out.values is not now[0]:
        values, primal = out.values, out.primal
        out.values, out.primal = now
        if out.gap > gap:
            out.values, out.primal = values, primal
        else:
            stage = "current"
    out.reason, out.detail = mathopt.TerminationReason.OPTIMAL, f"{stage} plan ≤ gap"
    return True


def _expired(out: Outcome) -> Outcome:
    found = out.values is not None
    out.reason = (
        mathopt.TerminationReason.FEASIBLE if found else mathopt.TerminationReason.NO_SOLUTION_FOUND
    )
    out.detail = "time limit"
    return out


def _params(
    opts: SolveOptions, deadline: float, gap: bool = True, cutoff: float | None = None,
    sub_mips: bool = False,
) -> mathopt.SolveParameters:  # fmt: skip
    """`cutoff`: only plans worth more than this are wanted (the MIP's nodes bounded at or below
    it are dropped, and its dual bound is then only valid above it). `sub_mips`: let HiGHS run
    RENS and RINS at the root (they fix the counts the LP has whole and solve the rest): worth
    it only while there is no incumbent and no narrowing (which finds one faster)."""
    left_s = max(deadline - time.perf_counter(), 1e-3)
    p = mathopt.SolveParameters(
        time_limit=timedelta(seconds=left_s),
        relative_gap_tolerance=opts.relative_gap if gap else None,
        absolute_gap_tolerance=0.0 if gap else None,
    )
    if opts.solver == "highs":
        # Restarts and this root heuristic cost more than they find here.
        for name in ("mip_allow_restart", "mip_heuristic_run_root_reduced_cost"):
            p.highs.bool_options[name] = False
        for name in ("mip_heuristic_run_rens", "mip_heuristic_run_rins"):
            p.highs.bool_options[name] = sub_mips
        if cutoff is not None and cutoff > 0:
            # MathOpt has no cutoff for HiGHS; HiGHS's objective_bound is one in the sense HiGHS
            # minimises internally, −objective (ERGO-Code/HiGHS#2473). For a positive cutoff the
            # other reading (a maximisation bound of −cutoff < 0) would drop nothing we want.
            p.highs.double_options["objective_bound"] = -cutoff
    return p


def _relaxation(
    h: MipHandle, opts: SolveOptions, deadline: float
) -> Relaxation | mathopt.TerminationReason:
    for n in h.n.values():
        n.integer = False
    # Read back the counts' values and every reduced cost, but no row duals: building Python
    # objects for every x's value and every row's dual costs MathOpt more than the LP takes.
    counts = mathopt.SparseVectorFilter(filtered_items=h.n.values())
    only_counts = mathopt.ModelSolveParameters(
        variable_values_filter=counts,
        dual_values_filter=mathopt.SparseVectorFilter(filtered_items=()),
    )  # fmt: skip
    try:  # HiGHS for the LP whatever the MIP solver: its LP answers carry reduced costs
        params = _params(opts, deadline, gap=False)
        res = mathopt.solve(h.model, HIGHS, params=params, model_params=only_counts)
    finally:
        for n in h.n.values():
            n.integer = True
    if res.termination.reason != mathopt.TerminationReason.OPTIMAL:
        return res.termination.reason
    values, reduced = res.variable_values(), res.reduced_costs()
    return Relaxation(
        res.objective_value(),
        {k: values[n] for k, n in h.n.items()},
        {k: reduced[n] for k, n in h.n.items()},
        priced(reduced),
    )


def _pools_to_offer(
    h: MipHandle, lp: Relaxation, opts: SolveOptions, keep: set[ConfigKey]
) -> set[ConfigKey]:
    support = {k for k in h.n if lp.counts[k] > 1e-6} | (keep & set(h.n))
    others = sorted((abs(lp.reduced[k]), k) for k in h.n if k not in support)
    return support | {k for _, k in others[: opts.num_extra_pools]}


def _fillers(
    h: MipHandle, lp: Relaxation, offered: set[ConfigKey], opts: SolveOptions
) -> set[ConfigKey]:
    """The pools of each TP degree outside `offered` with the smallest |d_k|: an optimum that
    the LP bound overstates by over `lp_gap_guess` tends to fill its last GPUs with one or two
    small-TP instances that rank past the offered pools by reduced cost."""
    others = sorted((abs(lp.reduced[k]), k) for k in h.n if k not in offered)
    out: set[ConfigKey] = set()
    for d in {k.tp for k in h.n}:
        out |= {k for _, k in [o for o in others if o[1].tp == d][: opts.fillers_per_degree]}
    return out


def _wider_floor(lp: Relaxation, opts: SolveOptions, out: Outcome) -> float:
    """The wider look wants plans within `wider_gap_guess` of UB, and better than the plan in
    hand by more than the gap (narrowing then cuts closer)."""
    floor = lp.upper - opts.wider_gap_guess * abs(lp.upper)
    return floor if out.values is None else max(floor, _proof_target(out, opts.relative_gap))


def _restricted(
    h: MipHandle, opts: SolveOptions, deadline: float, offered: set[ConfigKey],
    lp: Relaxation, out: Outcome, stage: str, floor: float | None,
) -> None:  # fmt: skip
    """Solve with the pools outside `offered` fixed to 0, looking only for plans worth more
    than `floor` (planner/tighten.py) if one is given; keep the plan if it is the best yet and
    set out.dual_bound to the bound on the full optimum (module docstring, step 3)."""
    out.stages.append(stage)
    sub_mips = floor is None
    params = _params(opts, deadline, cutoff=floor, sub_mips=sub_mips)
    slack = lp.upper - floor if floor is not None else math.inf
    with narrowed(lp.priced if slack <= NARROW_WITHIN * abs(lp.upper) else [], slack):
        upper = {k: n.upper_bound for k, n in h.n.items()}
        for k, n in h.n.items():
            if k not in offered:
                n.upper_bound = 0
        try:
            res = mathopt.solve(
                h.model, opts.solver_type, params=params, model_params=_hint(h, out.values)
            )
        finally:
            for k, n in h.n.items():
                n.upper_bound = upper[k]
    reason = res.termination.reason
    if floor is not None and reason == mathopt.TerminationReason.INFEASIBLE:
        inside = floor  # no plan within the offered pools beats the floor
    elif reason not in OK:
        return
    else:
        if out.values is None or res.objective_value() >= out.primal:
            out.values, out.primal = res.variable_values(), res.objective_value()
        dual = res.termination.objective_bounds.dual_bound
        inside = dual if floor is None else max(dual, floor)
    left_out = [lp.bound_if_used(k) for k in h.n if k not in offered]
    out.dual_bound = min(out.dual_bound, lp.upper, max([inside, *left_out]))


def _proof_target(out: Outcome, gap: float) -> float:
    """A plan this good would be worth finding: a hair under LB · (1 + gap), so that proving
    nothing beats it proves the incumbent within the gap despite rounding."""
    return out.primal + PROOF_SHARE * gap * abs(out.primal)


def _hint(h: MipHandle, values: Values | None) -> mathopt.ModelSolveParameters | None:
    """The incumbent's instance counts, clipped to the current bounds (HiGHS rejects a hint
    outside them, and a narrowed stage may exclude the incumbent itself)."""
    if values is None:
        return None
    ints = {
        n: min(max(float(round(values[n])), n.lower_bound), n.upper_bound) for n in h.n.values()
    }
    return mathopt.ModelSolveParameters(solution_hints=[mathopt.SolutionHint(variable_values=ints)])


def _full(
    h: MipHandle, opts: SolveOptions, deadline: float, hint: Values | None, out: Outcome
) -> Outcome:
    out.stages.append("full")
    params = _params(opts, deadline, sub_mips=hint is None)
    res = mathopt.solve(h.model, opts.solver_type, params=params, model_params=_hint(h, hint))
    reason = res.termination.reason
    out.reason, out.detail = reason, res.termination.detail
    if reason in OK:
        out.dual_bound = min(out.dual_bound, res.termination.objective_bounds.dual_bound)
        if out.values is None or res.objective_value() >= out.primal:
            out.values, out.primal = res.variable_values(), res.objective_value()
    elif out.values is not None and reason == mathopt.TerminationReason.NO_SOLUTION_FOUND:
        out.reason = mathopt.TerminationReason.FEASIBLE  # the restricted plan still stands
    return out
