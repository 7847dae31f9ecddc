"""Factories and an independent brute-force oracle for the planner tests.

The oracle enumerates every integer vector of instance counts that fits the nodes, solves the
remaining LP (routing) for each with GLOP, and returns the best objective. It re-states the
model from its documentation (planner/model.py) rather than calling it.
"""

from __future__ import annotations

from collections.abc import Iterator

from ortools.math_opt.python import mathopt

from common.costmodel import Coeffs, CostModel
from common.quality import QualityPoint, QualityProfile
from planner.capacity import CapacityTable
from planner.inputs import ConfigKey, PlannerInput, SloClass

CURVE = ((0.9, 2.0, 0.80), (0.7, 4.0, 0.76), (0.5, 8.0, 0.66))  # τ, tokens/step, accuracy


def small_quality(curve: tuple[tuple[float, float, float], ...] = CURVE) -> QualityProfile:
    pts = [QualityPoint(t, acc, tps, 64 / tps) for t, tps, acc in curve]
    return QualityProfile(
        "toy", gen_length=64, block_length=16, num_problems=100, points={"dual": pts}
    )


def small_costs() -> CostModel:
    """TP 2 halves the per-token terms and trims the fixed one: faster, less per GPU."""
    return CostModel(
        {
            1: Coeffs(full=[10.0, 0.1, 0.05, 1e-4], reuse=[10.0, 0.1, 0.05, 1e-4]),
            2: Coeffs(full=[7.0, 0.05, 0.025, 5e-5], reuse=[7.0, 0.05, 0.025, 5e-5]),
        }
    )


def small_input(
    rates: tuple[float, float] = (1.0, 2.0), nodes: tuple[int, ...] = (4,), **kw: object
) -> PlannerInput:
    classes = (
        SloClass("tight", slo_ms=900.0, rate_rps=rates[0], weight=2.0),
        SloClass("loose", slo_ms=6000.0, rate_rps=rates[1]),
    )
    defaults: dict[str, object] = dict(
        tp_degrees=(1, 2), batch_sizes=(1, 4), utilisations=(0.5, 0.85), prompt_tokens=16
    )
    defaults.update(kw)
    return PlannerInput(classes, nodes, small_costs(), small_quality(), **defaults)  # type: ignore[arg-type]


def count_vectors(inp: PlannerInput, configs: list[ConfigKey]) -> Iterator[dict[ConfigKey, int]]:
    """Every instance-count vector whose TP groups can be packed onto the nodes."""

    def walk(i: int, left: int, chosen: dict[ConfigKey, int]) -> Iterator[dict[ConfigKey, int]]:
        if i == len(configs):
            sizes = [k.tp for k, n in chosen.items() for _ in range(n)]
            if packs(inp.gpus_per_node, sizes):
                yield dict(chosen)
            return
        k = configs[i]
        for n in range(left // k.tp + 1):
            chosen[k] = n
            yield from walk(i + 1, left - n * k.tp, chosen)
        del chosen[k]

    yield from walk(0, inp.num_gpus, {})


def packs(nodes: tuple[int, ...], sizes: list[int]) -> bool:
    """Can groups of these sizes sit on these nodes, no group split? (backtracking)"""
    free = list(nodes)
    sizes = sorted(sizes, reverse=True)
    if sum(sizes) > sum(free):
        return False

    def place(i: int) -> bool:
        if i == len(sizes):
            return True
        for j in range(len(free)):
            if free[j] >= sizes[i]:
                free[j] -= sizes[i]
                if place(i + 1):
                    return True
                free[j] += sizes[i]
        return False

    return place(0)


def objective_given_counts(
    inp: PlannerInput, table: CapacityTable, counts: dict[ConfigKey, int]
) -> float:
    """max over routing of Σ w λ p x − penalties, with the instance counts fixed.

    Solved with GLOP (not the HiGHS the planner uses), from the formulation as documented.
    """
    rates = [max(c.rate_rps, inp.min_rate_rps) for c in inp.classes]
    lp = mathopt.Model(name="oracle")
    x = {key: lp.add_variable(lb=0, ub=1) for key in table.cells if counts.get(key[1], 0) > 0}
    for c in range(len(inp.classes)):
        shed = [lp.add_variable(lb=0, ub=1)] if inp.allow_shed else []
        terms = [v for key, v in x.items() if key[0] == c] + shed
        if not terms:
            return float("-inf")  # the class must be served and nothing can serve it
        lp.add_linear_constraint(mathopt.fast_sum(terms) == 1)
    if not x:
        return -penalties(inp, counts)
    for k, n in counts.items():
        load = [rates[c] / (rho * table.cells[(c, kk, rho)].rate_rps) * v
                for (c, kk, rho), v in x.items() if kk == k]  # fmt: skip
        if load:
            lp.add_linear_constraint(mathopt.fast_sum(load) <= n)
    floor = inp.floor()
    lp.add_linear_constraint(
        mathopt.fast_sum(rates[c] * (table.accuracy[k] - floor) * v for (c, k, _), v in x.items())
        >= 0
    )
    lp.maximize(
        sum(
            inp.classes[c].weight * rates[c] * table.cells[key].attainment * v
            for key, v in x.items()
            for c in [key[0]]
        )  # fmt: skip
    )
    res = mathopt.solve(lp, mathopt.SolverType.GLOP)
    if res.termination.reason != mathopt.TerminationReason.OPTIMAL:
        return float("-inf")
    return float(res.objective_value()) - penalties(inp, counts)


def penalties(inp: PlannerInput, counts: dict[ConfigKey, int]) -> float:
    rates = [max(c.rate_rps, inp.min_rate_rps) for c in inp.classes]
    scale = sum(c.weight * r for c, r in zip(inp.classes, rates, strict=True)) / inp.num_gpus
    total = inp.gpu_cost * sum(k.tp * n for k, n in counts.items())
    for d in inp.tp_degrees:
        prev = sum(n for k, n in inp.current.items() if k.tp == d)
        new = sum(n for k, n in counts.items() if k.tp == d)
        total += inp.move_penalty * d * max(0, prev - new)
    for k, prev in inp.current.items():
        total += inp.retune_penalty * k.tp * max(0, prev - counts.get(k, 0))
    return scale * total


def brute_force(inp: PlannerInput, table: CapacityTable) -> tuple[float, dict[ConfigKey, int]]:
    best: tuple[float, dict[ConfigKey, int]] = (float("-inf"), {})
    for counts in count_vectors(inp, table.configs):
        value = objective_given_counts(inp, table, counts)
        if value > best[0]:
            best = (value, counts)
    return best
