"""A plan that drops a pool strands nothing: queued, handed-back, reaped and late-submitted
requests of a retired pool all land in the pools the new routing sends their class to. And
every submitted request counts as an arrival of its class, rejected ones included."""

from __future__ import annotations

import json

import pytest

from common.bus import Bus, now_ms
from common.config import RedisCfg
from common.outcomes import bucket_start_s
from common.plan import ClusterPlan, PoolSpec
from common.plan_bus import publish_plan
from common.rehome import redirect_table
from common.schemas import RequestRecord


@pytest.fixture()
def bus(redis_url: str) -> Bus:
    return Bus(RedisCfg(url=redis_url, prefix="trh"))


def _plan(pools: list[str], routing: dict[str, dict[str, float]]) -> ClusterPlan:
    return ClusterPlan(pools=[PoolSpec(pool_id=p, tp=1) for p in pools], routing=routing)


def _submit(bus: Bus, req_id: str, pool: str, cls: str = "tight", bound: int = 100) -> list[str]:
    rec = RequestRecord(
        id=req_id, pool=pool, slo_class=cls, prompt="ab", prompt_ids=[4, 5], max_tokens=8,
        block_length=8, arrival_ms=now_ms(), deadline_ms=now_ms() + 1000 + len(req_id),
    )  # fmt: skip
    return list(bus.run(bus.calls.submit(rec, bound, {"pool": pool})))


def _queued(bus: Bus, pool: str) -> list[str]:
    return sorted(bus.client.zrange(bus.keys.queue(pool), 0, -1))


def test_queued_requests_of_a_retired_pool_follow_the_new_routing(bus: Bus) -> None:
    publish_plan(bus.client, bus.keys, _plan(["old", "keep"], {"tight": {"old": 1.0}}))
    ids = [f"r{i}" for i in range(40)]
    for r in ids:
        assert _submit(bus, r, "old") == ["ok", "old"]
    deadlines = {r: bus.get(r)["deadline_ms"] for r in ids}
    publish_plan(bus.client, bus.keys, _plan(["keep", "new"],
                                             {"tight": {"keep": 0.5, "new": 0.5}}))  # fmt: skip
    assert _queued(bus, "old") == []
    keep, new = _queued(bus, "keep"), _queued(bus, "new")
    assert sorted(keep + new) == sorted(ids) and len(keep) > 5 and len(new) > 5  # split by share
    for r in ids:
        h = bus.get(r)
        assert h["pool"] in ("keep", "new") and r in _queued(bus, h["pool"])
        assert bus.client.zscore(bus.keys.queue(h["pool"]), r) == float(deadlines[r])
        moved = [json.loads(f["data"]) for _, f in bus.client.xrange(bus.keys.events(r))
                 if f["type"] == "requeued"]  # fmt: skip
        assert moved == [{"reason": "pool_retired", "pool": h["pool"]}]
    assert bus.claim("keep", "w", 100, lease_ms=1000)  # the moved requests are claimable


def test_late_submits_handbacks_and_reaps_are_redirected(bus: Bus) -> None:
    publish_plan(bus.client, bus.keys, _plan(["old"], {"tight": {"old": 1.0}}))
    _submit(bus, "held", "old")
    _submit(bus, "lost", "old")
    [held] = bus.claim("old", "w1", 1, lease_ms=60_000)
    [lost] = bus.claim("old", "w2", 1, lease_ms=1)
    publish_plan(bus.client, bus.keys, _plan(["fresh"], {"tight": {"fresh": 1.0}}))
    # a gateway that still routes by the old plan
    assert _submit(bus, "late", "old") == ["ok", "fresh"]
    # the worker that held one hands it back at a block boundary
    assert bus.run(bus.calls.handback("w1", held.req_id, held.attempt, "old", None, 0, "drain"))
    # the other's worker died: the reaper requeues it
    assert bus.reap(max_failures=3, at_ms=now_ms() + 10) == (1, 0)
    assert _queued(bus, "old") == []
    assert _queued(bus, "fresh") == ["held", "late", "lost"]
    assert {bus.get(r)["pool"] for r in ("held", "late", "lost")} == {"fresh"}


def test_unrouted_classes_go_to_the_largest_pool_and_revived_pools_keep_theirs(bus: Bus) -> None:
    publish_plan(bus.client, bus.keys, _plan(["a"], {}))
    publish_plan(bus.client, bus.keys, _plan(["b"], {"tight": {"b": 1.0}}))
    assert _submit(bus, "x", "a", cls="other") == ["ok", "b"]  # `*`: the largest pool
    publish_plan(bus.client, bus.keys, _plan(["a", "b"], {"tight": {"b": 1.0}}))
    assert _submit(bus, "y", "a") == ["ok", "a"]  # a is live again
    assert not bus.client.sismember(bus.keys.retired_pools(), "a")


def test_redirect_table_normalises_shares() -> None:
    plan = _plan(["p", "q"], {"c": {"p": 0.25, "q": 0.75}, "shed": {"p": 0.0}})
    table = redirect_table(plan)
    assert json.loads(table["c"]) == [["p", 0.25], ["q", 0.75]]
    assert "shed" not in table and json.loads(table["*"]) == [["p", 1.0]]


def test_every_submit_counts_as_an_arrival_of_its_class(bus: Bus) -> None:
    assert _submit(bus, "a1", "p", bound=1)[0] == "ok"
    assert _submit(bus, "a2", "p", bound=1)[0] == "full"  # rejected: counted too
    assert _submit(bus, "a1", "p")[0] == "exists"  # a replay is not a new arrival
    _submit(bus, "b1", "p", cls="loose")
    key = bus.keys.arrivals(bucket_start_s(now_ms()))
    assert bus.client.hgetall(key) == {"tight": "2", "loose": "1"}
    assert 0 < bus.client.ttl(key) <= 3600
