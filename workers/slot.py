"""`dilaserve slot`: one worker process on one device, placed into TP groups by the plan.

The slot registers itself in Redis (node, device, state; renewed by a heartbeat thread, gone when
the process is), loads the full weights once into host memory, then loops: read the plan, find
its assignment, serve that formation until the plan moves it, and again. A formation that fails
(a peer died, or never came) is retried after a pause, so survivors re-form as soon as the plan
and the peers allow. SIGTERM drains (requests handed back at block boundaries) and exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from typing import Any

import redis

from common.config import Settings
from common.log import setup_logging
from common.plan import Assignment, slot_id_of
from common.plan_bus import SlotInfo, read_plan, register_slot, unregister_slot

log = logging.getLogger("workers.slot")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", help="this machine's name (default: settings, n0)")
    parser.add_argument("--device", help="device label, e.g. cpu:0 or cuda:3 (default: cpu:0)")
    parser.add_argument("--model-dir", help="checkpoint directory (default: the demo model)")
    parser.add_argument("--log-json", action="store_true")


def run(args: argparse.Namespace) -> int:
    setup_logging(json_lines=args.log_json)
    settings = _settings(args)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return SlotAgent(settings, stop).run()


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings()
    slot = settings.slot.model_copy(
        update={k: v for k, v in (("node", args.node), ("device", args.device)) if v}
    )
    engine = settings.engine
    if args.model_dir:
        engine = engine.model_copy(update={"model_dir": args.model_dir})
    return settings.model_copy(update={"slot": slot, "engine": engine})


class SlotAgent:
    def __init__(self, settings: Settings, stop: threading.Event) -> None:
        from common.bus import connect
        from common.keys import Keys

        self.settings, self.stop = settings, stop
        scfg = settings.slot
        self.slot_id = slot_id_of(scfg.node, scfg.device)
        self.client = connect(settings.redis)
        self.keys = Keys(settings.redis.prefix)
        self.info = SlotInfo(self.slot_id, scfg.node, scfg.device, "loading", pid=os.getpid())
        self._lock = threading.Lock()
        self._beat_done = threading.Event()  # outlives `stop`: a stopping slot still drains

    def run(self) -> int:
        # Registered and heartbeating from the start: loading a large checkpoint takes a while.
        self.report("loading")
        beat = threading.Thread(target=self._heartbeat_loop, name="slot-hb", daemon=True)
        beat.start()
        ctx = self._context()
        log.info("slot %s ready (%s)", self.slot_id, ctx.torch_device)
        while not self.stop.is_set():
            version, asg = self._current()
            if asg is None:
                self.report("idle", plan_version=version)
                self._wait_for_new_plan(version)
                continue
            from workers.slot_group import Outcome, serve

            with self._lock:
                self.info.plan_version = version
            outcome = serve(ctx, asg)
            log.info("slot %s: formation %s ended: %s", self.slot_id, asg.group_id, outcome)
            if outcome is not Outcome.MOVED:
                self.report("idle", plan_version=version)
                self.stop.wait(self.settings.slot.retry_s)
        self._unregister()
        return 0

    def _context(self) -> Any:
        import torch

        from workers.engine import load_tokenizer
        from workers.model.loader import read_config, read_state_dict
        from workers.slot_group import SlotContext

        ecfg, device = self.settings.engine, self.settings.slot.device
        if ecfg.num_threads:
            torch.set_num_threads(ecfg.num_threads)
        return SlotContext(
            self.settings, self.slot_id, "cpu" if device.startswith("cpu") else device,
            read_config(ecfg.model_dir), read_state_dict(ecfg.model_dir),
            load_tokenizer(ecfg.model_dir), self.client, self.keys, self.stop, self.report,
            self.ack_version,
        )  # fmt: skip

    def _current(self) -> tuple[int, Assignment | None]:
        try:
            plan = read_plan(self.client, self.keys)
        except redis.RedisError as e:
            log.warning("reading the plan: %s", e)
            return -1, None
        if plan is None:
            return 0, None
        return plan.version, plan.assignment(self.slot_id)

    def _wait_for_new_plan(self, version: int) -> None:
        while not self.stop.wait(self.settings.slot.plan_poll_s):
            if self._current()[0] != version:
                return

    # ---- registration ----

    def report(
        self, state: str, asg: Assignment | None = None, worker_id: str = "",
        plan_version: int | None = None,
    ) -> None:  # fmt: skip
        with self._lock:
            self.info.state = state
            self.info.group_id = asg.group_id if asg else ""
            self.info.rank = asg.rank if asg else -1
            self.info.worker_id = worker_id
            if plan_version is not None:
                self.info.plan_version = plan_version
        self._write()

    def ack_version(self, version: int) -> None:
        with self._lock:
            if self.info.plan_version == version:
                return
            self.info.plan_version = version
        self._write()

    def _write(self) -> None:
        ttl_s = 3 * self.settings.slot.heartbeat_s + 1.0
        with self._lock:
            info = SlotInfo(**{k: getattr(self.info, k) for k in SlotInfo.__slots__})  # type: ignore[attr-defined]
        try:
            register_slot(self.client, self.keys, info, ttl_s)
        except redis.RedisError as e:
            log.warning("slot registration: %s", e)

    def _heartbeat_loop(self) -> None:
        while not self._beat_done.wait(self.settings.slot.heartbeat_s):
            self._write()

    def _unregister(self) -> None:
        self._beat_done.set()
        try:
            unregister_slot(self.client, self.keys, self.slot_id)
        except redis.RedisError as e:
            log.warning("slot unregistration: %s", e)
        log.info("slot %s stopped", self.slot_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dilaserve slot", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
