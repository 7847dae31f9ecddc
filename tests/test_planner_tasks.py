"""The planner's Redis jobs and its Celery app, against the private test Redis."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from celery.contrib.testing.worker import start_worker

from common.bus import Bus, now_ms
from common.config import PlannerCfg, RedisCfg, Settings
from common.keys import Keys
from common.plan_bus import SlotInfo, read_plan, register_slot
from common.schemas import RequestRecord
from planner.feed import count_arrival
from planner.replan import housekeeping_once, replan_once, status_key, watch_once
from planner.tasks import broker_url, make_app

PREFIX = "tpl"


@pytest.fixture()
def settings(redis_url: str) -> Settings:
    return Settings(  # type: ignore[call-arg]
        redis=RedisCfg(url=redis_url, prefix=PREFIX),
        planner=PlannerCfg(celery_db=1, time_limit_s=5.0, batch_sizes=[1, 4, 16]),
    )


@pytest.fixture()
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    yield c
    c.close()


def _cluster(
    client: redis.Redis, num_slots: int = 4, rates: dict[str, float] | None = None
) -> None:
    keys = Keys(PREFIX)
    for i in range(num_slots):
        info = SlotInfo(f"n0/cpu:{i}", "n0", f"cpu:{i}", "idle")
        register_slot(client, keys, info, ttl_s=60)
    t = now_ms()
    for cls, rps in (rates or {"interactive": 0.5, "standard": 1.0, "batch": 0.5}).items():
        for back_s in range(10, 70, 10):  # six complete 10-s buckets
            for _ in range(round(rps * 10)):
                count_arrival(client, keys, cls, t - back_s * 1000)


def test_broker_url_keeps_server_and_swaps_db() -> None:
    assert broker_url("redis://:pw@h:6380/0?x=1", 3) == "redis://:pw@h:6380/3?x=1"
    assert broker_url("redis://127.0.0.1:6379", 1) == "redis://127.0.0.1:6379/1"


def test_replan_publishes_once_and_is_idempotent(client: redis.Redis, settings: Settings) -> None:
    _cluster(client)
    keys = Keys(PREFIX)
    first = replan_once(client, keys, settings)
    assert first["status"] == "optimal", first
    plan = read_plan(client, keys)
    assert plan is not None and plan.source == "planner" and plan.version == first["version"]
    assert set(plan.slot_ids()) <= {f"n0/cpu:{i}" for i in range(4)}
    assert set(plan.routing) == {"interactive", "standard", "batch"}
    # the plan carries its prediction for operators (status, dashboard, /metrics)
    assert plan.status == "optimal" and plan.solve_ms is not None and plan.reason
    assert set(plan.attainment) == set(plan.routing) and plan.accuracy
    assert plan.rates_rps["standard"] == pytest.approx(first["rates"]["standard"], abs=1e-3)
    again = replan_once(client, keys, settings)
    assert again.get("unchanged") and read_plan(client, keys).version == plan.version  # type: ignore[union-attr]
    status = {k: json.loads(v) for k, v in client.hgetall(status_key(keys)).items()}
    assert status["rate_source"] == "arrivals" and status["rates"]["standard"] > 0.5
    assert watch_once(client, keys, settings) == []  # rates as planned: nothing drifted


def test_replan_failure_keeps_the_plan(client: redis.Redis, settings: Settings) -> None:
    _cluster(client)
    keys = Keys(PREFIX)
    assert replan_once(client, keys, settings)["status"] == "optimal"
    before = read_plan(client, keys)
    strict = settings.model_copy(
        update={"planner": settings.planner.model_copy(update={"accuracy_budget_pts": -50.0})}
    )
    out = replan_once(client, keys, strict)
    assert out["status"] == "kept_previous" and "accuracy floor" in out["reason"]
    assert read_plan(client, keys) == before


def test_housekeeping_drops_dead_entries(client: redis.Redis, settings: Settings) -> None:
    keys = Keys(PREFIX)
    client.sadd(keys.slots(), "n9/cpu:0")  # its hash expired long ago
    client.sadd(keys.pools(), "p")
    client.zadd(keys.queue("p"), {"gone": 1.0})
    out = housekeeping_once(client, keys)
    assert out["slots"] == 1 and out["queued"] == 1
    assert housekeeping_once(client, keys)["queued"] == 0  # idempotent


@pytest.fixture()
def app(settings: Settings) -> Celery:
    return make_app(settings)


@pytest.fixture()
def worker(app: Celery) -> Iterator[None]:
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield


def test_celery_worker_runs_json_tasks_and_refuses_pickle(
    app: Celery, worker: None, client: redis.Redis, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(PREFIX)
    assert app.send_task("planner.ping", args=["json-1"]).get(timeout=20) == "json-1"
    with caplog.at_level(logging.ERROR):
        app.send_task("planner.ping", args=["pickled"], serializer="pickle")
        deadline = time.time() + 10
        while time.time() < deadline and "pickle" not in caplog.text:
            time.sleep(0.05)
    assert "Refusing to deserialize untrusted content of type pickle" in caplog.text
    assert client.get(keys.stats("planner:ping")) == "json-1"  # the pickled task never ran
    assert app.send_task("planner.ping", args=["json-2"]).get(timeout=20) == "json-2"
    broker = redis.Redis.from_url(broker_url(redis_url, 1))
    assert broker.llen("dila-planner") == 0  # refused and dropped, not left in the queue
    broker.close()


def test_celery_replan_and_reap(
    app: Celery, worker: None, client: redis.Redis, settings: Settings
) -> None:
    _cluster(client)
    keys = Keys(PREFIX)
    result = app.send_task("planner.replan").get(timeout=60)
    assert result["status"] == "optimal" and read_plan(client, keys) is not None
    bus = Bus(settings.redis, client)
    rec = RequestRecord(
        id="r1", pool="p", slo_class="standard", prompt="ab", prompt_ids=[4, 5], max_tokens=8,
        block_length=8, arrival_ms=now_ms(), deadline_ms=now_ms() + 60_000,
    )  # fmt: skip
    bus.run(bus.calls.submit(rec, 100, {}))
    bus.claim("p", "dead-worker", 1, lease_ms=1)  # its lease expires at once
    time.sleep(0.01)
    assert app.send_task("planner.reap_leases").get(timeout=20) == [1, 0, 0]
    assert bus.get("r1")["status"] == "queued"
    assert app.send_task("planner.housekeeping").get(timeout=20)["queued"] == 0
