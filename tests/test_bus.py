"""Redis layout and the Lua scripts against a real Redis: EDF claim, ownership, reap, cancel."""

from __future__ import annotations

import pytest

from common.bus import Bus, now_ms
from common.config import RedisCfg
from common.keys import Keys
from common.schemas import RequestRecord, StepReport


@pytest.fixture()
def bus(redis_url: str) -> Bus:
    return Bus(RedisCfg(url=redis_url, prefix="tb"))


def _rec(req_id: str, deadline_ms: float) -> RequestRecord:
    return RequestRecord(
        id=req_id, pool="p", slo_class="standard", prompt="ab", prompt_ids=[4, 5],
        max_tokens=8, block_length=8, arrival_ms=now_ms(), deadline_ms=deadline_ms,
    )  # fmt: skip


def _submit(bus: Bus, req_id: str, deadline_ms: float, bound: int = 100) -> list[str]:
    return list(bus.run(bus.calls.submit(_rec(req_id, deadline_ms), bound, {})))


def test_submit_checks_deadline_feasibility_against_the_queue_atomically(bus: Bus) -> None:
    for i, deadline in enumerate((10.0, 20.0, 90.0)):
        assert _submit(bus, f"q{i}", deadline)[0] == "ok"
    late = bus.calls.submit(_rec("drop", 50.0), 100, {}, ahead_limit=1, drop_if_late=True)
    assert list(bus.run(late)) == ["infeasible", "2", "p"]  # two are claimed before it
    assert not bus.client.exists(bus.keys.req("drop"))
    flagged = bus.calls.submit(_rec("serve", 50.0), 100, {}, ahead_limit=1, drop_if_late=False)
    assert list(bus.run(flagged)) == ["ok", "p"]  # a best-effort class: queued, flagged
    assert bus.client.hget(bus.keys.req("serve"), "admission_flag") == "deadline_infeasible"
    fits = bus.calls.submit(_rec("fits", 50.0), 100, {}, ahead_limit=2, drop_if_late=True)
    assert list(bus.run(fits)) == ["ok", "p"]
    assert bus.client.hget(bus.keys.req("fits"), "admission_flag") in (None, "")


def test_every_key_under_one_prefix() -> None:
    k = Keys("x")
    names = [
        k.req("1"), k.queue("p"), k.lease(), k.events("1"), k.worker("w"), k.plan(),
        k.plan_log(), k.ctl(), k.stats("c"), k.profile("m"), k.workers(), k.pools(),
    ]  # fmt: skip
    assert all(n.startswith("x:") for n in names)
    assert (k.req("1"), k.queue("p"), k.events("1")) == ("x:req:1", "x:q:p", "x:ev:1")


def test_submit_idempotent_and_bounded(bus: Bus) -> None:
    assert _submit(bus, "a", 5) == ["ok", "p"]
    assert _submit(bus, "a", 9) == ["exists", "queued"]
    assert _submit(bus, "b", 5, bound=1) == ["full", "1", "p"]
    assert bus.client.zcard(bus.keys.queue("p")) == 1


def test_claim_is_edf_and_moves_to_lease(bus: Bus) -> None:
    for rid, dl in (("late", 300), ("early", 100), ("mid", 200)):
        _submit(bus, rid, dl)
    items = bus.claim("p", "w1", 2, lease_ms=1000)
    assert [it.req_id for it in items] == ["early", "mid"]
    assert items[0].attempt == 1 and items[0].canvas is None
    assert bus.get("early")["status"] == "running" and bus.get("early")["worker"] == "w1"
    assert set(bus.client.zrange(bus.keys.lease(), 0, -1)) == {"early", "mid"}
    assert bus.client.zrange(bus.keys.queue("p"), 0, -1) == ["late"]


def test_completion_only_by_lease_owner(bus: Bus) -> None:
    _submit(bus, "a", 1)
    bus.claim("p", "w1", 1, lease_ms=1000)
    stale = bus.calls.complete("w2", "a", 1, "done", now_ms(), {"text": "x"})
    assert bus.run(stale) == 0
    ok = bus.calls.complete("w1", "a", 1, "done", now_ms(), {"text": "y"})
    assert bus.run(ok) == 1
    assert bus.run(ok) == 0  # exactly once
    assert bus.get("a")["text"] == "y" and bus.counters()["stale_completions"] == 2
    assert bus.client.zcard(bus.keys.lease()) == 0 and bus.client.ttl(bus.keys.req("a")) > 0


def test_reaper_requeues_with_checkpoint_then_fails(bus: Bus) -> None:
    _submit(bus, "a", 1)
    bus.claim("p", "w1", 1, lease_ms=0, at_ms=1000)
    rep = StepReport("a", 1, 3, 8, 8, 1, True, 0.9, "ab", canvas=[4, 5, 6, 7])
    assert bus.publish_step("w1", [rep], []) == [("a", "ok")]
    assert bus.reap(max_failures=1, at_ms=2000) == (1, 0)
    it = bus.claim("p", "w2", 1, lease_ms=0, at_ms=3000)[0]
    assert it.canvas == [4, 5, 6, 7] and it.attempt == 2 and it.failures == 1
    # the first worker's late progress is refused: it must drop the request
    assert bus.publish_step("w1", [rep], []) == [("a", "lost")]
    assert bus.reap(max_failures=1, at_ms=4000) == (0, 1)
    assert bus.get("a")["status"] == "failed" and "worker lost" in bus.get("a")["error"]


def test_heartbeat_renews_owned_leases_only(bus: Bus) -> None:
    _submit(bus, "a", 1)
    _submit(bus, "b", 2)
    bus.claim("p", "w1", 2, lease_ms=10)
    lost = bus.heartbeat("w1", 30, {"pool": "p"}, {"a": 1, "b": 7})
    assert lost == ["b"]
    assert bus.client.zscore(bus.keys.lease(), "a") > now_ms() + 20_000
    assert bus.client.hget(bus.keys.worker("w1"), "pool") == "p"


def test_cancel_queued_running_finished(bus: Bus) -> None:
    _submit(bus, "q", 1)
    _submit(bus, "r", 2)
    bus.claim("p", "w1", 1, lease_ms=1000)  # claims q (earliest)
    assert bus.cancel("r") == ["ok", "queued"]
    assert bus.client.zcard(bus.keys.queue("p")) == 0
    assert bus.cancel("q") == ["ok", "running"]
    assert bus.client.zcard(bus.keys.lease()) == 0
    assert bus.cancel("q") == ["finished", "cancelled"]
    assert bus.cancel("nope") == ["missing"]
    done = bus.calls.complete("w1", "q", 1, "done", now_ms(), {"text": "late"})
    assert bus.run(done) == 0 and bus.get("q")["status"] == "cancelled"
