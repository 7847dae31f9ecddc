"""`dilaserve validate-planner`: the capacity model's predictions vs the simulator (or, with
--live, vs a measured run of the real stack: planner/validate_live.py).

`simulate_plan` runs a whole decision (routing + pools) in the simulator, for tests and studies.

For one class on TP-1 pools at fixed τ (`edf-fixed` policy, so τ control does not help), Poisson
arrivals at utilisation ρ of the model's full-batch capacity μ: predicted attainment and latency
(planner/capacity.py) next to what the discrete-event simulator (loadgen/sim: the real scheduler
with the cost model and sampled commits) measures. JSON + table.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner import validate_live

if TYPE_CHECKING:
    from planner.decision import PlanDecision
    from planner.inputs import PlannerInput


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slo-ms", default="1200,2000", help="class SLOs to try")
    p.add_argument("--batch-sizes", default="4,16")
    p.add_argument("--rho", default="0.5,0.7,0.85,0.95", help="utilisation levels")
    p.add_argument("--instances", type=int, default=2)
    p.add_argument("--duration-s", type=float, default=200.0, help="seconds of arrivals")
    p.add_argument("--tau", type=float, default=0.9)
    p.add_argument("--out", type=Path, default=None,
                   help="default: bench_out/planner_validate[_live].json")  # fmt: skip
    live = p.add_argument_group("--live: against a measured run of the real stack")
    live.add_argument("--live", action="store_true", help="run the stack instead of simulating")
    validate_live.add_arguments(live)


def run(args: argparse.Namespace) -> int:
    if args.out is None:
        args.out = Path(f"bench_out/planner_validate{'_live' if args.live else ''}.json")
    if args.live:
        return validate_live.run(args)
    rows = [
        compare(slo, b, rho, args.instances, args.duration_s, args.tau)
        for slo in _floats(args.slo_ms)
        for b in (int(x) for x in args.batch_sizes.split(","))
        for rho in _floats(args.rho)
    ]
    for r in rows:
        print(
            f"slo {r['slo_ms']:>6.0f} b {r['batch_size']:>2} ρ {r['rho']:.2f}: predicted "
            f"p {r['predicted_attainment']:.3f} latency {r['predicted_latency_ms']:6.0f} ms | "
            f"simulated p {r['simulated_attainment']:.3f} p50 {r['simulated_p50_ms']:6.0f} ms "
            f"p99 {r['simulated_p99_ms']:6.0f} ms"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def compare(
    slo_ms: float, batch_size: int, rho: float, instances: int, duration_s: float, tau: float
) -> dict[str, Any]:
    from loadgen.metrics import by_class
    from loadgen.sim.cluster import SimConfig, SimRequest, simulate
    from planner.capacity import estimate
    from planner.defaults import example_cost_model, example_quality_profile
    from planner.inputs import ConfigKey, PlannerInput, SloClass, nodes_of
    from workers.sched.policy import PolicyCfg

    cost, quality = example_cost_model(), example_quality_profile(gen_length=64, block_length=16)
    cls = SloClass("c", slo_ms, 1.0)
    inp = PlannerInput((cls,), nodes_of(8), cost, quality, prompt_tokens=32)
    est = estimate(inp, cls, ConfigKey(1, tau, batch_size), rho)
    rng, t_s, reqs = random.Random(0), 0.0, list[SimRequest]()
    while t_s < duration_s:
        t_s += rng.expovariate(rho * est.rate_rps * instances)
        reqs.append(SimRequest(f"r{len(reqs)}", t_s * 1000, slo_ms, "c", 32, 64, 16,
                               tau=tau, tau_floor=tau))  # fmt: skip
    sim = simulate(
        SimConfig(instances, PolicyCfg(name="edf-fixed"), batch_size), cost, quality, reqs
    )
    s = by_class(sim, duration_s)["all"]
    return {
        "slo_ms": slo_ms, "batch_size": batch_size, "rho": rho, "requests": len(reqs),
        "predicted_attainment": est.attainment, "predicted_latency_ms": est.latency_ms,
        "predicted_service_ms": est.service_ms, "simulated_attainment": s["attainment"],
        "simulated_p50_ms": s["p50_ms"] or 0.0, "simulated_p99_ms": s.get("p99_ms") or 0.0,
    }  # fmt: skip


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def simulate_plan(
    d: PlanDecision, inp: PlannerInput, duration_s: float, seed: int = 0, policy: str = "dilaserve"
) -> dict[str, float]:
    """Attainment per class (and "all") when the classes' Poisson arrivals are routed by the
    plan's weights and every pool runs its instances in the simulator (shed requests miss)."""
    from loadgen.metrics import by_class
    from loadgen.sim.cluster import SimConfig, SimRequest, simulate
    from workers.sched.policy import PolicyCfg

    rng = random.Random(seed)
    flows: dict[str, list[SimRequest]] = {p.pool_id: [] for p in d.pools}
    missed = {c.name: 0 for c in inp.classes}
    for c in inp.classes:
        gen, canvas = inp.class_gen_tokens(c), inp.class_canvas_len(c)
        for t_s in _poisson(rng, c.rate_rps, duration_s):
            pool = _pick(rng, d.routing.get(c.name, {}))
            if pool is None or pool not in flows:
                missed[c.name] += 1
                continue
            p = next(q for q in d.pools if q.pool_id == pool)
            flows[pool].append(SimRequest(
                f"{c.name}-{len(flows[pool])}-{pool}", t_s * 1000, c.slo_ms, c.name,
                canvas - gen, gen, inp.block_len(), tau=p.tau,
                tau_floor=max(p.tau_floor, c.tau_floor),
            ))  # fmt: skip
    outcomes = []
    for p in d.pools:
        if flows[p.pool_id]:
            cfg = SimConfig(p.num_instances, PolicyCfg(name=policy), p.max_batch_size, tp=p.tp)
            outcomes += simulate(cfg, inp.cost_model, inp.quality, flows[p.pool_id])
    summary = by_class(outcomes, duration_s)
    return _with_missed(summary, missed)


def _with_missed(summary: dict[str, dict[str, Any]], missed: dict[str, int]) -> dict[str, float]:
    out: dict[str, float] = {}
    total_met = total_n = 0.0
    for c, lost in missed.items():
        s = summary.get(c, {"attainment": 0.0, "num_requests": 0})
        n = s["num_requests"]
        met = s["attainment"] * n
        out[c] = met / (n + lost) if n + lost else 1.0
        total_met, total_n = total_met + met, total_n + n + lost
    out["all"] = total_met / total_n if total_n else 1.0
    return out


def _poisson(rng: random.Random, rate_rps: float, duration_s: float) -> list[float]:
    times, t_s = [], 0.0
    while rate_rps > 0:
        t_s += rng.expovariate(rate_rps)
        if t_s > duration_s:
            break
        times.append(t_s)
    return times


def _pick(rng: random.Random, shares: dict[str, float]) -> str | None:
    """A pool drawn by routing weight; None with the shed share's probability."""
    x = rng.random()
    for pool, share in sorted(shares.items()):
        x -= share
        if x < 0:
            return pool
    return None
