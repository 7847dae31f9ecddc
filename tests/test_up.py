"""`dilaserve up`: one command brings up Redis, gateway and a worker; Ctrl-C stops them all."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from common.redis_server import free_port
from tests.dataplane_helpers import REPO, child_env, stop
from tests.stack import wait_status


def _as_background_job() -> None:
    """What a script's `dilaserve up &` gets from its shell: SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_up_serves_and_stops_cleanly(model_dir: Path, tmp_path: Path) -> None:
    """Started as a script's background job (SIGINT ignored), as CI runners and `nohup` do:
    SIGINT must still stop everything."""
    port = free_port()
    env = child_env("")
    env.pop("REDIS_URL")
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "dilaserve", "up", "--workers", "1", "--port", str(port),
         "--model-dir", str(model_dir), "--data-dir", str(tmp_path / "data")],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_as_background_job,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while "DiLaServe is up" not in (tmp_path / "up.log").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, (
                tmp_path / "up.log"
            ).read_text()
            time.sleep(0.2)
        r = httpx.post(f"{url}/v1/requests", json={"prompt": "abc", "max_tokens": 8})
        assert wait_status(url, r.json()["id"], {"done"})["text"] is not None
        assert (tmp_path / "data" / "redis").is_dir()  # private Redis with its data dir
        proc.send_signal(signal.SIGINT)
        assert proc.wait(40) == 0
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            raise AssertionError("gateway still answers after Ctrl-C")
        except httpx.HTTPError:
            pass
    finally:
        stop(proc, signal.SIGKILL)
        log.close()
