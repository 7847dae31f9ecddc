"""Slots, TP groups and live reconfiguration, end to end: gateway → Redis → slot processes.

One stack for the module: a gateway and three slots (n0/cpu:0..2) on a private Redis. Each test
publishes the plan it needs. Answers are checked against the offline engine (greedy, τ 0.9):
hand-backs at block boundaries and TP sharding must not change a single token.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common.plan import ClusterPlan, GroupPlan, PoolSpec
from common.plan_bus import live_slots
from common.redis_server import RedisServer
from tests.slot_helpers import Slots, save_tp_checkpoint, submit, tp_plan
from tests.stack import Stack, wait_heartbeat, wait_status
from workers.engine import Engine

# prompts whose answers on the test model are long and distinct (chosen once, offline)
PROMPTS = ["a b c d", "kqpd", "hxkwcgsh", "vipccvyeeb c", "nfbqobtd", "vnsqjulm v"]
GEN, BLOCK = 16, 8
S0, S1, S2 = "n0/cpu:0", "n0/cpu:1", "n0/cpu:2"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tp_checkpoint(tmp_path_factory.mktemp("tp-model"))


@pytest.fixture(scope="module")
def offline(model: Path) -> dict[str, str]:
    engine = Engine.from_dir(model)
    tok: object = engine.tokenizer
    out = {}
    for p in PROMPTS:
        ids = tok.encode(p, add_special_tokens=False)  # type: ignore[attr-defined]
        ans = engine.generate([ids], GEN, BLOCK)[0].answer_ids
        ends = (engine.cfg.eos_token_id, engine.cfg.pad_token_id)
        eos = [i for i, t in enumerate(ans) if t in ends]
        out[p] = tok.decode(ans[: eos[0]] if eos else ans, skip_special_tokens=True)  # type: ignore[attr-defined]
    assert len(set(out.values())) == len(PROMPTS) and all(out.values())
    return out


@pytest.fixture(scope="module")
def cluster(
    redis_server: RedisServer, model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Slots]:
    stack = Stack(redis_server.url, model, tmp_path_factory.mktemp("tp-logs"),
                  env_extra={"DILA_SCHEDULER__POLICY": "edf-fixed"})  # fmt: skip
    slots = Slots(stack)
    try:
        stack.start_gateway()
        for dev in ("cpu:0", "cpu:1", "cpu:2"):
            slots.start(dev, DILA_WORKER__DEBUG_STEP_DELAY_S="0.03")
        slots.wait_registered(3)
        yield slots
    finally:
        stack.close()


def _leader_worker(slots: Slots, group_id: str) -> str:
    bus = slots.stack.bus()
    [lead] = [s for s in live_slots(bus.client, bus.keys) if s.group_id == group_id
              and s.rank == 0]  # fmt: skip
    return lead.worker_id


def _check_all_done_once(slots: Slots, ids: dict[str, str], offline: dict[str, str]) -> None:
    """Every request done, with the offline answer, and ended exactly once (finished stream)."""
    url = slots.stack.url
    for req_id, prompt in ids.items():
        body = wait_status(url, req_id, {"done", "failed", "expired"}, timeout_s=120)
        assert body["status"] == "done", (body, slots.stack.logs())
        assert body["text"] == offline[prompt], (req_id, prompt, body)
    bus = slots.stack.bus()
    ends = Counter(f["id"] for _, f in bus.client.xrange(bus.keys.finished()))
    assert all(ends[r] == 1 for r in ids), {r: ends[r] for r in ids if ends[r] != 1}


def test_tp2_group_serves_requests(cluster: Slots, offline: dict[str, str]) -> None:
    plan, took_s = cluster.apply(tp_plan([[S0, S1]]))
    worker = _leader_worker(cluster, "g0-tp2")
    ids = {submit(cluster.stack.url, p, GEN, BLOCK): p for p in PROMPTS[:3]}
    _check_all_done_once(cluster, ids, offline)
    for req_id in ids:
        assert httpx.get(f"{cluster.stack.url}/v1/requests/{req_id}").json()["worker"] == worker
    hb = cluster.stack.bus().client.hgetall(cluster.stack.bus().keys.worker(worker))
    assert hb["tp_degree"] == "2" and hb["pool"] == "default"


def test_switch_tp1x2_tp2x1_tp1x2_under_load(cluster: Slots, offline: dict[str, str]) -> None:
    cluster.apply(tp_plan([[S0], [S1]]))
    ids: dict[str, str] = {}
    stop = threading.Event()

    def load() -> None:
        i = 0
        while not stop.is_set():
            p = PROMPTS[i % len(PROMPTS)]
            ids[submit(cluster.stack.url, p, GEN, BLOCK)] = p
            i += 1
            stop.wait(0.15)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        time.sleep(1.5)
        _, to_tp2_s = cluster.apply(tp_plan([[S0, S1]]))
        time.sleep(1.5)
        _, to_tp1_s = cluster.apply(tp_plan([[S0], [S1]]))
        time.sleep(1.5)
    finally:
        stop.set()
        t.join(10)
    print(f"\nswitch TP1x2→TP2x1 took {to_tp2_s:.2f}s, TP2x1→TP1x2 took {to_tp1_s:.2f}s; "
          f"{len(ids)} requests")  # fmt: skip
    _check_all_done_once(cluster, ids, offline)
    handed_back = _num_handbacks(cluster, list(ids))
    assert handed_back > 0, "no request was in flight at a switch: the test proved nothing"


def _num_handbacks(slots: Slots, req_ids: list[str]) -> int:
    bus = slots.stack.bus()
    n = 0
    for r in req_ids:
        events = bus.client.xrange(bus.keys.events(r))
        n += any(f.get("type") == "requeued" for _, f in events)
    return n


def test_pool_settings_change_in_place_keeps_the_group(cluster: Slots) -> None:
    plan, _ = cluster.apply(tp_plan([[S0, S1]]))
    worker = _leader_worker(cluster, "g0-tp2")
    group = [GroupPlan(group_id="g0-tp2", pool_id="default", slots=[S0, S1])]
    retuned = ClusterPlan(
        pools=[PoolSpec(pool_id="default", tp=2, tau=0.7, tau_floor=0.6, max_batch_size=1)],
        groups=group,
    )
    cluster.apply(retuned)
    assert _leader_worker(cluster, "g0-tp2") == worker  # same formation, same worker
    bus = cluster.stack.bus()
    wait_heartbeat(bus, worker, {"tau": "0.7", "tau_floor": "0.6", "max_batch_size": "1"})
    ids = [submit(cluster.stack.url, p, GEN, BLOCK) for p in PROMPTS[:3]]
    most_leased = 0
    while not all(bus.get(r).get("status") == "done" for r in ids):
        most_leased = max(most_leased, bus.client.zcard(bus.keys.lease()))
        time.sleep(0.01)
    assert most_leased == 1  # the batch cap of 1 holds: one request at a time
    for r in ids:
        body = wait_status(cluster.stack.url, r, {"done", "failed"}, timeout_s=60)
        assert body["status"] == "done" and body["thresholds"] == [0.7], body
    # a cap beyond what the group's runners hold (8) needs bigger runners: the group re-forms
    bigger = ClusterPlan(pools=[PoolSpec(pool_id="default", tp=2, max_batch_size=16)],
                         groups=group)  # fmt: skip
    cluster.apply(bigger)
    wait_heartbeat(bus, _leader_worker(cluster, "g0-tp2"), {"max_batch_size": "16"})
    assert _leader_worker(cluster, "g0-tp2") != worker


def test_killed_rank_hands_back_and_requests_finish_elsewhere(
    cluster: Slots, offline: dict[str, str]
) -> None:
    cluster.apply(tp_plan([[S0, S1]]))
    big = _leader_worker(cluster, "g0-tp2")
    ids = {submit(cluster.stack.url, p, GEN, BLOCK): p for p in PROMPTS}
    on_big = _wait_running_on(cluster, big, list(ids))
    t0 = time.monotonic()
    cluster.procs[S1].send_signal(signal.SIGKILL)
    # The leader's next collective fails at once (closed socket): it hands back, not the reaper.
    while not all("drain" in _requeue_reasons(cluster, r) for r in on_big):
        assert time.monotonic() - t0 < 10, [_requeue_reasons(cluster, r) for r in on_big]
        time.sleep(0.05)
    handed_back_s = time.monotonic() - t0
    # What the planner does when a slot dies: regroup the survivors.
    _, regroup_s = cluster.apply(tp_plan([[S0], [S2]]), timeout_s=60)
    _check_all_done_once(cluster, ids, offline)
    print(f"\nkilled a rank: hand-back took {handed_back_s:.2f}s, regrouping the survivors "
          f"{regroup_s:.2f}s, all done {time.monotonic() - t0:.2f}s after the kill")  # fmt: skip
    assert cluster.procs[S0].poll() is None, "the surviving rank exited"
    assert "lost a rank" in (cluster.stack.log_dir / "slot-cpu0.log").read_text()


def _wait_running_on(slots: Slots, worker: str, req_ids: list[str]) -> list[str]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        bodies = [httpx.get(f"{slots.stack.url}/v1/requests/{r}").json() for r in req_ids]
        mine = [b["id"] for b in bodies if b["status"] == "running" and b["worker"] == worker]
        if mine:
            return mine
        time.sleep(0.05)
    raise AssertionError(f"no request ran on {worker}: {slots.stack.logs()}")


def _requeue_reasons(slots: Slots, req_id: str) -> list[str]:
    bus = slots.stack.bus()
    return [json.loads(f["data"]).get("reason", "") for _, f in
            bus.client.xrange(bus.keys.events(req_id)) if f.get("type") == "requeued"]  # fmt: skip
