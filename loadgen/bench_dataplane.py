"""Data-plane benchmarks, written as JSON (`dilaserve bench-dataplane`):

1. gateway submit and poll: throughput and latency percentiles, side by side with a bare FastAPI
   endpoint doing no work (same client, same concurrency, same run);
2. dispatch latency: submit → claimed by an idle worker;
3. worker overhead under saturation: share of busy wall time outside the model forward, and
   Redis round trips per step, at two batch sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", help="checkpoint (default: the demo model)")
    parser.add_argument("--num-requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--num-dispatch", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--block-length", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("bench_dataplane.json"))


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def _summary(lat_s: list[float], wall_s: float) -> dict[str, float]:
    return {
        "num": len(lat_s), "throughput_rps": len(lat_s) / wall_s,
        "p50_ms": _pct(lat_s, 0.5) * 1e3, "p99_ms": _pct(lat_s, 0.99) * 1e3,
    }  # fmt: skip


async def _hammer(
    url: str, paths: list[tuple[str, str, Any]], concurrency: int
) -> dict[str, float]:
    import httpx

    lat: list[float] = []
    todo = list(reversed(paths))
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one() -> None:
            while todo:
                method, path, body = todo.pop()
                t = time.perf_counter()
                r = await client.request(method, path, json=body)
                lat.append(time.perf_counter() - t)
                assert r.status_code < 300, r.text

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        return _summary(lat, time.perf_counter() - t0)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as f:
        return subprocess.Popen(
            [sys.executable, *args], env=env, stdout=f, stderr=subprocess.STDOUT
        )


def _wait_http(url: str, timeout_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=0.5).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _bench_http(gw: str, bare: str, args: argparse.Namespace) -> dict[str, Any]:
    body = {"prompt": "abc", "max_tokens": args.max_tokens, "block_length": args.block_length}
    subs = [("POST", "/v1/requests", body)] * args.num_requests
    out: dict[str, Any] = {}
    for name, url in (("bare_fastapi", bare), ("gateway", gw)):
        asyncio.run(_hammer(url, subs[:200], args.concurrency))  # warm-up
        out[f"submit_{name}"] = asyncio.run(_hammer(url, subs, args.concurrency))
    import httpx

    rid = httpx.post(f"{gw}/v1/requests", json=body).json()["id"]
    polls = [("GET", f"/v1/requests/{rid}", None)] * args.num_requests
    for name, url in (("bare_fastapi", bare), ("gateway", gw)):
        out[f"poll_{name}"] = asyncio.run(_hammer(url, polls, args.concurrency))
    for kind in ("submit", "poll"):
        g, b = out[f"{kind}_gateway"], out[f"{kind}_bare_fastapi"]
        out[f"{kind}_throughput_ratio"] = g["throughput_rps"] / b["throughput_rps"]
        out[f"{kind}_p99_ratio"] = g["p99_ms"] / b["p99_ms"]
    return out


def _bench_dispatch(gw: str, bus: Any, args: argparse.Namespace) -> dict[str, float]:
    import httpx

    lat = []
    body = {"prompt": "abc", "max_tokens": args.block_length, "block_length": args.block_length}
    for _ in range(args.num_dispatch):
        rid = httpx.post(f"{gw}/v1/requests", json=body).json()["id"]
        while bus.get(rid).get("status") not in ("done", "failed"):
            time.sleep(0.01)
        h = bus.get(rid)
        lat.append((float(h["claimed_ms"]) - float(h["arrival_ms"])) / 1e3)
        time.sleep(0.05)
    return {"p50_ms": _pct(lat, 0.5) * 1e3, "p99_ms": _pct(lat, 0.99) * 1e3, "num": len(lat)}


def _bench_overhead(gw: str, bus: Any, batch: int, args: argparse.Namespace) -> dict[str, float]:
    import httpx

    from common.bus import now_ms
    from common.schemas import RequestRecord

    wid = next(iter(bus.client.smembers(bus.keys.workers())))
    before = bus.client.hgetall(bus.keys.worker(wid))
    body = {"prompt": "abc", "max_tokens": args.max_tokens, "block_length": args.block_length}
    proto = bus.get(httpx.post(f"{gw}/v1/requests", json=body).json()["id"])
    # enqueue the whole burst in one round trip, so the worker sees a full queue at once
    pipe = bus.client.pipeline(transaction=False)
    ids = [f"ovh-{batch}-{i}" for i in range(batch)]  # one full batch
    for rid in ids:
        rec = RequestRecord(
            id=rid, pool="default", slo_class="standard", prompt="abc",
            prompt_ids=json.loads(proto["prompt_ids"]), max_tokens=args.max_tokens,
            block_length=args.block_length, arrival_ms=now_ms(), deadline_ms=now_ms() + 6e5,
        )  # fmt: skip
        bus.run(bus.calls.submit(rec, 10**6, {}), pipe)
    pipe.execute()
    for rid in ids:
        while bus.get(rid).get("status") not in ("done", "failed"):
            time.sleep(0.02)
    time.sleep(1.5)  # the idle export reaches the heartbeat
    after = bus.client.hgetall(bus.keys.worker(wid))
    d = {k: float(after.get(k, 0)) - float(before.get(k, 0))
         for k in ("forward_s", "busy_s", "num_steps", "num_round_trips")}  # fmt: skip
    return {
        "batch_size": batch, "num_steps": d["num_steps"],
        "overhead_share": 1 - d["forward_s"] / d["busy_s"] if d["busy_s"] else float("nan"),
        "round_trips_per_step": d["num_round_trips"] / d["num_steps"] if d["num_steps"] else 0,
        "step_ms": 1e3 * d["busy_s"] / d["num_steps"] if d["num_steps"] else 0,
    }  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from common.bus import Bus
    from common.config import RedisCfg, Settings
    from common.redis_server import RedisServer, free_port

    settings = Settings()
    model_dir = Path(args.model_dir or settings.engine.model_dir).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="bench-dataplane-"))
    server = RedisServer(data_dir=tmp / "redis").start()
    gw_port, bare_port = free_port(), free_port()
    env = {**os.environ, "REDIS_URL": server.url, "DILA_GATEWAY__PORT": str(gw_port),
           "DILA_ENGINE__MODEL_DIR": str(model_dir), "OMP_NUM_THREADS": "1",
           "DILA_ENGINE__NUM_THREADS": "1", "DILA_WORKER__HEARTBEAT_S": "0.5"}  # fmt: skip
    procs = [
        _spawn(["-m", "gateway"], env, tmp / "gateway.log"),
        _spawn(["-m", "uvicorn", "loadgen.bare_app:app", "--port", str(bare_port),
                "--log-level", "warning"], env, tmp / "bare.log"),  # fmt: skip
    ]
    gw, bare = f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{bare_port}"
    try:
        _wait_http(f"{gw}/healthz")
        _wait_http(f"{bare}/docs")
        result: dict[str, Any] = {"http": _bench_http(gw, bare, args)}
        bus = Bus(RedisCfg(url=server.url))
        bus.client.delete(bus.keys.queue("default"))  # the submit bench's backlog
        procs.append(_spawn(["-m", "workers"], env, tmp / "worker.log"))
        while not bus.client.smembers(bus.keys.workers()):
            time.sleep(0.1)
        result["dispatch"] = _bench_dispatch(gw, bus, args)
        result["worker_overhead"] = [_bench_overhead(gw, bus, b, args) for b in (4, 32)]
        result["config"] = {k: str(v) for k, v in vars(args).items() if k != "func"}
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        server.stop()
    return 0
