"""`dilaserve up --workers 2 --tp 2`: two CPU slots form one TP-2 instance; Ctrl-C stops all."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from common.keys import Keys
from common.plan_bus import live_slots, read_plan
from common.redis_server import free_port
from tests.dataplane_helpers import REPO, child_env, stop
from tests.stack import wait_status


def _wait_up(proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while "DiLaServe is up" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    line = next(ln for ln in log.read_text().splitlines() if ln.startswith("DiLaServe is up"))
    return line.split("Redis ")[1].strip()


def test_up_with_tp2_serves_through_one_group(model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = child_env("", DILA_SLOT__HEARTBEAT_S="0.3", DILA_SLOT__PLAN_POLL_S="0.1")
    env.pop("REDIS_URL")
    log_path = tmp_path / "up.log"
    log = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "dilaserve", "up", "--workers", "2", "--tp", "2", "--port",
         str(port), "--model-dir", str(model_dir), "--data-dir", str(tmp_path / "data")],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        client = redis.Redis.from_url(_wait_up(proc, log_path, 120), decode_responses=True)
        keys = Keys()
        plan = read_plan(client, keys)
        assert plan is not None and [g.slots for g in plan.groups] == [["n0/cpu:0", "n0/cpu:1"]]
        r = httpx.post(f"{url}/v1/requests", json={"prompt": "abc", "max_tokens": 8,
                                                   "block_length": 8})  # fmt: skip
        body = wait_status(url, r.json()["id"], {"done", "failed"})
        assert body["status"] == "done", body
        leader = next(s for s in live_slots(client, keys) if s.rank == 0)
        assert body["worker"] == leader.worker_id
        assert client.hget(keys.worker(leader.worker_id), "tp_degree") == "2"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, log_path.read_text()
        client.close()
    finally:
        stop(proc, signal.SIGKILL)
        log.close()
    for slot_log in sorted((tmp_path / "data" / "logs").glob("slot*.log")):
        assert "stopped" in slot_log.read_text(), slot_log.read_text()
