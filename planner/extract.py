"""Read a solved MIP back into a `PlanDecision`: pools, routing, predictions, moves."""

from __future__ import annotations

from ortools.math_opt.python import mathopt

from planner.decision import PlanDecision, PlanStatus, PoolPlan
from planner.inputs import ConfigKey, PlannerInput
from planner.model import MipHandle
from planner.stages import Outcome

EPS = 1e-7  # routing shares below this are solver noise


def decision_from_solution(
    inp: PlannerInput, h: MipHandle, out: Outcome, status: PlanStatus,
    reason: str, build_ms: float, solve_ms: float,
) -> PlanDecision:  # fmt: skip
    assert out.values is not None
    values = out.values
    counts = {k: round(values[var]) for k, var in h.n.items()}
    routing, attainment, goodput, served, acc_sum = _routing(inp, h, values)
    return PlanDecision(
        status=status,
        reason=reason,
        pools=_pools(inp, counts, routing),
        routing={c: {p: round(s, 6) for p, s in r.items()} for c, r in routing.items()},
        shed={inp.classes[c].name: round(values[u], 6) for c, u in h.shed.items()},
        attainment={c: round(a, 6) for c, a in attainment.items()},
        accuracy=acc_sum / served if served > 0 else 0.0,
        goodput_rps=goodput,
        objective=out.primal,
        gap=out.gap,
        num_gpus=inp.num_gpus,
        moved_gpus=moved_gpus(inp, counts),
        retuned_gpus=retuned_gpus(inp, counts),
        build_ms=build_ms,
        solve_ms=solve_ms,
        model_size=h.size(),
    )


def _routing(
    inp: PlannerInput, h: MipHandle, values: dict[mathopt.Variable, float]
) -> tuple[dict[str, dict[str, float]], dict[str, float], float, float, float]:
    routing: dict[str, dict[str, float]] = {c.name: {} for c in inp.classes}
    attainment = {c.name: 0.0 for c in inp.classes}
    goodput = served = acc_sum = 0.0
    for (c, k, rho), var in h.x.items():
        share = values[var]
        if share < EPS:
            continue
        name, cell = inp.classes[c].name, h.table.cells[(c, k, rho)]
        routing[name][k.pool_id] = routing[name].get(k.pool_id, 0.0) + share
        attainment[name] += cell.attainment * share
        goodput += inp.classes[c].rate_rps * cell.attainment * share
        served += h.rates_rps[c] * share
        acc_sum += h.rates_rps[c] * h.table.accuracy[k] * share
    return routing, attainment, goodput, served, acc_sum


def _pools(
    inp: PlannerInput, counts: dict[ConfigKey, int], routing: dict[str, dict[str, float]]
) -> tuple[PoolPlan, ...]:
    pools = []
    for k, n in sorted(counts.items(), key=lambda kv: (kv[0].tp, -kv[0].tau, kv[0].batch_size)):
        if n > 0:
            floor = tau_floor(inp, k, routing)
            pools.append(PoolPlan(k.pool_id, k.tp, k.tau, floor, n, k.batch_size))
    return tuple(pools)


def tau_floor(inp: PlannerInput, k: ConfigKey, routing: dict[str, dict[str, float]]) -> float:
    """How low deadline-aware τ control may go in pool k.

    Not below any routed class's own floor, nor below the lowest τ whose accuracy alone meets
    the plan's accuracy floor, and never above the pool's default τ (a pool the plan runs at
    a low τ on purpose, balanced by others in the load-weighted budget, stays at that τ).
    """
    class_floor = max(
        (c.tau_floor for c in inp.classes if routing[c.name].get(k.pool_id, 0.0) > 0),
        default=0.0,
    )
    ok = [t for t in inp.taus() if inp.quality.at(t, inp.cache_mode).accuracy >= inp.floor()]
    return min(k.tau, max(class_floor, min(ok, default=k.tau)))


def moved_gpus(inp: PlannerInput, counts: dict[ConfigKey, int]) -> int:
    """GPUs in TP groups the plan tears down: Σ_d d · max(0, N_prev[d] − N[d])."""
    total = 0
    for d in {k.tp for k in inp.current} | set(inp.tp_degrees):
        prev = sum(v for k, v in inp.current.items() if k.tp == d)
        new = sum(v for k, v in counts.items() if k.tp == d)
        total += d * max(0, prev - new)
    return total


def retuned_gpus(inp: PlannerInput, counts: dict[ConfigKey, int]) -> int:
    """GPUs whose group survives but changes pool τ."""
    left = sum(k.tp * max(0, v - counts.get(k, 0)) for k, v in inp.current.items())
    return left - moved_gpus(inp, counts)
