"""Worker process entry: settings → model → scheduler + runner + Redis threads → loop.

A plain worker serves one pool (`--pool`); when the plan lists that pool, its τ, τ floor and
batch cap apply (workers/tuning.py), else the worker's own settings.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.bus import connect
from common.config import Settings, WorkerCfg
from common.costmodel import CostModel
from common.ids import new_worker_id
from common.keys import Keys
from common.log import bind, setup_logging
from common.quality import QualityProfile
from workers.sched.policy import PolicyCfg
from workers.tuning import PoolFollower

if TYPE_CHECKING:
    from workers.io import WorkerIO
    from workers.loop import WorkerLoop

log = logging.getLogger("workers")
GIL_SWITCH_INTERVAL_S = 0.0005


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", help="checkpoint directory (default: the demo model)")
    parser.add_argument("--pool", help="pool whose queue this worker serves")
    parser.add_argument("--log-json", action="store_true")


def run(args: argparse.Namespace) -> int:
    import torch

    from workers.engine import Engine

    setup_logging(json_lines=args.log_json)
    settings = Settings()
    ecfg, wcfg = settings.engine, settings.worker
    if args.model_dir:
        ecfg = ecfg.model_copy(update={"model_dir": args.model_dir})
    if args.pool:
        wcfg = wcfg.model_copy(update={"pool": args.pool})
    settings = settings.model_copy(update={"engine": ecfg, "worker": wcfg})
    if ecfg.num_threads:
        torch.set_num_threads(ecfg.num_threads)
    # The step loop shares the GIL with the I/O threads (claims, publishing). With Python's
    # default 5 ms switch interval a step that needs the GIL back can wait up to 5 ms behind
    # them, as long as a whole small step; 0.5 ms keeps those waits well under a step.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    worker_id = wcfg.worker_id or new_worker_id()
    bind(service="worker", worker_id=worker_id, pool=wcfg.pool)  # on every log record

    engine = Engine.from_dir(ecfg.model_dir, ecfg.max_batch_size, ecfg.device, ecfg.dtype)
    loop, io = build_loop(
        settings, wcfg, worker_id, engine.runner, engine.cfg, engine.tokenizer,
        ecfg.max_batch_size,
    )  # fmt: skip

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    follower = PoolFollower(
        connect(settings.redis), Keys(settings.redis.prefix), wcfg.pool, wcfg.plan_poll_s,
        ecfg.max_batch_size, loop.request_retune,
    )  # fmt: skip
    follower.poll()  # the plan's settings for this pool before the first claim
    follower.start()
    io.start()
    log.info("worker %s serving pool %r with %s", worker_id, wcfg.pool, ecfg.model_dir)
    code = loop.run(stop)
    follower.close()
    io.close()
    log.info("worker %s stopped", worker_id)
    return code


def build_loop(
    settings: Settings,
    wcfg: WorkerCfg,
    worker_id: str,
    runner: Any,
    mcfg: Any,
    tokenizer: Any,
    max_batch_size: int,
    tp_degree: int = 1,
) -> tuple[WorkerLoop, WorkerIO]:
    """Scheduler, Redis threads and hot loop around a runner (a ModelRunner, or a TP group's
    leader runner: workers/slot.py builds its groups' loops here too)."""
    from workers.io import WorkerIO
    from workers.loop import WorkerLoop
    from workers.sched.scheduler import Scheduler, SchedulerConfig
    from workers.text import TextCodec

    codec = TextCodec(tokenizer, mcfg.mask_token_id, mcfg.eos_token_id, mcfg.pad_token_id)
    cost, profile = load_profiles(Path(settings.engine.model_dir))
    if settings.engine.pace_cost_model is not None:
        from workers.pacing import PacedRunner

        runner = PacedRunner(runner, CostModel.load(settings.engine.pace_cost_model), tp_degree)
    sched = Scheduler(
        SchedulerConfig(
            mcfg.mask_token_id, mcfg.eos_token_id, max_batch_size, wcfg.max_retries,
            policy_cfg(settings, tp_degree, has_cost_model=cost is not None),
        ),
        cost, profile,
    )  # fmt: skip
    io = WorkerIO(settings.redis, wcfg, worker_id, max_batch_size, codec, tp_degree=tp_degree)
    loop = WorkerLoop(
        sched, runner, io, mcfg.mask_token_id, wcfg.tau, wcfg.drain_timeout_s,
        wcfg.debug_step_delay_s, {c.name: c for c in settings.slo_classes},
    )  # fmt: skip
    return loop, io


def policy_cfg(settings: Settings, tp_degree: int = 1, has_cost_model: bool = True) -> PolicyCfg:
    s = settings.scheduler
    name = s.policy
    if name == "dilaserve" and not has_cost_model:
        log.warning(
            "no costmodel.json next to the model: deadline-aware control is off, serving "
            "edf-fixed (run `dilaserve profile --model %s`)", settings.engine.model_dir,
        )  # fmt: skip
        name = "edf-fixed"
    return PolicyCfg(
        name, tuple(sorted(s.tau_ladder, reverse=True)), safety=s.safety,
        max_batch_tokens=s.max_batch_tokens, tp=tp_degree, pressure_hold_ms=s.pressure_hold_ms,
        accuracy_budget_points=s.accuracy_budget_points, give_up_backlog=s.give_up_backlog,
        guard_admission=s.guard_admission,
    )  # fmt: skip


def load_profiles(model_dir: Path) -> tuple[CostModel | None, QualityProfile | None]:
    """The model's cost model and quality profile, shipped next to its weights."""
    cost_path, prof_path = model_dir / "costmodel.json", model_dir / "quality_profile.json"
    cost = CostModel.load(cost_path) if cost_path.exists() else None
    profile = QualityProfile.load(prof_path) if prof_path.exists() else None
    return cost, profile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
