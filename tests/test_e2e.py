"""Gateway → Redis → worker → Redis → gateway, with real processes, HTTP and model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common import task
from common.config import DEFAULT_MODEL_DIR
from common.redis_server import RedisServer
from tests.stack import Stack, serving, wait_status
from workers.engine import Engine

# Held-out demo-task problems: answers are checked, not just compared.
PROBLEMS = task.problems(seed=11, split="test", n=3)
PROMPTS = [p.prompt for p in PROBLEMS]
GEN, BLOCK = 64, 16


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return DEFAULT_MODEL_DIR  # the shipped demo model


@pytest.fixture(scope="module")
def stack(
    redis_server: RedisServer, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with serving(redis_server.url, model_dir, tmp_path_factory.mktemp("e2e-logs")) as s:
        yield s


@pytest.fixture(scope="module")
def offline(model_dir: Path) -> dict[str, str]:
    """What the engine answers offline for each prompt (greedy, same τ): the served answer must
    be the same text."""
    engine = Engine.from_dir(model_dir)
    tok = engine.tokenizer
    out = {}
    for p in PROMPTS:
        ids = tok.encode(p, add_special_tokens=False)
        ans = engine.generate([ids], GEN, BLOCK)[0].answer_ids
        ends = (engine.cfg.eos_token_id, engine.cfg.pad_token_id)
        eos = [i for i, t in enumerate(ans) if t in ends]
        out[p] = tok.decode(ans[: eos[0]] if eos else ans, skip_special_tokens=True)
    return out


def test_submit_poll_done_correct(stack: Stack, offline: dict[str, str]) -> None:
    ids = []
    for p in PROMPTS:
        r = httpx.post(f"{stack.url}/v1/requests", json={"prompt": p, "max_tokens": GEN,
                                                          "block_length": BLOCK})  # fmt: skip
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["poll_url"] == f"/v1/requests/{body['id']}"
        ids.append(body["id"])
    for problem, req_id in zip(PROBLEMS, ids, strict=True):
        body = wait_status(stack.url, req_id, {"done", "failed"})
        assert body["status"] == "done", (body, stack.logs())
        assert body["text"] == offline[problem.prompt]
        assert task.check(problem, body["text"]), body["text"]
        assert body["progress"]["tokens_committed"] == GEN
        assert body["timings"]["e2e_ms"] > 0 and body["slo_met"] is True
        assert body["thresholds"] == [0.9]  # an idle worker with ample slack keeps τ at 0.9
        assert body["worker"]


def _sse(url: str) -> list[tuple[str, dict]]:
    events = []
    with httpx.stream("GET", url, timeout=30) as r:
        assert r.status_code == 200
        kind = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    return events


def test_events_in_order_and_replayable(stack: Stack) -> None:
    r = httpx.post(f"{stack.url}/v1/requests", json={"prompt": "abc", "max_tokens": GEN,
                                                      "block_length": BLOCK})  # fmt: skip
    req_id = r.json()["id"]
    live = _sse(f"{stack.url}/v1/requests/{req_id}/events")
    kinds = [k for k, _ in live]
    assert kinds[0] == "queued" and kinds[1] == "claimed" and kinds[-1] == "final"
    steps = [d["steps"] for k, d in live if k == "progress"]
    assert steps == list(range(1, len(steps) + 1))
    assert live[-1][1]["status"] == "done"
    late = _sse(f"{stack.url}/v1/requests/{req_id}/events")  # after the end: whole history
    assert late == live
