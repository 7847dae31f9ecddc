"""`dilaserve whatif`: the plan the planner would choose for a load, without touching a cluster.

    dilaserve whatif --gpus 64 --rate 40 --mix interactive=0.3,standard=0.5,batch=0.2
    dilaserve plan --gpus 64 --rate 40 --mix ...     (the same; issue 7's spelling)

Classes (SLO, τ floor, weight) come from the settings (`DILA_SLO_CLASSES`); `--slo` overrides
a class's SLO or adds a class. Profiles come from the model directory (costmodel.json,
quality_profile.json) when it has them, else from the built-in examples (planner/defaults.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports stay inside run()
    from common.config import SloClassCfg
    from planner.decision import PlanDecision
    from planner.inputs import PlannerInput


def add_arguments(p: argparse._ActionsContainer, required: bool = True) -> None:
    """`required=False`: for `dilaserve plan`, where the what-if is the no-subcommand form."""
    p.add_argument("--gpus", type=int, required=required, help="GPUs available")
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--rate", type=float, required=required, help="total arrival rate, req/s")
    p.add_argument("--mix", default="interactive=0.3,standard=0.5,batch=0.2", help="class=share")
    p.add_argument("--slo", default="", help="class=ms overrides/additions, e.g. interactive=1500")
    p.add_argument("--tp", default="1,2,4,8", help="allowed TP degrees")
    p.add_argument("--batch-sizes", default="1,2,4,8,16,32", help="batch caps a pool may get")
    p.add_argument("--accuracy-budget", type=float, default=1.0, help="points below τ 0.9's")
    p.add_argument("--current", default="", help="pool_id=instances,... running now (moves)")
    p.add_argument("--model-dir", type=Path, default=None, help="default: settings' model dir")
    p.add_argument("--time-limit-s", type=float, default=5.0)
    p.add_argument("--fill-idle", action="store_true", help="idle GPUs join busy pools")
    p.add_argument("--json", action="store_true", help="print the decision as JSON")


def run(args: argparse.Namespace) -> int:
    from common.config import Settings
    from planner.headroom import fill_idle
    from planner.solve import SolveOptions, plan

    settings = Settings()  # type: ignore[call-arg]  # pydantic-settings fills it from env
    inp, source = make_input(
        args, settings.slo_classes, args.model_dir or settings.engine.model_dir
    )
    decision = plan(inp, options=SolveOptions(time_limit_s=args.time_limit_s))
    if args.fill_idle and decision.pools:
        decision = fill_idle(decision, inp)
    if args.json:
        print(json.dumps(decision.to_dict(), indent=2, sort_keys=True))
    else:
        print(f"profiles: {source}")
        print(format_plan(decision, inp))
    return 0 if decision.pools or decision.status == "optimal" else 1


def parse_pairs(text: str) -> dict[str, float]:
    """ "a=0.3,b=0.7" → {"a": 0.3, "b": 0.7}."""
    out: dict[str, float] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"expected name=value, got {item!r}")
        out[name.strip()] = float(value)
    return out


def make_input(
    args: argparse.Namespace, class_cfgs: list[SloClassCfg], model_dir: Path
) -> tuple[PlannerInput, str]:
    from planner.defaults import load_profiles
    from planner.inputs import ConfigKey, PlannerInput, SloClass, nodes_of

    mix, slo = parse_pairs(args.mix), parse_pairs(args.slo)
    cfg = {c.name: c for c in class_cfgs}
    unknown = sorted(set(mix) - set(cfg) - set(slo))
    if unknown:
        raise SystemExit(f"classes {unknown} are not configured: give their SLO with --slo")
    total = sum(mix.values()) or 1.0
    classes = tuple(
        SloClass(
            name, slo.get(name, cfg[name].slo_ms if name in cfg else 0.0),
            args.rate * share / total,
            weight=cfg[name].weight if name in cfg else 1.0,
            tau_floor=cfg[name].tau_floor if name in cfg else 0.0,
        )
        for name, share in mix.items()
    )  # fmt: skip
    cost, quality, source = load_profiles(model_dir)
    current = {ConfigKey.parse(p): int(n) for p, n in parse_pairs(args.current).items()}
    inp = PlannerInput(
        classes=classes, gpus_per_node=nodes_of(args.gpus, args.gpus_per_node),
        cost_model=cost, quality=quality, current=current,
        tp_degrees=tuple(int(d) for d in args.tp.split(",")),
        batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")),
        accuracy_budget_pts=args.accuracy_budget,
    )  # fmt: skip
    return inp, source


def format_plan(d: PlanDecision, inp: PlannerInput) -> str:
    size = d.model_size
    lines = [
        f"status: {d.status} — {d.reason}",
        f"time: build {d.build_ms:.0f} ms, solve {d.solve_ms:.0f} ms; model "
        f"{size.get('integer_vars', 0)} int / {size.get('continuous_vars', 0)} cont vars, "
        f"{size.get('constraints', 0)} rows",
        f"GPUs: {inp.num_gpus} on {len(inp.gpus_per_node)} nodes, {d.gpus_used} used; "
        f"moved {d.moved_gpus}, retuned {d.retuned_gpus}",
        f"accuracy: {d.accuracy:.2%} predicted (floor {inp.floor():.2%}); "
        f"goodput {d.goodput_rps:.2f} req/s of {sum(c.rate_rps for c in inp.classes):.2f}",
        "",
        f"{'pool':<18}{'tp':>4}{'tau':>6}{'floor':>7}{'batch':>7}{'inst':>6}{'GPUs':>6}",
    ]
    for p in d.pools:
        lines.append(
            f"{p.pool_id:<18}{p.tp:>4}{p.tau:>6.2f}{p.tau_floor:>7.2f}"
            f"{p.max_batch_size:>7}{p.num_instances:>6}{p.num_gpus:>6}"
        )
    lines += ["", f"{'class':<14}{'rate':>8}{'slo_ms':>9}{'attain':>9}{'shed':>7}  routing"]
    for c in inp.classes:
        routes = ", ".join(f"{p} {s:.0%}" for p, s in sorted(d.routing.get(c.name, {}).items()))
        lines.append(
            f"{c.name:<14}{c.rate_rps:>8.2f}{c.slo_ms:>9.0f}"
            f"{d.attainment.get(c.name, 0.0):>9.1%}{d.shed.get(c.name, 0.0):>7.1%}  {routes}"
        )
    return "\n".join(lines)
