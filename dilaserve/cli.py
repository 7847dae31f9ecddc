"""`dilaserve <command>`: one entry point; each command lives in its own module.

Commands are imported lazily so that `dilaserve status` does not pay for torch.
A command module exposes `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name → (module, one-line help). Add a line here when adding a command module.
COMMANDS: dict[str, tuple[str, str]] = {
    "profile": ("workers.profile", "measure step times and fit the cost model (JSON, Redis)"),
    "bench": ("loadgen.bench", "scheduling policies on the real local stack (JSON + plots)"),
    "simulate": ("loadgen.simulate", "compare scheduling policies on a simulated cluster"),
    "bench-engine": ("workers.bench_engine", "measure the engine's decoding modes (JSON + table)"),
    "train": ("workers.train", "train the demo diffusion LM on the any-order task"),
    "eval": ("workers.evaluate", "accuracy and tokens/step vs τ on held-out demo problems"),
    "bench-tp": ("workers.bench_tp", "per-step latency and throughput at TP 1 vs TP d (JSON)"),
    "bench-regroup": ("workers.bench_regroup", "live TP regroup time under load (JSON)"),
    "up": ("dilaserve.up", "run the whole stack locally: private Redis, gateway, N CPU workers"),
    "gateway": ("gateway.main", "run the HTTP gateway (FastAPI + uvicorn)"),
    "worker": ("workers.main", "run one worker process (model + scheduler + Redis I/O)"),
    "slot": ("workers.slot", "run one slot: a worker process the plan puts into TP groups"),
    "plan": (
        "dilaserve.plan_cmd", "show, apply or build the cluster plan; --gpus/--rate: the what-if"
    ),
    "bench-dataplane": (
        "loadgen.bench_dataplane", "gateway, dispatch and worker-overhead benchmarks (JSON)"
    ),
    "status": ("dilaserve.status", "live cluster view from Redis: pools, workers, plan, SLOs"),
    "whatif": ("planner.whatif", "the plan the planner would choose for a load (no cluster)"),
    "bench-planner": ("planner.bench", "planner MIP solve time, size and gap vs cluster size"),
    "validate-planner": (
        "planner.validate", "capacity model predictions vs the simulator (--live: the stack)"
    ),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Every command is listed; only the one being run is imported (to add its arguments)."""
    parser = argparse.ArgumentParser(prog="dilaserve", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if argv and argv[0] == name:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
