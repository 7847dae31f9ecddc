"""How the MIP is solved: LP bound → restricted MIP → widened MIP → (rarely) the full MIP.

HiGHS proves small instances of this model slowly from a cold start (most of the time goes to
root heuristics and cuts), and quickly once it holds a good incumbent. So:
 1. LP relaxation: an upper bound UB on the MIP optimum, which pools the LP wants, and each
    pool's reduced cost d_k (≤ 0: the LP sits at n_k = 0 for every pool it leaves out).
 2. Restricted MIP over the LP's pools, the pools with the smallest |d_k|, and the pools the
    current plan runs (all others fixed to 0): a plan of value LB, in a few ms.
 3. A bound on the full optimum: a plan either uses only offered pools (≤ the restricted MIP's
    dual bound) or runs ≥ 1 instance of some left-out pool k (≤ UB + d_k, LP duality). If the
    larger of these is within the gap of LB, done.
 4. Else widen: offer every left-out pool with UB + d_k above LB · (1 + gap) too (reduced-cost
    fixing: the rest cannot beat LB by more than the gap) and solve again, hinted with the
    restricted plan. The widened MIP is the full MIP minus pools proven useless, so a proven
    optimum of it is proven for the full MIP. Only if that fails, solve the full MIP.
Every stage shares one time limit. The model is mutated for stages 1, 2 and 4 and restored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta

from ortools.math_opt.python import mathopt

from planner.inputs import ConfigKey
from planner.model import MipHandle

Values = dict[mathopt.Variable, float]
OK = (mathopt.TerminationReason.OPTIMAL, mathopt.TerminationReason.FEASIBLE)


HIGHS = mathopt.SolverType.HIGHS
SOLVERS = {"highs": HIGHS, "gscip": mathopt.SolverType.GSCIP}


@dataclass(frozen=True, slots=True)
class SolveOptions:
    time_limit_s: float = 1.0  # all stages together
    relative_gap: float = 1e-3  # 0.1 %: stop once the plan is proven this close to optimal
    solver: str = "highs"  # "gscip" as a cross-check; never CP-SAT (it rounds continuous vars)
    num_extra_pools: int = 8  # pools beyond the LP's support in the restricted MIP
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
    """The LP relaxation's answer, read back for the instance counts only."""

    upper: float  # UB: no plan beats this
    counts: dict[ConfigKey, float]  # n_k in the LP optimum
    reduced: dict[ConfigKey, float]  # d_k ≤ 0 where n_k = 0 (a maximisation)

    def bound_if_used(self, k: ConfigKey) -> float:
        """No plan running ≥ 1 instance of k (where the LP has none) beats UB + d_k."""
        return self.upper + min(self.reduced[k], 0.0)


def solve_staged(h: MipHandle, opts: SolveOptions, keep: set[ConfigKey]) -> Outcome:
    """Solve `h`; `keep` are pools always offered to the restricted MIP (the current plan)."""
    deadline = time.perf_counter() + opts.time_limit_s
    if not opts.staged:
        return _full(h, opts, deadline, None, Outcome(mathopt.TerminationReason.OTHER_ERROR, ""))
    out = Outcome(mathopt.TerminationReason.OTHER_ERROR, "", stages=["lp"])
    lp = _relaxation(h, opts, deadline)
    if isinstance(lp, mathopt.TerminationReason):
        return Outcome(lp, f"the LP relaxation is {lp.name.lower()}", stages=["lp"])
    offered = _pools_to_offer(h, lp, opts, keep)
    for stage in ("restricted", "widened"):
        if time.perf_counter() >= deadline:
            return _expired(out)
        if stage == "widened":
            wider = offered | _unfixed(h, lp, out, opts.relative_gap)
            if wider == offered or len(wider) == len(h.n):
                break  # nothing to add, or nothing left out: that is the full MIP
            offered = wider
        _restricted(h, opts, deadline, offered, lp, out, stage)
        if out.values is not None and out.gap <= opts.relative_gap:
            out.reason, out.detail = mathopt.TerminationReason.OPTIMAL, f"{stage} plan ≤ gap"
            return out
    if time.perf_counter() >= deadline:
        return _expired(out)
    out = _full(h, opts, deadline, out.values, out)
    if out.reason == mathopt.TerminationReason.FEASIBLE and out.gap <= opts.relative_gap:
        out.reason = mathopt.TerminationReason.OPTIMAL  # proven within the tolerance after all
    return out


