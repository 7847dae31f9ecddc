"""/metrics: every family parses with the Prometheus text parser, names mirror vLLM's, and the
numbers move with traffic; outcome folding and windows as pure functions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from common.config import RedisCfg, Settings
from common.outcomes import Outcome, attainment_by, outcome, window_buckets, window_fields
from common.redis_server import RedisServer, free_port
from tests.ops_helpers import run_done, scrape, submit, total, wait_for, watched_stack
from tests.stack import Stack

VLLM_MIRRORS = (
    "dila:num_requests_waiting", "dila:num_requests_running",
    "dila:e2e_request_latency_seconds_bucket", "dila:request_queue_time_seconds_bucket",
    "dila:request_inference_time_seconds_bucket",
)  # fmt: skip


@pytest.fixture(scope="module")
def stack(
    redis_server: RedisServer, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("metrics-logs")
    with watched_stack(redis_server.url, model_dir, log_dir, 0.0) as s:
        yield s


def test_metrics_move_with_traffic(stack: Stack) -> None:
    before = scrape(stack.url)
    assert total(before, "dila:redis_up") == 1
    assert total(before, "dila:num_workers", pool="default") == 1
    steps_before = total(before, "dila:worker_steps_total")

    done = run_done(stack.url, 3, slo_class="batch")  # 60 s SLO: met even on a loaded machine
    assert [d["status"] for d in done] == ["done"] * 3, stack.logs()
    rid = submit(stack.url, slo_class="standard")
    cancelled = httpx.delete(f"{stack.url}/v1/requests/{rid}", timeout=5).status_code == 200

    def folded() -> dict | None:
        s = scrape(stack.url)
        ended = total(s, "dila:requests_finished_total")
        stepped = total(s, "dila:worker_steps_total") > steps_before  # reaches the heartbeat
        return s if ended >= 3 + cancelled and stepped else None

    after = wait_for(folded)
    cls = {"slo_class": "batch", "pool": "default"}
    assert total(after, "dila:requests_finished_total", status="done", **cls) == 3
    met, missed = (total(after, f"dila:slo_{k}_total", **cls) for k in ("met", "missed"))
    assert (met, missed) == (3, 0)
    assert total(after, "dila:e2e_request_latency_seconds_count", **cls) == 3
    assert total(after, "dila:request_denoise_steps_sum", **cls) >= sum(
        d["progress"]["steps"] for d in done
    )
    assert total(after, "dila:request_tokens_per_step_count", **cls) == 3
    assert total(after, "dila:request_threshold_min_count", **cls) == 3
    if cancelled:
        assert total(after, "dila:requests_finished_total", status="cancelled") == 1
    assert total(after, "dila:requests_arrived_total") >= 4
    assert total(after, "dila:worker_steps_total") > steps_before
    assert total(after, "dila:worker_threshold") == pytest.approx(0.9)
    assert total(after, "dila:http_requests_total", route="/v1/requests", code="202") == 4
    assert total(after, "dila:slo_attainment_ratio", slo_class="batch", window="60s") == 1.0
    for name in VLLM_MIRRORS:
        assert name in after, name


def test_metrics_without_redis_still_answer(model_dir: Path) -> None:
    """Redis down: /metrics answers at once with `dila:redis_up 0` and the gateway's own series."""
    settings = Settings(redis=RedisCfg(url=f"redis://127.0.0.1:{free_port()}/0"))
    settings.engine.model_dir = model_dir
    from gateway.app import create_app

    with TestClient(create_app(settings)) as client:
        r = client.get("/metrics")
        assert r.status_code == 200
        assert "dila:redis_up 0.0" in r.text
        assert "dila:num_requests_waiting" not in r.text


def test_rejections_counted_by_reason(redis_url: str, model_dir: Path) -> None:
    """A full queue (bound 1, no worker) → 429 queue_full, counted by the gateway that said it."""
    settings = Settings(redis=RedisCfg(url=redis_url, prefix="trej"))
    settings.engine.model_dir = model_dir
    settings.gateway.max_queue_len = 1
    from gateway.app import create_app

    with TestClient(create_app(settings)) as client:
        codes = [client.post("/v1/requests", json={"prompt": "abc", "max_tokens": 8}).status_code
                 for _ in range(3)]  # fmt: skip
        assert codes == [202, 429, 429]
        text = client.get("/metrics").text
    assert 'dila:requests_rejected_total{reason="queue_full"} 2.0' in text
    assert 'dila:num_requests_waiting{pool="default"} 1.0' in text


# ---- pure: finished-stream entries → outcomes → window buckets ----


def _outcome(status: str, finished_ms: float, deadline_ms: float) -> Outcome:
    h = {"slo_class": "interactive", "pool": "p", "arrival_ms": "1000", "claimed_ms": "1500",
         "finished_ms": str(finished_ms), "deadline_ms": str(deadline_ms), "steps": "8",
         "tokens_committed": "16", "tau_min": "0.8"}  # fmt: skip
    return outcome(f"{int(finished_ms)}-0", {"id": "r1", "status": status}, h)


def test_outcome_fields_and_slo() -> None:
    o = _outcome("done", 3000, 3500)
    assert (o.e2e_s, o.queue_s, o.run_s) == (2.0, 0.5, 1.5)
    assert o.slo_met is True and o.tokens_per_step == 2.0 and o.tau_min == 0.8
    assert _outcome("done", 4000, 3500).slo_met is False
    assert _outcome("failed", 3000, 3500).slo_met is False
    assert _outcome("cancelled", 3000, 3500).slo_met is None
    expired = outcome("5000-1", {"id": "gone", "status": "done"}, {})
    assert expired.slo_class == "unknown" and expired.finished_ms == 5000.0


def test_windows_count_attainment() -> None:
    outs = [_outcome("done", 3000, 3500), _outcome("done", 4000, 3500),
            _outcome("cancelled", 3000, 3500)]  # fmt: skip
    bucket: dict[str, str] = {}
    for o in outs:
        for f in window_fields(o):
            bucket[f] = str(int(bucket.get(f, "0")) + 1)
    a = attainment_by([bucket])["interactive"]
    assert (a.finished, a.met, a.missed, a.ratio) == (3, 1, 1, 0.5)
    assert a.by_status == {"done": 2, "cancelled": 1}
    assert attainment_by([bucket], part=1)["p"].met == 1
    assert window_buckets(65_000, 60) == [10, 20, 30, 40, 50, 60]
