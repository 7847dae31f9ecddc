"""The planner MIP, built with OR-Tools MathOpt (solved with HiGHS in planner/solve.py).

Indices: classes c, configurations k = (TP degree d, default τ, batch cap b) (one pool each),
utilisation levels ρ (planner/capacity.py).
    n[k] ∈ ℤ≥0          instances of configuration k
    x[c,k,ρ] ∈ [0,1]    share of class c routed to pool k and planned at utilisation ρ (only
                        where c meets its SLO with p ≥ p_min and τ ≥ the class's τ floor;
                        elsewhere the variable does not exist)
    u[c] ∈ [0,1]        share of class c left unserved (only when shedding is allowed)
    r[d], q[k] ≥ 0      instances torn out of TP-d groups / out of configuration k
Constraints:
    routing    Σ_kρ x[c,k,ρ] + u[c] = 1                                   every class
    capacity   Σ_cρ λ_c x[c,k,ρ] / (ρ μ[c,k]) ≤ n[k]                      every pool k
               (load planned at level ρ occupies load/(ρμ) instances: the pool's load is
               cut into slices, each credited the attainment of its level)
    no pool    Σ_ρ x[c,k,ρ] ≤ n[k]             where class c needs < 1 instance of k (valid:
               x ≤ 1 ≤ n once n ≥ 1; tightens the LP bound on small clusters a lot)
    nodes      Σ_{d' ≥ d} d' N[d'] ≤ Σ_i d ⌊g_i / d⌋                     every TP degree d
               (N[d] = Σ n over configurations of degree d; exact for power-of-two degrees:
               groups never span nodes, and the smallest degree's row is the GPU budget)
    accuracy   Σ λ_c (a_k − A_min) x[c,k,ρ] ≥ 0                           served-load average
    moves      r[d] ≥ N_prev[d] − N[d];  q[k] ≥ n_prev[k] − n[k];  v[c,k] ≥ share_prev − Σ_ρ x
Objective (maximise; weighted SLO-meeting requests/s):
    Σ w_c λ_c p[c,k,ρ] x[c,k,ρ] − s·(m_move Σ d r[d] + m_retune Σ d q[k] + m_gpu Σ d n[k])
                                − m_route Σ w_c λ_c v[c,k]
with s = Σ w_c λ_c / G, the mean weighted rate per GPU, so penalties read as shares of a GPU.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ortools.math_opt.python import mathopt

from planner.capacity import CapacityTable, Cell
from planner.inputs import ConfigKey, PlannerInput


@dataclass(slots=True)
class MipHandle:
    model: mathopt.Model
    table: CapacityTable
    rates_rps: list[float]  # effective λ_c (idle classes lifted to min_rate_rps)
    n: dict[ConfigKey, mathopt.Variable]
    x: dict[Cell, mathopt.Variable]
    shed: dict[int, mathopt.Variable]
    penalty_scale: float

    def size(self) -> dict[str, int]:
        return {
            "integer_vars": len(self.n),
            "continuous_vars": self.model.get_num_variables() - len(self.n),
            "constraints": self.model.get_num_linear_constraints(),
        }


def build_mip(inp: PlannerInput, table: CapacityTable) -> MipHandle:
    model = mathopt.Model(name="dilaserve-plan")
    rates = [max(c.rate_rps, inp.min_rate_rps) for c in inp.classes]
    h = MipHandle(model, table, rates, {}, {}, {}, _penalty_scale(inp, rates))
    _add_variables(inp, h)
    _add_routing(inp, h)
    _add_capacity(h)
    _add_nodes(inp, h)
    _add_accuracy(inp, h)
    goodput = mathopt.fast_sum(
        inp.classes[c].weight * rates[c] * table.cells[(c, k, rho)].attainment * var
        for (c, k, rho), var in h.x.items()
    )
    model.maximize(goodput - h.penalty_scale * _penalties(inp, h) - _rerouting(inp, h))
    return h


def _penalty_scale(inp: PlannerInput, rates: list[float]) -> float:
    weighted = sum(c.weight * r for c, r in zip(inp.classes, rates, strict=True))
    return weighted / max(inp.num_gpus, 1)


def _add_variables(inp: PlannerInput, h: MipHandle) -> None:
    groups_per_degree = {d: sum(g // d for g in inp.gpus_per_node) for d in inp.tp_degrees}
    for k in h.table.configs:
        ub = groups_per_degree[k.tp]
        h.n[k] = h.model.add_integer_variable(lb=0, ub=ub, name=f"n[{k.pool_id}]")
    for c, k, rho in h.table.cells:
        h.x[(c, k, rho)] = h.model.add_variable(lb=0, ub=1, name=f"x[{c},{k.pool_id},{rho}]")
    if inp.allow_shed:
        for c in range(len(inp.classes)):
            h.shed[c] = h.model.add_variable(lb=0, ub=1, name=f"u[{c}]")


def _add_routing(inp: PlannerInput, h: MipHandle) -> None:
    per_class: dict[int, list[mathopt.Variable]] = defaultdict(list)
    for (c, _, _), var in h.x.items():
        per_class[c].append(var)
    for c in range(len(inp.classes)):
        terms = per_class[c] + ([h.shed[c]] if c in h.shed else [])
        h.model.add_linear_constraint(mathopt.fast_sum(terms) == 1, name=f"route[{c}]")


def _add_capacity(h: MipHandle) -> None:
    load: dict[ConfigKey, list[mathopt.LinearExpression]] = defaultdict(list)
    for (c, k, rho), var in h.x.items():
        load[k].append(h.rates_rps[c] / (rho * h.table.cells[(c, k, rho)].rate_rps) * var)
    for k, n in h.n.items():
        h.model.add_linear_constraint(mathopt.fast_sum(load[k]) <= n, name=f"cap[{k.pool_id}]")
    _add_routing_bounds(h)


def _add_routing_bounds(h: MipHandle) -> None:
    """Σ_ρ x[c,k,ρ] ≤ n[k]: no instance, no routing. Valid since x ≤ 1 ≤ n when n ≥ 1; it cuts
    off LP points where a class smaller than one instance rides on a fraction of one."""
    shares: dict[tuple[int, ConfigKey], list[mathopt.Variable]] = defaultdict(list)
    small: set[tuple[int, ConfigKey]] = set()
    for (c, k, rho), var in h.x.items():
        shares[(c, k)].append(var)
        if h.rates_rps[c] < rho * h.table.cells[(c, k, rho)].rate_rps:
            small.add((c, k))  # else the capacity row already implies it
    for c, k in sorted(small):
        h.model.add_linear_constraint(mathopt.fast_sum(shares[(c, k)]) <= h.n[k])


def _add_nodes(inp: PlannerInput, h: MipHandle) -> None:
    for d in sorted(inp.tp_degrees):
        rhs = sum(d * (g // d) for g in inp.gpus_per_node)
        used = mathopt.fast_sum(k.tp * n for k, n in h.n.items() if k.tp >= d)
        h.model.add_linear_constraint(used <= rhs, name=f"nodes[{d}]")


def _add_accuracy(inp: PlannerInput, h: MipHandle) -> None:
    floor = inp.floor()
    margin = mathopt.fast_sum(
        h.rates_rps[c] * (h.table.accuracy[k] - floor) * var for (c, k, _), var in h.x.items()
    )
    h.model.add_linear_constraint(margin >= 0, name="accuracy")


def _rerouting(inp: PlannerInput, h: MipHandle) -> mathopt.LinearExpression:
    """Share of each class moved off the pools it uses now: breaks the LP's many equal
    routings toward the current one, so re-plans do not shuffle traffic for nothing."""
    terms: list[mathopt.LinearExpression] = []
    for c, cls in enumerate(inp.classes):
        for k, prev in inp.current_routing.get(cls.name, {}).items():
            xs = [var for (ci, kk, _), var in h.x.items() if ci == c and kk == k]
            if prev > 0 and xs:
                v = h.model.add_variable(lb=0, name=f"rerouted[{c},{k.pool_id}]")
                h.model.add_linear_constraint(v + mathopt.fast_sum(xs) >= prev)
                terms.append(inp.routing_penalty * cls.weight * h.rates_rps[c] * v)
    return mathopt.fast_sum(terms)


def _penalties(inp: PlannerInput, h: MipHandle) -> mathopt.LinearExpression:
    """GPUs moved, GPUs retuned and GPUs used, each weighted by its input coefficient."""
    per_degree: dict[int, list[mathopt.Variable]] = defaultdict(list)
    for k, n in h.n.items():
        per_degree[k.tp].append(n)
    terms: list[mathopt.LinearExpression] = []
    for d in inp.tp_degrees:
        prev = sum(v for k, v in inp.current.items() if k.tp == d)
        if prev:
            r = h.model.add_variable(lb=0, name=f"moved[{d}]")
            h.model.add_linear_constraint(r + mathopt.fast_sum(per_degree[d]) >= prev)
            terms.append(inp.move_penalty * d * r)
    for k, prev in inp.current.items():
        if prev and k in h.n:
            q = h.model.add_variable(lb=0, name=f"retuned[{k.pool_id}]")
            h.model.add_linear_constraint(q + h.n[k] >= prev)
            terms.append(inp.retune_penalty * k.tp * q)
    terms.append(inp.gpu_cost * mathopt.fast_sum(k.tp * n for k, n in h.n.items()))
    return mathopt.fast_sum(terms)
