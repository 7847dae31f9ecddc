"""`dilaserve bench-regroup`: how long a live reconfiguration takes, under load.

Brings up a local stack (private Redis, gateway, N slots), serves a steady open-loop stream of
requests, and alternates the plan between TP 1 × N and TP d × N/d. Each switch is timed from
publishing the plan to every slot serving in its new group (the drain at block boundaries, the
group teardown, the rendezvous and the reshard from host memory). At the end every request must
be done exactly once. Writes JSON. `--device cuda` puts slot i on cuda:i (NCCL groups).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    from common.config import DEFAULT_MODEL_DIR

    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="checkpoint directory")
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--tp", type=int, default=2, help="the grouped plan's TP degree")
    p.add_argument("--switches", type=int, default=4, help="plan changes (alternating)")
    p.add_argument("--hold-s", type=float, default=3.0, help="serving time between switches")
    p.add_argument("--rate-rps", type=float, default=4.0, help="request arrival rate")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--block-length", type=int, default=16)
    p.add_argument("--device", default="cpu", help="cpu, or cuda (one GPU per slot)")
    p.add_argument("--port", type=int, default=0, help="gateway port (0: a free one)")
    p.add_argument("--out", type=Path, default=Path("bench_out/regroup.json"))


def run(args: argparse.Namespace) -> int:
    from common.redis_server import free_port
    from dilaserve.localstack import LocalStack

    if args.slots % args.tp:
        raise SystemExit(f"--slots {args.slots} is not a multiple of --tp {args.tp}")
    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(
            args.model, Path(tmp), args.slots, port=args.port or free_port(), tp=1,
            slot_device=args.device,
        )  # fmt: skip
        try:
            stack.start(timeout_s=300)
            report = _bench(stack, args)
        finally:
            stack.stop(60.0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))
    print(f"wrote {args.out}")
    return 0 if report["summary"]["all_done_once"] else 1


def _bench(stack: Any, args: argparse.Namespace) -> dict[str, Any]:
    import redis

    from common.keys import Keys
    from common.plan import uniform_plan
    from common.plan_bus import live_slots

    client = redis.Redis.from_url(str(stack.redis_url), decode_responses=True)
    keys = Keys()
    slot_ids = [s.slot_id for s in live_slots(client, keys)]
    load = _Load(stack.url, args)
    load.start()
    switches = []
    try:
        for i in range(args.switches):
            time.sleep(args.hold_s)
            tp = args.tp if i % 2 == 0 else 1
            switches.append(_switch(client, keys, uniform_plan(slot_ids, tp, source="bench"), tp))
            print(f"switch {i + 1}: → TP {tp}: {switches[-1]['apply_s']:.2f}s", flush=True)
        time.sleep(args.hold_s)
    finally:
        load.stop()
    outcome = _outcomes(stack.url, client, keys, load.ids)
    client.close()
    times = [s["apply_s"] for s in switches if s["apply_s"] is not None]
    summary = {
        "num_switches": len(switches), "switch_s_mean": statistics.mean(times) if times else None,
        "switch_s_max": max(times) if times else None, **outcome,
    }  # fmt: skip
    return {"args": {k: str(v) for k, v in vars(args).items() if not k.startswith("_")},
            "switches": switches, "summary": summary}  # fmt: skip


def _switch(client: Any, keys: Any, plan: Any, tp: int) -> dict[str, Any]:
    from common.plan_bus import publish_plan
    from dilaserve.plan_cmd import wait_applied

    published = publish_plan(client, keys, plan)
    return {"to_tp": tp, "version": published.version,
            "apply_s": wait_applied(client, keys, published, timeout_s=300)}  # fmt: skip


class _Load(threading.Thread):
    """Open-loop Poisson arrivals of short random prompts."""

    def __init__(self, url: str, args: argparse.Namespace) -> None:
        super().__init__(daemon=True)
        self.url, self.args = url, args
        self.ids: list[str] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(30)

    def run(self) -> None:
        import httpx

        rng = random.Random(0)
        body = {"max_tokens": self.args.max_tokens, "block_length": self.args.block_length,
                "slo_class": "batch"}  # fmt: skip
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while not self._halt.wait(rng.expovariate(self.args.rate_rps)):
                prompt = "".join(rng.choice("abcdefgh") for _ in range(rng.randint(3, 9)))
                r = http.post("/v1/requests", json={"prompt": prompt, **body})
                if r.status_code == 202:
                    self.ids.append(r.json()["id"])


def _outcomes(url: str, client: Any, keys: Any, ids: list[str]) -> dict[str, Any]:
    """Wait for every request to end; count statuses, hand-backs and ends per request."""
    import httpx

    statuses: Counter[str] = Counter()
    deadline = time.monotonic() + 600
    for req_id in ids:
        status = ""
        while time.monotonic() < deadline:
            status = httpx.get(f"{url}/v1/requests/{req_id}", timeout=10).json()["status"]
            if status not in ("queued", "running"):
                break
            time.sleep(0.05)
        statuses[status] += 1
    ends = Counter(f["id"] for _, f in client.xrange(keys.finished()))
    handed_back = sum(
        any(f.get("type") == "requeued" for _, f in client.xrange(keys.events(r))) for r in ids
    )
    return {
        "num_requests": len(ids), "statuses": dict(statuses), "num_handed_back": handed_back,
        "all_done_once": statuses.get("done", 0) == len(ids)
        and all(ends[r] == 1 for r in ids),
    }  # fmt: skip
