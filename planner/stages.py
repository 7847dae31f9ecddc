"""How the MIP is solved: LP bound → restricted MIP → (only if needed) the full MIP, warm-started.

HiGHS proves small instances of this model slowly from a cold start (most of the time goes to
root heuristics), and quickly once it holds a good incumbent. So:
 1. LP relaxation: an upper bound UB on the MIP optimum, and which pools the LP wants.
 2. Restricted MIP over the LP's pools, the pools with the smallest reduced costs, and the pools
    the current plan runs (all others fixed to 0): a feasible plan, value LB, in a few ms.
 3. If (UB − LB) / |LB| ≤ the gap tolerance, the restricted plan is proven within the gap of
    the full optimum: done. Otherwise solve the full MIP with the restricted plan as its hint.
Every stage shares one time limit. The model is mutated for stages 1–2 and restored.
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


SOLVERS = {"highs": mathopt.SolverType.HIGHS, "gscip": mathopt.SolverType.GSCIP}


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


def solve_staged(h: MipHandle, opts: SolveOptions, keep: set[ConfigKey]) -> Outcome:
    """Solve `h`; `keep` are pools always offered to the restricted MIP (the current plan)."""
    deadline = time.perf_counter() + opts.time_limit_s
    if not opts.staged:
        return _full(h, opts, deadline, None, Outcome(mathopt.TerminationReason.OTHER_ERROR, ""))
    out = Outcome(mathopt.TerminationReason.OTHER_ERROR, "", stages=["lp"])
    lp = _relaxation(h, opts, deadline)
    if lp.termination.reason != mathopt.TerminationReason.OPTIMAL:
        detail = f"the LP relaxation is {lp.termination.reason.name.lower()}"
        return Outcome(lp.termination.reason, detail, stages=["lp"])
    upper = lp.objective_value()
    if time.perf_counter() >= deadline:
        return _expired(out)
    out.stages.append("restricted")
    sub = _restricted(h, opts, deadline, _pools_to_offer(h, lp, opts, keep))
    if sub.termination.reason in OK:
        out.values, out.primal = sub.variable_values(), sub.objective_value()
        out.dual_bound = upper
        if out.gap <= opts.relative_gap:
            out.reason, out.detail = mathopt.TerminationReason.OPTIMAL, "restricted plan ≤ gap"
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


def _relaxation(h: MipHandle, opts: SolveOptions, deadline: float) -> mathopt.SolveResult:
    for n in h.n.values():
        n.integer = False
    try:  # HiGHS for the LP whatever the MIP solver: its LP answers carry reduced costs
        params = _params(opts, deadline, gap=False)
        return mathopt.solve(h.model, mathopt.SolverType.HIGHS, params=params)
    finally:
        for n in h.n.values():
            n.integer = True


def _pools_to_offer(
    h: MipHandle, lp: mathopt.SolveResult, opts: SolveOptions, keep: set[ConfigKey]
) -> set[ConfigKey]:
    values, reduced = lp.variable_values(), lp.reduced_costs()
    support = {k for k, n in h.n.items() if values[n] > 1e-6} | (keep & set(h.n))
    others = sorted((abs(reduced[n]), k) for k, n in h.n.items() if k not in support)
    return support | {k for _, k in others[: opts.num_extra_pools]}


def _restricted(
    h: MipHandle, opts: SolveOptions, deadline: float, offered: set[ConfigKey]
) -> mathopt.SolveResult:
    upper = {k: n.upper_bound for k, n in h.n.items()}
    for k, n in h.n.items():
        if k not in offered:
            n.upper_bound = 0
    try:
        return mathopt.solve(h.model, opts.solver_type, params=_params(opts, deadline))
    finally:
        for k, n in h.n.items():
            n.upper_bound = upper[k]


def _full(
    h: MipHandle, opts: SolveOptions, deadline: float, hint: Values | None, out: Outcome
) -> Outcome:
    out.stages.append("full")
    model_params = None
    if hint is not None:
        ints = {n: float(round(hint[n])) for n in h.n.values()}
        model_params = mathopt.ModelSolveParameters(
            solution_hints=[mathopt.SolutionHint(variable_values=ints)]
        )
    res = mathopt.solve(
        h.model, opts.solver_type, params=_params(opts, deadline), model_params=model_params
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