def _expired(out: Outcome) -> Outcome:
    found = out.values is not None
    out.reason = (
        mathopt.TerminationReason.FEASIBLE if found else mathopt.TerminationReason.NO_SOLUTION_FOUND
    )
    out.detail = "time limit"
    return out


def _params(opts: SolveOptions, deadline: float, gap: bool = True) -> mathopt.SolveParameters:
    left_s = max(deadline - time.perf_counter(), 1e-3)
    p = mathopt.SolveParameters(
        time_limit=timedelta(seconds=left_s),
        relative_gap_tolerance=opts.relative_gap if gap else None,
        absolute_gap_tolerance=0.0 if gap else None,
    )
    if opts.solver == "highs":
        # With an incumbent in hand these root heuristics cost more than they find here.
        for name in (
            "mip_allow_restart", "mip_heuristic_run_rens", "mip_heuristic_run_rins",
            "mip_heuristic_run_root_reduced_cost",
        ):  # fmt: skip
            p.highs.bool_options[name] = False
    return p


def _relaxation(
    h: MipHandle, opts: SolveOptions, deadline: float
) -> Relaxation | mathopt.TerminationReason:
    for n in h.n.values():
        n.integer = False
    # Read back only the counts: building Python objects for every x and every row's dual
    # costs MathOpt more than HiGHS takes to solve the LP.
    counts = mathopt.SparseVectorFilter(filtered_items=h.n.values())
    only_counts = mathopt.ModelSolveParameters(
        variable_values_filter=counts, reduced_costs_filter=counts,
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
    )


def _pools_to_offer(
    h: MipHandle, lp: Relaxation, opts: SolveOptions, keep: set[ConfigKey]
) -> set[ConfigKey]:
    support = {k for k in h.n if lp.counts[k] > 1e-6} | (keep & set(h.n))
    others = sorted((abs(lp.reduced[k]), k) for k in h.n if k not in support)
    return support | {k for _, k in others[: opts.num_extra_pools]}


def _unfixed(h: MipHandle, lp: Relaxation, out: Outcome, gap: float) -> set[ConfigKey]:
    """Pools a plan better than the incumbent by more than the gap might still run."""
    if out.values is None:
        return set(h.n)
    target = out.primal + gap * abs(out.primal)
    return {k for k in h.n if lp.bound_if_used(k) > target}


def _restricted(
    h: MipHandle, opts: SolveOptions, deadline: float, offered: set[ConfigKey],
    lp: Relaxation, out: Outcome, stage: str,
) -> None:  # fmt: skip
    """Solve with the pools outside `offered` fixed to 0; keep the plan if it is the best yet
    and set out.dual_bound to the bound on the full optimum (module docstring, step 3)."""
    out.stages.append(stage)
    upper = {k: n.upper_bound for k, n in h.n.items()}
    for k, n in h.n.items():
        if k not in offered:
            n.upper_bound = 0
    try:
        res = mathopt.solve(
            h.model, opts.solver_type, params=_params(opts, deadline),
            model_params=_hint(h, out.values),
        )  # fmt: skip
    finally:
        for k, n in h.n.items():
            n.upper_bound = upper[k]
    if res.termination.reason not in OK:
        return
    if out.values is None or res.objective_value() >= out.primal:
        out.values, out.primal = res.variable_values(), res.objective_value()
    left_out = [lp.bound_if_used(k) for k in h.n if k not in offered]
    inside = res.termination.objective_bounds.dual_bound
    out.dual_bound = min(out.dual_bound, lp.upper, max([inside, *left_out]))


def _hint(h: MipHandle, values: Values | None) -> mathopt.ModelSolveParameters | None:
    if values is None:
        return None
    ints = {n: float(round(values[n])) for n in h.n.values()}
    return mathopt.ModelSolveParameters(solution_hints=[mathopt.SolutionHint(variable_values=ints)])


def _full(
    h: MipHandle, opts: SolveOptions, deadline: float, hint: Values | None, out: Outcome
) -> Outcome:
    out.stages.append("full")
    res = mathopt.solve(
        h.model, opts.solver_type, params=_params(opts, deadline), model_params=_hint(h, hint)
    )
    reason = res.termination.reason
    out.reason, out.detail = reason, res.termination.detail
    if reason in OK:
        out.dual_bound = min(out.dual_bound, res.termination.objective_bounds.dual_bound)
        if out.values is None or res.objective_value() >= out.primal:
            out.values, out.primal = res.variable_values(), res.objective_value()
    elif out.values is not None and reason == mathopt.TerminationReason.NO_SOLUTION_FOUND:
        out.reason = mathopt.TerminationReason.FEASIBLE  # the restricted plan still stands
    return out
