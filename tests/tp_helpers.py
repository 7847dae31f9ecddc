"""Rank processes for the tensor-parallel tests: spawn d CPU processes (gloo) around one store.

Rank functions live here (not in a test file) because spawn children import them by module name.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tests.engine_helpers import tiny_model
from workers.engine import Engine
from workers.model.loader import read_config, read_state_dict
from workers.model.tp import GroupLost, build_sharded_model
from workers.runner import ModelRunner
from workers.sched.plan import CacheMode, ThresholdRule
from workers.tp import GroupSpec, TPGroup
from workers.tp_local import run_local_group, write_report
from workers.tp_runner import LeaderRunner, follow


@dataclass(frozen=True)
class Case:
    name: str
    prompts: list[list[int]]
    gen_length: int
    block_length: int
    cache_mode: str
    tau: float


def full_model(model_spec: dict[str, Any]):  # type: ignore[no-untyped-def]
    """(config, full state dict) of a tiny random model or a checkpoint directory."""
    if "dir" in model_spec:
        return read_config(model_spec["dir"]), read_state_dict(model_spec["dir"])
    model = tiny_model(seed=model_spec["seed"], peaked=model_spec["peaked"])
    with torch.no_grad():
        # Louder blocks make hidden states depend on position and context: answers get varied
        # tokens instead of one token repeated (which would make parity trivially true).
        for p in model.layers.parameters():
            if p.dim() == 2:
                p.mul_(model_spec.get("gain", 1.0))
    return model.cfg, model.state_dict()


def generate(engine: Engine, case: Case) -> list[list[int]]:
    outs = engine.generate(
        case.prompts, case.gen_length, case.block_length, ThresholdRule(case.tau),
        CacheMode(case.cache_mode),
    )  # fmt: skip
    return [o.answer_ids for o in outs]


def _rank_main(
    rank: int, tp_size: int, port: int, out_dir: str, model_spec: dict[str, Any],
    cases: list[Case], timeout_s: float, fault: Fault | None,
) -> None:  # fmt: skip
    torch.set_num_threads(1)
    spec = GroupSpec("test", rank, tp_size, "127.0.0.1", port, timeout_s=timeout_s)
    group = TPGroup(spec)
    cfg, state = full_model(model_spec)
    model, hook = build_sharded_model(cfg, state, rank, tp_size, group.group)
    if fault is not None and fault.rank == rank:
        _inject(model, fault, timeout_s)
    report: dict[str, Any] = {"rank": rank}
    t0 = time.monotonic()
    try:
        if rank == 0:
            engine = Engine(model, None, max_batch_size=8)
            leader = LeaderRunner(engine.runner, hook, timeout_s / 4, group.group)
            engine.runner = leader  # type: ignore[assignment]
            report["answers"] = {c.name: generate(engine, c) for c in cases}
            leader.close()
        else:
            report["num_steps"] = follow(ModelRunner(model, 8), hook, group.group)
    except GroupLost as e:
        report["lost"] = str(e)
    report["elapsed_s"] = time.monotonic() - t0
    write_report(out_dir, rank, report)
    group.close()


@dataclass(frozen=True)
class Fault:
    rank: int
    after_calls: int  # strike inside this rank's n-th forward of a layer-1 projection (mid-step)
    stall: bool  # False: exit at once (a crash); True: stop responding, exit much later (a hang)


def _inject(model: torch.nn.Module, fault: Fault, timeout_s: float) -> None:
    calls = [0]

    def hook(*_: Any) -> None:
        calls[0] += 1
        if calls[0] >= fault.after_calls:
            if fault.stall:
                time.sleep(3 * timeout_s)
            os._exit(17)

    model.layers[1].attn.q_proj.register_forward_hook(hook)


def run_group(
    tp_size: int,
    model_spec: dict[str, Any],
    cases: list[Case],
    out_dir: Path,
    timeout_s: float = 10.0,
    fault: Fault | None = None,
    join_s: float = 120.0,
) -> list[dict[str, Any]]:
    """Run `cases` on a TP group of `tp_size` spawned ranks; returns each rank's report."""
    args = (model_spec, cases, timeout_s, fault)
    return run_local_group(_rank_main, tp_size, args, out_dir, join_s)
