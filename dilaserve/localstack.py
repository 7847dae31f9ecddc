"""A whole DiLaServe on this machine as child processes: a private Redis (unless one is given),
the gateway and N CPU workers. Used by `dilaserve up` and by the real-system benchmark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common.children import preexec
from common.redis_server import RedisServer


@dataclass
class LocalStack:
    model_dir: Path
    data_dir: Path
    num_workers: int = 2
    host: str = "127.0.0.1"
    port: int = 8000
    redis_url: str | None = None  # None → start a private redis-server with AOF
    env_extra: dict[str, str] = field(default_factory=dict)
    tp: int = 0  # > 0: the workers are slots, grouped by a uniform plan into TP groups of tp
    slot_device: str = "cpu"  # slot i runs on f"{slot_device}:{i}" (cuda: one GPU per slot)
    # > 0: the gateway runs at this niceness, so the workers get the cores first (the benchmark:
    # on a real cluster the gateway does not share the accelerators' hosts' compute).
    gateway_niceness: int = 0
    pin_workers: bool = False  # worker i on core i, while there are no more workers than cores
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    server: RedisServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def logs(self) -> Path:
        return self.data_dir / "logs"

    def start(self, timeout_s: float = 120.0) -> LocalStack:
        self.logs.mkdir(parents=True, exist_ok=True)
        if not self.redis_url:
            self.server = RedisServer(data_dir=self.data_dir / "redis", appendonly=True).start()
            self.redis_url = self.server.url
        cmds = [["-m", "gateway"]] + [self._worker_cmd(i) for i in range(self.num_workers)]
        for i, cmd in enumerate(cmds):
            name = "gateway" if i == 0 else f"{'slot' if self.tp else 'worker'}{i - 1}"
            with open(self.logs / f"{name}.log", "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, *cmd], env=self._env(), stdout=log, stderr=subprocess.STDOUT,
                    preexec_fn=preexec(self._placement(i - 1)),
                )
            self.procs.append(proc)
        if self.tp:
            self._publish_plan()
        if not self._wait_ready(timeout_s):
            self.stop(5.0)
            raise RuntimeError(f"the stack did not come up; see {self.logs}/")
        return self

    def _placement(self, worker: int) -> Callable[[], None] | None:
        """What the child does before it execs: the gateway (worker -1) lowers its priority;
        with `pin_workers` and a core per worker, worker i keeps to core i: one process per
        device, as on a GPU node. Measured on 2 cores at 45 req/s with the gateway at niceness
        10: p50 latency 260 → 191 ms; but with the gateway at niceness 0 pinned workers cannot
        move away from it and the stack saturated at 75 req/s, hence off by default."""
        cores = sorted(os.sched_getaffinity(0))
        nice = self.gateway_niceness if worker < 0 else 0
        pinned = self.pin_workers and 0 <= worker and self.num_workers <= len(cores)
        pin = {cores[worker]} if pinned else None
        if not nice and pin is None:
            return None

        def place() -> None:
            if nice:
                os.nice(nice)
            if pin is not None:
                os.sched_setaffinity(0, pin)

        return place

    def _worker_cmd(self, i: int) -> list[str]:
        if not self.tp:
            return ["-m", "workers"]
        return ["-m", "dilaserve", "slot", "--node", "n0", "--device", f"{self.slot_device}:{i}"]

    def _publish_plan(self) -> None:
        """Every slot in TP groups of `tp` (slot ids are known before the slots register)."""
        import redis

        from common.keys import Keys
        from common.plan import slot_id_of, uniform_plan
        from common.plan_bus import publish_plan

        slots = [slot_id_of("n0", f"{self.slot_device}:{i}") for i in range(self.num_workers)]
        plan = uniform_plan(slots, self.tp, source="up")
        client = redis.Redis.from_url(str(self.redis_url), decode_responses=True)
        try:
            publish_plan(client, Keys(self._env().get("DILA_REDIS__PREFIX", "dila")), plan)
        finally:
            client.close()

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self, timeout_s: float) -> None:
        """SIGTERM everything (gateway and workers drain), then kill what is left."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "REDIS_URL": str(self.redis_url), "OMP_NUM_THREADS": "1",
            "DILA_ENGINE__NUM_THREADS": "1", "DILA_GATEWAY__PORT": str(self.port),
            "DILA_GATEWAY__HOST": self.host,
            "DILA_ENGINE__MODEL_DIR": str(Path(self.model_dir).resolve()),
        })  # fmt: skip
        env.update(self.env_extra)
        return env

    def _wait_ready(self, timeout_s: float) -> bool:
        """Gateway ready and every worker heartbeating."""
        import httpx
        import redis

        from common.keys import Keys

        deadline = time.monotonic() + timeout_s
        client = redis.Redis.from_url(str(self.redis_url), decode_responses=True)
        keys = Keys(self._env().get("DILA_REDIS__PREFIX", "dila"))
        try:
            while time.monotonic() < deadline:
                if not self.alive():
                    return False
                try:
                    ready = httpx.get(f"{self.url}/readyz", timeout=0.5).status_code == 200
                except httpx.HTTPError:
                    ready = False
                workers = [w for w in client.smembers(keys.workers())
                           if client.exists(keys.worker(w))]  # fmt: skip
                if ready and len(workers) >= self.num_workers // max(self.tp, 1):
                    return True
                time.sleep(0.2)
            return False
        finally:
            client.close()
