"""Failures: cancellation, worker crash and resume, stale results, poison requests, Redis
outage, queue bound, SIGTERM drain. Workers are slowed (debug_step_delay_s) so tests can act
while a request is mid-flight."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common.bus import now_ms
from common.redis_server import RedisServer
from common.schemas import RequestRecord
from tests.stack import Stack, wait_status

DELAY_S = 0.05
LONG = {"prompt": "abc", "max_tokens": 64, "block_length": 8}  # ≥ 64 steps ≈ 3 s slowed


@pytest.fixture()
def make_stack(
    redis_server: RedisServer, tiny_model_dir: Path, tmp_path: Path
) -> Iterator[callable]:
    stacks: list[Stack] = []

    def make(redis_url: str | None = None, **env: str) -> Stack:
        extra = {"DILA_WORKER__DEBUG_STEP_DELAY_S": str(DELAY_S), **env}
        s = Stack(redis_url or redis_server.url, tiny_model_dir, tmp_path, env_extra=extra)
        stacks.append(s)
        return s

    yield make
    for s in stacks:
        s.close()


def _submit(url: str, body: dict) -> str:
    r = httpx.post(f"{url}/v1/requests", json=body, timeout=5)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _exit_code(proc, timeout_s: float, s: Stack) -> int:  # type: ignore[no-untyped-def]
    try:
        return int(proc.wait(timeout_s))
    except Exception as e:
        raise AssertionError(f"{proc.args} did not exit in {timeout_s}s:\n{s.logs()}") from e


def _wait(pred, timeout_s: float = 30, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_cancel_queued_and_running_and_queue_bound(make_stack) -> None:  # type: ignore[no-untyped-def]
    s = make_stack(DILA_ENGINE__MAX_BATCH_SIZE="1", DILA_GATEWAY__MAX_QUEUE_LEN="2")
    s.start_gateway()
    s.start_worker()
    s.wait_workers(1)
    bus = s.bus()
    a = _submit(s.url, LONG)
    _wait(lambda: int(bus.get(a).get("steps", 0)) >= 2, what="a running")
    b = _submit(s.url, LONG)
    c = _submit(s.url, LONG)
    r = httpx.post(f"{s.url}/v1/requests", json=LONG)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert r.json()["error"]["reason"] == "queue_full"
    # queued: leaves the queue at once
    assert httpx.delete(f"{s.url}/v1/requests/{b}").json()["previous_status"] == "queued"
    assert bus.client.zscore(bus.keys.queue("default"), b) is None
    assert bus.get(b)["status"] == "cancelled"
    # running: leaves the batch within a step, so the worker takes c next
    t0 = now_ms()
    assert httpx.delete(f"{s.url}/v1/requests/{a}").json()["previous_status"] == "running"
    _wait(lambda: bus.get(c).get("status") == "running", what="c claimed")
    assert float(bus.get(c)["claimed_ms"]) - t0 < 3 * DELAY_S * 1000 + 300
    assert bus.get(a)["status"] == "cancelled"
    kinds = [f["type"] for _, f in bus.client.xrange(bus.keys.events(a))]
    assert kinds[-1] == "final" and kinds.count("final") == 1


def test_sigkill_worker_resumes_from_checkpoint_once(make_stack) -> None:  # type: ignore[no-untyped-def]
    s = make_stack()
    s.start_gateway()
    w1 = s.start_worker()
    s.wait_workers(1)
    bus = s.bus()
    ref = _submit(s.url, LONG)  # the uninterrupted answer, to compare with
    wait_status(s.url, ref, {"done"})
    req = _submit(s.url, LONG)
    _wait(lambda: int(bus.get(req).get("ckpt_block", 0)) >= 2, what="two blocks checkpointed")
    w1.send_signal(signal.SIGKILL)
    w1.wait(5)
    old = bus.get(req)
    s.start_worker()
    body = wait_status(s.url, req, {"done", "failed"}, timeout_s=60)
    assert body["status"] == "done", s.logs()
    assert body["text"] == httpx.get(f"{s.url}/v1/requests/{ref}").json()["text"]
    h = bus.get(req)
    assert h["attempt"] == "2" and h["requeues"] == "1" and h["worker"] != old["worker"]
    events = [(f["type"], f["data"]) for _, f in bus.client.xrange(bus.keys.events(req))]
    kinds = [k for k, _ in events]
    assert kinds.count("final") == 1 and "requeued" in kinds
    # resumed from the checkpoint: the steps after the requeue never redo the first two blocks
    after = kinds.index("requeued")
    first = next(d for k, d in events[after:] if k == "progress")
    assert json.loads(first)["block"] >= 2 and json.loads(first)["tokens_committed"] > 16
    # the stale worker's late completion is ignored and counted
    stale = bus.calls.complete(old["worker"], req, 1, "done", now_ms(), {"text": "stale"})
    before = bus.counters().get("stale_completions", 0)
    assert bus.run(stale) == 0
    assert bus.counters()["stale_completions"] == before + 1
    assert bus.get(req)["text"] == body["text"]


def test_poison_request_fails_alone(make_stack) -> None:  # type: ignore[no-untyped-def]
    s = make_stack(DILA_WORKER__DEBUG_STEP_DELAY_S="0")
    s.start_gateway()
    s.start_worker()
    s.wait_workers(1)
    bus = s.bus()
    # token 99999 is outside the vocabulary: the embedding lookup raises for this row only
    poison = RequestRecord(
        id="poison", pool="default", slo_class="standard", prompt="?", prompt_ids=[5, 99999],
        max_tokens=16, block_length=8, arrival_ms=now_ms(), deadline_ms=now_ms() + 60_000,
    )  # fmt: skip
    assert bus.run(bus.calls.submit(poison, 100, {}))[0] == "ok"
    good = [_submit(s.url, {"prompt": p, "max_tokens": 16, "block_length": 8})
            for p in ("abc", "hello", "fox")]  # fmt: skip
    body = wait_status(s.url, "poison", {"failed", "done"})
    assert body["status"] == "failed" and "IndexError" in body["error"]
    for g in good:
        assert wait_status(s.url, g, {"done", "failed"})["status"] == "done"
    assert s.workers[0].poll() is None  # still serving
    assert not bus.client.zrange(bus.keys.lease(), 0, -1)  # nothing left running


def test_redis_outage_503_then_recovery(make_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = RedisServer(data_dir=tmp_path / "own-redis").start()
    try:
        s = make_stack(redis_url=server.url)
        s.start_gateway()
        assert httpx.get(f"{s.url}/readyz").status_code == 200
        server.stop()
        for method, path in (("POST", "/v1/requests"), ("GET", "/v1/requests/x"),
                             ("GET", "/readyz"), ("POST", "/v1/completions")):  # fmt: skip
            t0 = time.monotonic()
            r = httpx.request(method, f"{s.url}{path}", json={"prompt": "abc"}, timeout=5)
            assert r.status_code == 503, (path, r.text)
            assert time.monotonic() - t0 < 1.0
        assert httpx.get(f"{s.url}/healthz").status_code == 200
        server = RedisServer(data_dir=tmp_path / "own-redis", port=server.port).start()
        _wait(lambda: httpx.get(f"{s.url}/readyz").status_code == 200, 10, "ready again")
        assert httpx.post(f"{s.url}/v1/requests", json={"prompt": "abc"}).status_code == 202
    finally:
        server.stop()


def test_sigterm_drains_worker_and_gateway(make_stack) -> None:  # type: ignore[no-untyped-def]
    s = make_stack()
    s.start_gateway()
    w1 = s.start_worker()
    s.wait_workers(1)
    bus = s.bus()
    req = _submit(s.url, LONG)
    _wait(lambda: int(bus.get(req).get("steps", 0)) >= 3, what="running")
    t0 = time.monotonic()
    latency = []
    for _ in range(5):  # liveness stays fast while the worker is busy
        t = time.monotonic()
        assert httpx.get(f"{s.url}/healthz").status_code == 200
        latency.append(time.monotonic() - t)
    assert max(latency) < 0.2
    w1.send_signal(signal.SIGTERM)
    assert _exit_code(w1, 20, s) == 0
    assert time.monotonic() - t0 < 20
    h = bus.get(req)
    assert h["status"] == "queued" and h["canvas"] and h["requeues"] == "1"
    assert bus.client.zscore(bus.keys.queue("default"), req) is not None
    s.start_worker()
    assert wait_status(s.url, req, {"done", "failed"}, 60)["status"] == "done"
    # gateway: readiness 503 first, liveness honest, then exit 0
    assert s.gateway is not None
    s.gateway.send_signal(signal.SIGTERM)
    time.sleep(0.15)
    assert httpx.get(f"{s.url}/readyz").status_code == 503
    live = httpx.get(f"{s.url}/healthz")
    assert live.status_code == 200 and live.json()["status"] == "draining"
    assert _exit_code(s.gateway, 20, s) == 0
