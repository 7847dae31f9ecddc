"""Worker process entry: settings → model → scheduler + runner + Redis threads → loop."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from common.config import Settings
from common.ids import new_worker_id
from common.log import setup_logging

log = logging.getLogger("workers")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", help="checkpoint directory (default: the demo model)")
    parser.add_argument("--pool", help="pool whose queue this worker serves")
    parser.add_argument("--log-json", action="store_true")


def run(args: argparse.Namespace) -> int:
    import torch

    from workers.engine import Engine
    from workers.io import WorkerIO
    from workers.loop import WorkerLoop
    from workers.sched.scheduler import Scheduler, SchedulerConfig
    from workers.text import TextCodec

    setup_logging(json_lines=args.log_json)
    settings = Settings()
    ecfg, wcfg = settings.engine, settings.worker
    if args.model_dir:
        ecfg = ecfg.model_copy(update={"model_dir": args.model_dir})
    if args.pool:
        wcfg = wcfg.model_copy(update={"pool": args.pool})
    if ecfg.num_threads:
        torch.set_num_threads(ecfg.num_threads)
    worker_id = wcfg.worker_id or new_worker_id()

    engine = Engine.from_dir(ecfg.model_dir, ecfg.max_batch_size, ecfg.device, ecfg.dtype)
    mcfg = engine.cfg
    codec = TextCodec(engine.tokenizer, mcfg.mask_token_id, mcfg.eos_token_id, mcfg.pad_token_id)
    sched = Scheduler(
        SchedulerConfig(
            mcfg.mask_token_id, mcfg.eos_token_id, ecfg.max_batch_size, wcfg.max_retries
        )
    )
    io = WorkerIO(settings.redis, wcfg, worker_id, ecfg.max_batch_size, codec)
    loop = WorkerLoop(
        sched, engine.runner, io, mcfg.mask_token_id, wcfg.tau, wcfg.drain_timeout_s,
        wcfg.debug_step_delay_s,
    )  # fmt: skip

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    io.start()
    log.info("worker %s serving pool %r with %s", worker_id, wcfg.pool, ecfg.model_dir)
    code = loop.run(stop)
    io.close()
    log.info("worker %s stopped", worker_id)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
