"""A whole local stack for tests: gateway and workers as subprocesses on a private Redis."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from common.bus import Bus
from common.config import RedisCfg
from tests.dataplane_helpers import child_env, spawn, start_gateway, stop


@dataclass
class Stack:
    redis_url: str
    model_dir: Path
    log_dir: Path
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    env_extra: dict[str, str] = field(default_factory=dict)
    gateway: subprocess.Popen[bytes] | None = None
    url: str = ""
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        defaults = {
            "DILA_REDIS__PREFIX": self.prefix,
            "DILA_ENGINE__MODEL_DIR": str(self.model_dir),
            "DILA_ENGINE__MAX_BATCH_SIZE": "8",
            "DILA_WORKER__HEARTBEAT_S": "0.3",
            "DILA_WORKER__LEASE_S": "2",
            "DILA_WORKER__REAP_INTERVAL_S": "0.3",
            "DILA_GATEWAY__DRAIN_GRACE_S": "0.5",
            "DILA_GATEWAY__DRAIN_TIMEOUT_S": "3",
        }
        return child_env(self.redis_url, **{**defaults, **self.env_extra})

    def bus(self) -> Bus:
        return Bus(RedisCfg(url=self.redis_url, prefix=self.prefix))

    def start_gateway(self) -> str:
        self.gateway, self.url = start_gateway(self.env, self.log_dir / "gateway.log")
        return self.url

    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        i = len(self.workers)
        proc = spawn(["-m", "workers"], {**self.env, **env}, self.log_dir / f"worker{i}.log")
        self.workers.append(proc)
        return proc

    def wait_workers(self, n: int, timeout_s: float = 60) -> None:
        bus = self.bus()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            alive = [w for w in bus.client.smembers(bus.keys.workers())
                     if bus.client.exists(bus.keys.worker(w))]  # fmt: skip
            if len(alive) >= n:
                return
            for w in self.workers:
                if w.poll() is not None:
                    raise RuntimeError(f"worker exited: {self.logs()}")
            time.sleep(0.1)
        raise RuntimeError(f"{n} workers did not heartbeat in {timeout_s}s: {self.logs()}")

    def logs(self) -> str:
        logs = sorted(self.log_dir.glob("*.log"))
        return "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in logs)

    def close(self) -> None:
        for w in self.workers:
            stop(w, signal.SIGKILL, 5)
        if self.gateway is not None:
            stop(self.gateway, signal.SIGKILL, 5)


@contextmanager
def serving(
    redis_url: str, model_dir: Path, log_dir: Path, env_extra: dict[str, str] | None = None,
    workers: int = 1,
) -> Iterator[Stack]:  # fmt: skip
    """A gateway and `workers` workers that heartbeat, torn down on exit."""
    s = Stack(redis_url, model_dir, log_dir, env_extra=env_extra or {})
    try:
        s.start_gateway()
        for _ in range(workers):
            s.start_worker()
        s.wait_workers(workers)
        yield s
    finally:
        s.close()


def wait_status(url: str, req_id: str, statuses: set[str], timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    body: dict = {}
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/v1/requests/{req_id}", timeout=5).json()
        if body.get("status") in statuses:
            return body
        time.sleep(0.05)
    raise AssertionError(f"{req_id} never reached {statuses}: {body}")


def wait_heartbeat(bus: Bus, worker: str, want: dict[str, str], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        hb = bus.client.hgetall(bus.keys.worker(worker))
        if all(hb.get(k) == v for k, v in want.items()):
            return
        time.sleep(0.05)
    raise AssertionError(f"heartbeat of {worker} never showed {want}: {hb}")
