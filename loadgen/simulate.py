"""`dilaserve simulate`: the scheduling policies on a simulated cluster (cost model + quality
profile instead of a model), same workload generator as the real benchmark. JSON + PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from loadgen import workload
from loadgen.metrics import by_class, goodput_rate
from workers.sched.policy import POLICIES

DEFAULT_CLASSES = "interactive=400:0.7:drop,standard=1500:0.7:serve,batch=6000:0.8:serve"
DEFAULT_MIX = "interactive=0.3,standard=0.5,batch=0.2"


def add_workload_arguments(p: argparse.ArgumentParser, rates: str) -> None:
    """Options shared with the real-system benchmark."""
    from common.config import DEFAULT_MODEL_DIR

    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    p.add_argument("--policies", default=",".join(POLICIES))
    p.add_argument("--rates", default=rates, help="offered loads, requests/s")
    p.add_argument("--arrival", default="poisson", choices=workload.ARRIVALS)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of arrivals per load")
    p.add_argument("--classes", default=DEFAULT_CLASSES, help="name=slo_ms:tau_floor:action,...")
    p.add_argument("--mix", default=DEFAULT_MIX, help="name=share,...")
    p.add_argument("--instances", type=int, default=2)
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_workload_arguments(p, rates="20,40,60,80")
    p.add_argument("--out", type=Path, default=Path("bench_out/simulate.json"))
    p.add_argument("--slowdown", type=float, default=1.0,
                   help="true step time = cost model × this (a slower or shared machine)")
    p.add_argument("--jitter", type=float, default=0.0,
                   help="σ of a median-1 log-normal noise factor on every step time")


def load_models(model_dir: Path) -> tuple[Any, Any]:
    from common.costmodel import CostModel
    from common.quality import QualityProfile

    cost_path, prof_path = model_dir / "costmodel.json", model_dir / "quality_profile.json"
    if not cost_path.exists() or not prof_path.exists():
        raise SystemExit(
            f"{model_dir} needs costmodel.json (dilaserve profile) and quality_profile.json "
            "(dilaserve eval)"
        )
    return CostModel.load(cost_path), QualityProfile.load(prof_path)


def run(args: argparse.Namespace) -> int:
    from loadgen.sim.cluster import CoreTiming, SimConfig, SimRequest, simulate
    from loadgen.traces import parse_mix
    from workers.sched.policy import PolicyCfg

    cost, profile = load_models(args.model)
    classes, mix = workload.parse_classes(args.classes), parse_mix(args.mix)
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": []}
    for rate in [float(r) for r in args.rates.split(",")]:
        planned = workload.build(args.arrival, rate, args.duration, mix, classes, args.seed)
        reqs = [
            SimRequest(p.req_id, 1e3 * p.t_s, p.slo_class.slo_ms, p.slo_class.name,
                       len(p.problem.prompt) + 1, p.gen_length, p.block_length,
                       tau_floor=p.slo_class.tau_floor, late_action=p.slo_class.late_action)
            for p in planned
        ]  # fmt: skip
        for policy in args.policies.split(","):
            cfg = SimConfig(
                args.instances, PolicyCfg(name=policy), args.max_batch_size, seed=args.seed,
                queue_by_arrival=policy == "fcfs-fixed", slowdown=args.slowdown,
                jitter=args.jitter,
            )  # fmt: skip
            timing = CoreTiming()
            summary = by_class(simulate(cfg, cost, profile, reqs, timing), args.duration)
            tau = summary["all"].get("mean_tau")
            summary["all"]["expected_accuracy"] = profile.at(tau).accuracy if tau else None
            summary["all"]["core_us_per_step"] = round(timing.us_per_step, 1)
            report["runs"].append({"rate": rate, "policy": policy, "classes": summary})
            s = summary["all"]
            print(f"rate={rate:<6} {policy:<11} attainment={s['attainment']:.3f} "
                  f"p50={s['p50_ms'] or 0:.0f}ms tau={tau or 0:.2f} "
                  f"core={timing.us_per_step:.0f}us/step", flush=True)  # fmt: skip
    report["goodput_rps"] = {
        pol: goodput_rate([(r["rate"], r["classes"]["all"]["attainment"])
                           for r in report["runs"] if r["policy"] == pol])
        for pol in args.policies.split(",")
    }  # fmt: skip
    write_report(report, args.out)
    return 0


def write_report(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    plot_attainment(report, out.with_suffix(".png"))
    print(json.dumps(report.get("goodput_rps"), indent=2))
    print(f"wrote {out} and {out.with_suffix('.png')}")


def plot_attainment(report: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for pol in sorted({r["policy"] for r in report["runs"]}):
        pts = sorted((r["rate"], r["classes"]["all"]["attainment"])
                     for r in report["runs"] if r["policy"] == pol)  # fmt: skip
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=pol)
    ax.set_xlabel("offered load (requests/s)")
    ax.set_ylabel("SLO attainment (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
