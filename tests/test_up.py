"""`dilaserve up`: one command brings up Redis, gateway and a worker; Ctrl-C stops them all,
and killing it outright takes its children down too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from common.redis_server import free_port
from tests.dataplane_helpers import REPO, child_env, stop
from tests.stack import wait_status


def _as_background_job() -> None:
    """What a script's `dilaserve up &` gets from its shell: SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _up(model_dir: Path, tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`dilaserve up` with one worker, started as a script's background job; waits for it."""
    port = free_port()
    env = child_env("")
    env.pop("REDIS_URL")
    with open(tmp_path / "up.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dilaserve", "up", "--workers", "1", "--port", str(port),
             "--model-dir", str(model_dir), "--data-dir", str(tmp_path / "data")],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=_as_background_job,
        )  # fmt: skip
    deadline = time.monotonic() + 90
    while "DiLaServe is up" not in (tmp_path / "up.log").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc, signal.SIGKILL)
            pytest.fail((tmp_path / "up.log").read_text())
        time.sleep(0.2)
    return proc, f"http://127.0.0.1:{port}"


def test_up_serves_and_stops_cleanly(model_dir: Path, tmp_path: Path) -> None:
    """SIGINT stops everything, even started as a background job (CI runners, `nohup`)."""
    proc, url = _up(model_dir, tmp_path)
    try:
        r = httpx.post(f"{url}/v1/requests", json={"prompt": "abc", "max_tokens": 8})
        assert wait_status(url, r.json()["id"], {"done"})["text"] is not None
        assert (tmp_path / "data" / "redis").is_dir()  # private Redis with its data dir
        proc.send_signal(signal.SIGINT)
        assert proc.wait(40) == 0
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/healthz", timeout=1)  # the gateway is gone
    finally:
        stop(proc, signal.SIGKILL)


def test_children_do_not_outlive_a_killed_up(model_dir: Path, tmp_path: Path) -> None:
    """SIGKILL gives `up` no chance to stop anything: Redis, the gateway and the worker must
    still go (the kernel signals them when their parent dies), not hold the ports as orphans."""
    proc, _ = _up(model_dir, tmp_path)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(children) == 3  # redis-server, gateway, worker
    stop(proc, signal.SIGKILL)
    deadline = time.monotonic() + 30
    alive = [int(pid) for pid in children]
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _running(pid)]
        time.sleep(0.2)
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"orphans left running: {alive}"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited (its new parent reaps it)
