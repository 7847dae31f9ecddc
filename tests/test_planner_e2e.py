"""The planner end to end on CPU (issue 7): four slots, a real gateway and Redis, the planner's
jobs on a beat; traffic shifts from a loose-SLO class to a tight one.

Device time is paced to a cost model (workers/pacing.py): a sub-batch costs 20 ms plus 40 ms
per refresh row or 20 ms per cached row, so a tight SLO needs small batches and a loose one
wants large ones, as on a GPU. The plan for the loose-heavy load gives the tight class one
small-batch instance. Then the same tight-heavy arrivals run twice from that plan: frozen, and
with the planner watching. The planner must move capacity (a new plan with other pools or
instance counts) and attainment must recover against the frozen run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common.config import EngineCfg, PlannerCfg, RedisCfg, SchedulerCfg, Settings, SloClassCfg
from common.keys import Keys
from common.plan import ClusterPlan
from common.plan_bus import publish_plan, read_plan
from common.redis_server import RedisServer
from dilaserve.plan_cmd import wait_applied
from planner import live
from planner.replan import replan_once
from tests.slot_helpers import Slots, save_tp_checkpoint
from tests.stack import Stack

GEN, BLOCK = 16, 8
LOOSE_HEAVY = {"tight": 0.3, "loose": 5.0}  # req/s: what the first plan is made for
TIGHT_HEAVY = {"tight": 4.0, "loose": 0.6}  # what arrives
DURATION_S = 24.0
CLASSES = [
    SloClassCfg(name="tight", slo_ms=1500, tau_floor=0.9, weight=2.0, late_action="drop"),
    SloClassCfg(name="loose", slo_ms=20_000, tau_floor=0.9, weight=1.0),
]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = save_tp_checkpoint(tmp_path_factory.mktemp("e2e-model"))
    tps = live.measure_tokens_per_step(out, [0.9], GEN, BLOCK)
    live.write_profiles(out, live.paced_cost_model(20.0, 40.0, 20.0), tps, GEN, BLOCK)
    return out


@pytest.fixture(scope="module")
def stack(
    redis_server: RedisServer, model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    s = Stack(redis_server.url, model, tmp_path_factory.mktemp("e2e-logs"), env_extra={
        "DILA_ENGINE__PACE_COST_MODEL": str(model / "costmodel.json"),
        "DILA_SCHEDULER__TAU_LADDER": "[0.9]",  # one τ: the plan moves capacity, not τ
        "DILA_SLO_CLASSES": json.dumps([c.model_dump() for c in CLASSES]),
        "DILA_GATEWAY__DEFAULT_SLO_CLASS": "loose",
    })  # fmt: skip
    slots = Slots(s)
    try:
        s.start_gateway()
        for i in range(4):
            slots.start(f"cpu:{i}")
        slots.wait_registered(4)
        yield s
    finally:
        s.close()


def _settings(stack: Stack, model: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        redis=RedisCfg(url=stack.redis_url, prefix=stack.prefix),
        engine=EngineCfg(model_dir=model, max_batch_size=8),
        scheduler=SchedulerCfg(tau_ladder=[0.9]),
        planner=PlannerCfg(tp_degrees=[1], batch_sizes=[1, 2, 4, 8], time_limit_s=5.0),
        slo_classes=CLASSES,
    )


def _shape(plan: ClusterPlan | None) -> dict[str, tuple[int | None, int]]:
    return {p.pool_id: (p.max_batch_size, p.num_instances) for p in (plan.pools if plan else [])}


def test_replanning_after_a_shift_to_tight_slos_recovers_attainment(
    stack: Stack, model: Path
) -> None:
    settings, keys = _settings(stack, model), Keys(stack.prefix)
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    live.seed_history(client, keys, LOOSE_HEAVY, 60, time.time() * 1000)
    assert replan_once(client, keys, settings)["status"] == "optimal"
    before = read_plan(client, keys)
    assert before is not None and wait_applied(client, keys, before, 60) is not None
    arrivals = live.poisson_arrivals(TIGHT_HEAVY, DURATION_S, seed=1)

    sent = live.replay(stack.url, arrivals, GEN, BLOCK, "frozen")
    frozen = live.attainment(live.wait_ended(client, keys, sent), sent)
    assert read_plan(client, keys) == before

    # the same history and plan again, now with the planner watching
    live.clear_history(client, keys, time.time() * 1000)
    live.seed_history(client, keys, LOOSE_HEAVY, 60, time.time() * 1000)
    if not replan_once(client, keys, settings).get("unchanged"):  # the planner's view is reset;
        before = publish_plan(client, keys, before)  # the plan must be too
        assert wait_applied(client, keys, before, 60) is not None
    beat = live.PlannerBeat(client, keys, settings)
    start_s = time.monotonic()
    beat.start()
    try:
        sent = live.replay(stack.url, arrivals, GEN, BLOCK, "replanned")
    finally:
        beat.close()
    records = live.wait_ended(client, keys, sent)
    replanned = live.attainment(records, sent)
    settled = live.attainment(records, sent, since_s=DURATION_S / 2)
    after = read_plan(client, keys)
    assert after is not None
    published = [e["at_s"] - start_s for e in beat.log if not e.get("unchanged")]
    print(f"\nplan for the loose-heavy load: {_shape(before)}, predicted {before.attainment}"
          f"\nplan after the shift: {_shape(after)} (v{after.version}), predicted "
          f"{after.attainment}\n{len(beat.log)} re-plans, new plans at "
          f"{[round(t, 1) for t in published]} s into the shift\nattainment frozen {frozen}"
          f"\nattainment re-planned {replanned}\n  second half {settled}")  # fmt: skip
    assert _shape(after) != _shape(before)  # the planner moved capacity
    assert after.rates_rps["tight"] > 2 * before.rates_rps["tight"]
    assert replanned["all"] >= frozen["all"] + 0.12
    assert replanned["tight"] >= frozen["tight"] + 0.15
    assert settled["tight"] >= 0.7
    client.close()
