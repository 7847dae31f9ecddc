"""`dilaserve up`: the whole stack on this machine — a private Redis (AOF), the gateway and N CPU
workers with the demo model. Ctrl-C (or SIGTERM) drains and stops everything."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

DATA_DIR = Path(".dilaserve")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2, help="CPU worker processes (default 2)")
    parser.add_argument("--host", help="gateway host (default: settings, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="gateway port (default: settings, 8000)")
    parser.add_argument("--model-dir", help="checkpoint directory (default: the demo model)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR,
                        help="Redis data (AOF) and logs (default ./.dilaserve)")  # fmt: skip


def _child_env(redis_url: str, args: argparse.Namespace, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "REDIS_URL": redis_url, "OMP_NUM_THREADS": "1", "DILA_ENGINE__NUM_THREADS": "1",
        "DILA_GATEWAY__PORT": str(port),
    })  # fmt: skip
    if args.host:
        env["DILA_GATEWAY__HOST"] = args.host
    if args.model_dir:
        env["DILA_ENGINE__MODEL_DIR"] = str(Path(args.model_dir).resolve())
    return env


def _wait_healthy(url: str, procs: list[subprocess.Popen[bytes]], timeout_s: float) -> bool:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        try:
            if httpx.get(f"{url}/readyz", timeout=0.5).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def _banner(url: str, n: int, redis_url: str, logs: Path) -> str:
    return f"""
DiLaServe is up: gateway {url}, {n} worker(s), Redis {redis_url}
  submit:  curl -s {url}/v1/requests -H 'content-type: application/json' \\
             -d '{{"prompt": "abc", "max_tokens": 32}}'
  poll:    curl -s {url}/v1/requests/<id>
  openai:  OpenAI(base_url="{url}/v1", api_key="none")
  logs:    {logs}/
Ctrl-C stops everything.
"""


def _stop_all(procs: list[subprocess.Popen[bytes]], timeout_s: float) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run(args: argparse.Namespace) -> int:
    from common.config import Settings
    from common.redis_server import RedisServer

    settings = Settings()
    model_dir = Path(args.model_dir or settings.engine.model_dir)
    if not (model_dir / "config.json").is_file():
        print(f"no model at {model_dir}; pass --model-dir", file=sys.stderr)
        return 2
    args.data_dir.mkdir(parents=True, exist_ok=True)
    logs = args.data_dir / "logs"
    logs.mkdir(exist_ok=True)
    server = None
    redis_url = settings.redis_url
    if not redis_url:
        server = RedisServer(data_dir=args.data_dir / "redis", appendonly=True).start()
        redis_url = server.url
    port = args.port or settings.gateway.port
    env = _child_env(redis_url, args, port)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        cmds = [["-m", "gateway"]] + [["-m", "workers"]] * args.workers
        for i, cmd in enumerate(cmds):
            name = "gateway" if i == 0 else f"worker{i - 1}"
            with open(logs / f"{name}.log", "ab") as log:
                procs.append(subprocess.Popen([sys.executable, *cmd], env=env, stdout=log,
                                              stderr=subprocess.STDOUT))  # fmt: skip
        url = f"http://{args.host or settings.gateway.host}:{port}"
        if not _wait_healthy(url, procs, 120):
            print(f"the stack did not come up; see {logs}/", file=sys.stderr)
            return 1
        print(_banner(url, args.workers, redis_url, logs), flush=True)
        while not stop["now"] and all(p.poll() is None for p in procs):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping…", file=sys.stderr)
        timeout_s = max(settings.gateway.drain_timeout_s, settings.worker.drain_timeout_s) + 5
        _stop_all(procs, timeout_s)
        if server is not None:
            server.stop()
    return 0
