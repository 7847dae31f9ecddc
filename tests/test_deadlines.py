"""Deadline-aware serving end to end on the real stack (demo model, dilaserve policy): a tight
deadline under load is met at a lowered threshold, and an infeasible one is refused with 429."""

from __future__ import annotations

import json
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
    # Steps paced to 4× the demo's cost model (workers/pacing.py): long, steady steps whose time
    # grows with the batch as the model says, so the deadlines below hold on any CPU.
    tmp = tmp_path_factory.mktemp("dl")
    coeffs = json.loads((DEFAULT_MODEL_DIR / "costmodel.json").read_text())
    paced = {tp: {k: [4.0 * c for c in v] for k, v in sub.items()} for tp, sub in coeffs.items()}
    (tmp / "paced.json").write_text(json.dumps(paced))
    env = {"DILA_SCHEDULER__POLICY": "dilaserve", "DILA_ENGINE__MAX_BATCH_SIZE": "16",
           "DILA_ENGINE__PACE_COST_MODEL": str(tmp / "paced.json")}  # fmt: skip
    with serving(redis_server.url, DEFAULT_MODEL_DIR, tmp, env) as s:
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


def _under_load(url: str, load: list[str], prompt: str, **fields: object) -> dict:
    """Start `load` (batch class, at τ 1.0: one token per step, so it outlasts the request) and
    wait until it runs, then submit `prompt` with `fields`, which must share the batch; wait for
    all → its view."""
    ids = [_submit(url, p, slo_class="batch", min_threshold=1.0).json()["id"] for p in load]
    for rid in ids:
        wait_status(url, rid, {"running", "done"})
    view = wait_status(url, _submit(url, prompt, **fields).json()["id"], {"done"})
    for rid in ids:
        wait_status(url, rid, {"done"})
    return view


def test_tight_deadline_under_load_met_at_a_lowered_threshold(stack: Stack) -> None:
    problems = task.problems(seed=5, split="test", n=12)
    _solo_ms(stack.url, problems[0].prompt)  # warms the worker and its online corrections
    load, tight = [p.prompt for p in problems[1:9]], problems[9]
    # Calibrate on this machine: the same load with the request held at τ 0.9 (its floor).
    held = _under_load(stack.url, load, tight.prompt, slo_ms=5000.0, min_threshold=0.9)
    at_09_ms = held["timings"]["e2e_ms"]
    # 82 % of that: τ 0.9 misses it, the floor 0.7 (~30 % fewer steps) fits, so only a lowered
    # threshold meets this deadline.
    view = _under_load(stack.url, load, tight.prompt, slo_ms=0.82 * at_09_ms, min_threshold=0.7)
    assert view["slo_met"] is True, (at_09_ms, view["timings"], view["thresholds"])
    assert min(view["thresholds"]) < 0.9, (at_09_ms, view)
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
