"""`dilaserve validate-planner --live`: the capacity model against a measured run of the stack.

One class, N TP-1 slots in one pool at τ and batch cap b, Poisson arrivals at utilisation ρ
of the capacity the model predicts (planner/capacity.py); the real stack (private Redis,
gateway, slot processes, the `edf-fixed` policy so τ control does not help) serves them with
each step paced to a cost model (workers/pacing.py), because a CPU is not the device the plan
is for. What is measured is everything but the device: batching, claiming, queueing, Redis
round trips, the gateway. The model's profiles are written to a copy of the model directory
(weights linked, not copied): tokens per step measured on the model, the paced cost model.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def add_arguments(p: argparse._ActionsContainer) -> None:
    p.add_argument("--model-dir", type=Path, default=None, help="weights (default: settings')")
    p.add_argument("--gen", type=int, default=16, help="answer tokens per request")
    p.add_argument("--block", type=int, default=8)
    p.add_argument("--fixed-ms", type=float, default=20.0, help="paced cost per sub-batch")
    p.add_argument("--full-row-ms", type=float, default=40.0, help="paced cost per refresh row")
    p.add_argument("--reuse-row-ms", type=float, default=20.0, help="paced cost per cached row")


def run(args: argparse.Namespace) -> int:
    from common.config import Settings

    src = args.model_dir or Settings().engine.model_dir  # type: ignore[call-arg]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dila-validate-") as tmp:
        model = _linked_copy(Path(src), Path(tmp) / "model")
        for slo in (float(x) for x in args.slo_ms.split(",")):
            for b in (int(x) for x in args.batch_sizes.split(",")):
                rows += _one_pool(args, model, Path(tmp) / f"run-{slo:.0f}-{b}", slo, b)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"live": True, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def _linked_copy(src: Path, out: Path) -> Path:
    out.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name not in ("costmodel.json", "quality_profile.json"):
            (out / f.name).symlink_to(f.resolve())
    return out


def _one_pool(
    args: argparse.Namespace, model: Path, data_dir: Path, slo_ms: float, batch: int
) -> list[dict[str, Any]]:
    """Every ρ on one stack whose N slots serve one pool with batch cap `batch`."""
    from common.config import SloClassCfg
    from common.redis_server import free_port
    from dilaserve.localstack import LocalStack
    from planner import live

    tps = live.measure_tokens_per_step(model, [args.tau], args.gen, args.block)
    cost = live.paced_cost_model(args.fixed_ms, args.full_row_ms, args.reuse_row_ms)
    live.write_profiles(model, cost, tps, args.gen, args.block)
    cls = SloClassCfg(name="c", slo_ms=slo_ms, tau_floor=args.tau, weight=1.0, late_action="serve")
    env = {
        "DILA_ENGINE__PACE_COST_MODEL": str(model / "costmodel.json"),
        "DILA_ENGINE__MAX_BATCH_SIZE": str(batch), "DILA_SCHEDULER__POLICY": "edf-fixed",
        "DILA_SCHEDULER__TAU_LADDER": f"[{args.tau}]", "DILA_WORKER__TAU": str(args.tau),
        "DILA_SLO_CLASSES": json.dumps([cls.model_dump()]),
        "DILA_GATEWAY__DEFAULT_SLO_CLASS": "c", "DILA_REDIS__PREFIX": "dila",
    }  # fmt: skip
    stack = LocalStack(model, data_dir, num_workers=args.instances, port=free_port(),
                       env_extra=env, tp=1)  # fmt: skip
    stack.start(timeout_s=180)
    try:
        return [_one_point(args, stack, cost, model, slo_ms, batch, rho)
                for rho in (float(x) for x in args.rho.split(","))]  # fmt: skip
    finally:
        stack.stop(10.0)


def _one_point(
    args: argparse.Namespace, stack: Any, cost: Any, model: Path, slo_ms: float, batch: int,
    rho: float,
) -> dict[str, Any]:  # fmt: skip
    import redis

    from common.keys import Keys
    from loadgen.metrics import percentile
    from planner import live
    from planner.capacity import estimate
    from planner.defaults import load_profiles
    from planner.inputs import ConfigKey, PlannerInput, SloClass, nodes_of

    _, quality, _ = load_profiles(model)
    cls = SloClass("c", slo_ms, 1.0)
    inp = PlannerInput((cls,), nodes_of(args.instances), cost, quality, prompt_tokens=7)
    est = estimate(inp, cls, ConfigKey(1, args.tau, batch), rho)
    rate = rho * est.rate_rps * args.instances
    arrivals = live.poisson_arrivals({"c": rate}, args.duration_s, seed=int(rho * 100))
    client = redis.Redis.from_url(str(stack.redis_url), decode_responses=True)
    t0 = time.monotonic()
    sent = live.replay(stack.url, arrivals, args.gen, args.block, f"v{slo_ms:.0f}-{batch}-{rho}")
    records = live.wait_ended(client, Keys("dila"), sent, timeout_s=600)
    wall_s = time.monotonic() - t0
    client.close()
    lat = live.latencies_ms(records)
    row = {
        "slo_ms": slo_ms, "batch_size": batch, "rho": rho, "instances": args.instances,
        "offered_rps": round(rate, 3), "requests": len(sent),
        "completed_rps": round(len(lat) / wall_s, 3),
        "predicted_capacity_rps": round(est.rate_rps * args.instances, 3),
        "predicted_attainment": est.attainment, "predicted_latency_ms": round(est.latency_ms),
        "predicted_service_ms": round(est.service_ms),
        "measured_attainment": round(live.attainment(records, sent)["all"], 4),
        "measured_p50_ms": round(percentile(lat, 0.5) or 0.0),
        "measured_p99_ms": round(percentile(lat, 0.99) or 0.0),
    }  # fmt: skip
    print(
        f"slo {slo_ms:>6.0f} b {batch:>2} ρ {rho:.2f} ({rate:.2f} req/s): predicted p "
        f"{row['predicted_attainment']:.3f} latency {row['predicted_latency_ms']} ms | measured "
        f"p {row['measured_attainment']:.3f} p50 {row['measured_p50_ms']} ms p99 "
        f"{row['measured_p99_ms']} ms", flush=True,
    )  # fmt: skip
    return row
