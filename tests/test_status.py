"""`dilaserve status --once --json` against a running stack, and the view it prints built from
hand-written Redis state (plan, pools, workers)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from common.cluster_view import build_view, read_sync
from common.keys import Keys
from common.redis_server import RedisServer, free_port
from tests.dataplane_helpers import REPO, child_env
from tests.ops_helpers import run_done, submit, wait_for, watched_stack
from tests.stack import Stack


@pytest.fixture(scope="module")
def stack(
    redis_server: RedisServer, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("status-logs")
    with watched_stack(redis_server.url, model_dir, log_dir, 0.2) as s:
        yield s


def _status(redis_url: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = child_env(redis_url, DILA_REDIS__PREFIX=prefix)
    return subprocess.run(
        [sys.executable, "-m", "dilaserve", "status", "--once", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _view(stack: Stack) -> dict[str, Any]:
    out = _status(stack.redis_url, stack.prefix, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_status_json_reflects_running_stack(stack: Stack) -> None:
    done = run_done(stack.url, 2, slo_class="interactive")
    assert all(d["status"] == "done" for d in done), stack.logs()
    rid = submit(stack.url, slo_class="standard")  # in flight while status reads

    def counted() -> dict[str, Any] | None:
        # the gateway folds finished requests into windows within a moment; the worker's step
        # count reaches its heartbeat when it idles or every 20 steps, then at the next beat
        v = _view(stack)
        folded = v["classes"]["interactive"].get("60s", {}).get("finished") == 2
        return v if folded and all(w["num_steps"] > 0 for w in v["workers"]) else None

    view = wait_for(counted)
    (worker,) = view["workers"]
    assert worker["pool"] == "default" and worker["heartbeat_age_s"] < 5
    assert worker["tau"] == 0.9 and worker["num_steps"] > 0
    (pool,) = [p for p in view["pools"] if p["name"] == "default"]
    assert pool["num_workers"] == 1
    assert view["counters"]["arrivals"] >= 3
    minute = view["classes"]["interactive"]["60s"]
    assert minute["finished"] == 2 and minute["met"] + minute["missed"] == 2
    assert set(view["classes"]) >= {"interactive", "standard", "batch"}
    ids = {r["id"] for r in view["requests"]} | {r["id"] for r in view["recent"]}
    assert rid in ids


def test_status_tables_and_unreachable_redis(stack: Stack) -> None:
    out = _status(stack.redis_url, stack.prefix)
    assert out.returncode == 0, out.stderr
    assert "pools" in out.stdout and "workers" in out.stdout and "default" in out.stdout
    dead = _status(f"redis://127.0.0.1:{free_port()}/0", stack.prefix, "--json")
    assert dead.returncode == 2 and "Redis unreachable" in dead.stderr


def test_view_of_plan_pools_and_workers(redis_client: redis.Redis) -> None:
    keys = Keys("tv")
    now_ms = time.time() * 1000.0
    plan = {"version": 7, "status": "optimal", "solve_ms": 42.0, "attainment": {"standard": 0.97},
            "pools": [{"pool_id": "tp2-0.9", "tp": 2, "tau": 0.9, "tau_floor": 0.7,
                       "num_instances": 1, "max_batch_size": 16}]}  # fmt: skip
    redis_client.set(keys.plan(), json.dumps(plan))
    redis_client.xadd(keys.plan_log(), {"version": "7"})
    redis_client.sadd(keys.pools(), "tp2-0.9")
    redis_client.zadd(keys.queue("tp2-0.9"), {"a": now_ms - 500, "b": now_ms + 9000})
    redis_client.sadd(keys.workers(), "w1", "w-dead")
    redis_client.hset(keys.worker("w1"), mapping={
        "pool": "tp2-0.9", "tp_rank": "0", "tp_degree": "2", "ts_ms": str(now_ms - 250),
        "held": "3", "batch_size": "3", "utilisation": "0.5", "tau": "0.9", "claiming": "0",
    })  # fmt: skip
    view = build_view(read_sync(redis_client, keys, now_ms, with_requests=True), ["standard"])
    assert view["plan"]["version"] == 7 and view["plan"]["age_s"] < 5
    (pool,) = view["pools"]
    assert (pool["name"], pool["queue_len"]) == ("tp2-0.9", 2)
    assert (pool["tp_degree"], pool["tau"], pool["tau_floor"]) == (2, 0.9, 0.7)
    assert pool["oldest_slack_s"] == pytest.approx(-0.5, abs=0.01)
    assert pool["num_running"] == 3 and pool["planned_instances"] == 1
    (worker,) = view["workers"]
    assert worker["heartbeat_age_s"] == pytest.approx(0.25, abs=0.01) and not worker["claiming"]
    assert view["num_workers_gone"] == 1
    assert view["classes"] == {"standard": {}}
