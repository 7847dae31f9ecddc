"""Solve the planner MIP and turn the answer into a `PlanDecision`, or keep the previous one.

`plan(inp, previous)` never raises: invalid input, an infeasible model, a time limit without a
proven optimum, or a solver error all return `previous.kept(reason)` (status KEPT_PREVIOUS), or
a FAILED decision when there is no previous plan. A time-limited incumbent is used only when
there is nothing to keep (status FEASIBLE).
"""

from __future__ import annotations

import time

from ortools.math_opt.python import mathopt

from planner.capacity import CapacityTable, cached_table
from planner.decision import PlanDecision, PlanStatus
from planner.extract import decision_from_solution
from planner.inputs import PlannerInput, validate
from planner.model import MipHandle, build_mip
from planner.stages import Outcome, SolveOptions, solve_staged

__all__ = ["SolveOptions", "plan"]


def plan(
    inp: PlannerInput, previous: PlanDecision | None = None, options: SolveOptions | None = None
) -> PlanDecision:
    opts = options or SolveOptions()
    start = time.perf_counter()
    problems = validate(inp)
    if problems:
        return _fallback(previous, "invalid input: " + "; ".join(problems))
    try:
        table = cached_table(inp)
        problems = _unservable(inp, table)
        if problems:
            return _fallback(previous, "infeasible input: " + "; ".join(problems))
        handle = build_mip(inp, table)
    except Exception as e:  # a broken profile must not take the planner down
        return _fallback(previous, f"model build error: {type(e).__name__}: {e}")
    build_ms = _ms_since(start)
    try:
        outcome = solve_staged(handle, opts, inp.current)
    except Exception as e:
        return _fallback(previous, f"solver error: {type(e).__name__}: {e}", build_ms)
    solve_ms = _ms_since(start) - build_ms
    return _decide(inp, handle, outcome, previous, opts, build_ms, solve_ms)


def _unservable(inp: PlannerInput, table: CapacityTable) -> list[str]:
    """Reasons no plan can serve the load at all (a solve would only shed everything)."""
    best = max(table.accuracy.values(), default=0.0)
    problems = []
    if best < inp.floor():
        problems.append(f"accuracy floor {inp.floor():.4f} above the best τ's {best:.4f}")
    if not inp.allow_shed:
        served = {c for c, _, _ in table.cells}
        missing = [c.name for i, c in enumerate(inp.classes) if i not in served]
        if missing:
            problems.append(f"no configuration meets the SLO of {', '.join(missing)}")
    return problems


def _decide(
    inp: PlannerInput, handle: MipHandle, out: Outcome, previous: PlanDecision | None,
    opts: SolveOptions, build_ms: float, solve_ms: float,
) -> PlanDecision:  # fmt: skip
    stages = "+".join(out.stages)
    if out.reason == mathopt.TerminationReason.OPTIMAL:
        why = f"optimal within {out.gap:.3%} ({stages})"
        return decision_from_solution(inp, handle, out, PlanStatus.OPTIMAL, why, build_ms, solve_ms)
    if out.reason == mathopt.TerminationReason.FEASIBLE:
        why = (
            f"time limit {opts.time_limit_s:g} s hit ({stages}, {solve_ms:.0f} ms); "
            f"best plan found only proven within {out.gap:.2%}"
        )
        if previous is None:
            return decision_from_solution(
                inp, handle, out, PlanStatus.FEASIBLE, why, build_ms, solve_ms
            )
        return previous.kept(why, build_ms, solve_ms)
    why = f"solver: {out.reason.name.lower()} ({stages}, {solve_ms:.0f} ms) {out.detail}".strip()
    return _fallback(previous, why, build_ms, solve_ms)


def _fallback(
    previous: PlanDecision | None, reason: str, build_ms: float = 0.0, solve_ms: float = 0.0
) -> PlanDecision:
    if previous is None:
        return PlanDecision(PlanStatus.FAILED, reason, build_ms=build_ms, solve_ms=solve_ms)
    return previous.kept(reason, build_ms, solve_ms)


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
