"""Deadline-aware serving end to end on the real stack (demo model, dilaserve policy): a tight
deadline under load is met at a lowered threshold, and an infeasible one is refused with 429."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from common import task
from common.config import DEFAULT_MODEL_DIR
from common.redis_server import RedisServer
from tests.stack import Stack, serving, wait_status

pytestmark = pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "costmodel.json").is_file(), reason="needs the shipped demo model"
)
BLOCK = {"max_tokens": 64, "block_length": 16}


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"DILA_SCHEDULER__POLICY": "dilaserve", "DILA_ENGINE__MAX_BATCH_SIZE": "16"}
    with serving(redis_server.url, DEFAULT_MODEL_DIR, tmp_path_factory.mktemp("dl"), env) as s:
        yield s


def _submit(url: str, prompt: str, **fields: object) -> httpx.Response:
    return httpx.post(f"{url}/v1/requests", json={"prompt": prompt, **BLOCK, **fields}, timeout=10)


def _solo_ms(url: str, prompt: str) -> float:
    """The e2e time of one request on the idle worker (also warms it up)."""
    times = []
    for _ in range(3):
        rid = _submit(url, prompt, slo_class="batch").json()["id"]
        times.append(wait_status(url, rid, {"done"})["timings"]["e2e_ms"])
    return min(times)


def test_tight_deadline_under_load_met_at_a_lowered_threshold(stack: Stack) -> None:
    problems = task.problems(seed=5, split="test", n=12)
    solo_ms = _solo_ms(stack.url, problems[0].prompt)
    load = [_submit(stack.url, p.prompt, slo_class="batch").json()["id"] for p in problems[1:9]]
    # Under this load τ 0.9 takes longer than ~solo × 1.5; the floor (0.7: ~30 % fewer steps)
    # fits with room to spare, so only a lowered threshold meets this deadline.
    tight = problems[9]
    rid = _submit(stack.url, tight.prompt, slo_ms=3.0 * solo_ms, min_threshold=0.7).json()["id"]
    view = wait_status(stack.url, rid, {"done"})
    for other in load:
        wait_status(stack.url, other, {"done"})
    assert view["slo_met"] is True, view
    assert min(view["thresholds"]) < 0.9, view
    assert task.check(tight, view["text"])


def test_infeasible_deadline_is_refused_with_its_reason(stack: Stack) -> None:
    prompt = task.problems(seed=6, split="test", n=1)[0].prompt
    r = _submit(stack.url, prompt, slo_class="interactive", deadline_ms=time.time() * 1e3 + 1.0)
    assert r.status_code == 429, r.text
    assert "deadline_infeasible" in r.text
    assert int(r.headers["Retry-After"]) >= 1


def test_best_effort_class_is_admitted_and_flagged(stack: Stack) -> None:
    prompt = task.problems(seed=7, split="test", n=1)[0].prompt
    r = _submit(stack.url, prompt, slo_class="standard", deadline_ms=time.time() * 1e3 + 1.0)
    assert r.status_code == 202, r.text
    view = wait_status(stack.url, r.json()["id"], {"done"})
    assert view["slo_met"] is False
