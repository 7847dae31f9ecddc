"""`dilaserve validate-planner`: the capacity model's predictions vs the simulator.

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
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slo-ms", default="1200,2000", help="class SLOs to try")
    p.add_argument("--batch-sizes", default="4,16")
    p.add_argument("--rho", default="0.5,0.7,0.85,0.95", help="utilisation levels")
    p.add_argument("--instances", type=int, default=2)
    p.add_argument("--duration-s", type=float, default=200.0, help="seconds of arrivals")
    p.add_argument("--tau", type=float, default=0.9)
    p.add_argument("--out", type=Path, default=Path("bench_out/planner_validate.json"))


def run(args: argparse.Namespace) -> int:
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
