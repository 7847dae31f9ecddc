"""The HTTP surface: the official openai client, idempotency, every bad input → its 4xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from common.bus import Bus, now_ms
from common.outcomes import bucket_start_s
from common.plan import ClusterPlan, PoolSpec
from common.plan_bus import publish_plan
from common.redis_server import RedisServer
from tests.stack import Stack, serving, wait_heartbeat, wait_status

GEN, BLOCK = 16, 8


@pytest.fixture(scope="module")
def stack(
    redis_server: RedisServer, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    env = {"DILA_GATEWAY__MAX_TOKENS_LIMIT": "64"}
    with serving(redis_server.url, tiny_model_dir, tmp_path_factory.mktemp("gw-logs"), env) as s:
        yield s


@pytest.fixture()
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="unused", max_retries=0)


def _model(client: openai.OpenAI) -> str:
    models = client.models.list().data
    assert len(models) == 1
    return models[0].id


def test_openai_completions_blocking_and_stream(client: openai.OpenAI) -> None:
    model = _model(client)
    extra = {"block_length": BLOCK, "slo_class": "interactive"}
    out = client.completions.create(model=model, prompt="abc", max_tokens=GEN, extra_body=extra)
    assert out.choices[0].finish_reason in ("stop", "length")
    text = out.choices[0].text
    assert out.usage is not None and out.usage.prompt_tokens == 3
    chunks = list(client.completions.create(
        model=model, prompt="abc", max_tokens=GEN, stream=True, extra_body=extra))  # fmt: skip
    assert "".join(c.choices[0].text for c in chunks) == text
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_openai_chat_blocking_and_stream(client: openai.OpenAI) -> None:
    model = _model(client)
    msgs = [{"role": "user", "content": "abc"}]
    extra = {"block_length": BLOCK}
    out = client.chat.completions.create(
        model=model, messages=msgs, max_tokens=GEN, extra_body=extra  # type: ignore[arg-type]
    )
    text = out.choices[0].message.content
    assert isinstance(text, str)
    stream = client.chat.completions.create(
        model=model, messages=msgs, max_tokens=GEN, stream=True, extra_body=extra  # type: ignore[arg-type]
    )
    deltas = [c.choices[0].delta.content or "" for c in stream]
    assert "".join(deltas) == text


def test_idempotent_submit(stack: Stack) -> None:
    body = {"prompt": "abc", "max_tokens": GEN, "block_length": BLOCK}
    a = httpx.post(f"{stack.url}/v1/requests", json=body, headers={"X-Request-Id": "job-42"})
    b = httpx.post(f"{stack.url}/v1/requests", json=body, headers={"X-Request-Id": "job-42"})
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] == b.json()["id"] == "job-42"
    assert b.headers["X-Idempotent-Replay"] == "true"
    assert a.json()["deadline_ms"] == b.json()["deadline_ms"]
    wait_status(stack.url, "job-42", {"done"})
    bus = stack.bus()
    kinds = [f["type"] for _, f in bus.client.xrange(bus.keys.events("job-42"))]
    assert kinds.count("queued") == 1 and kinds.count("final") == 1


def test_unknown_id_and_finished_cancel(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/v1/requests/nope").status_code == 404
    assert httpx.delete(f"{stack.url}/v1/requests/nope").status_code == 404
    assert httpx.get(f"{stack.url}/v1/requests/nope/events").status_code == 404
    r = httpx.post(f"{stack.url}/v1/requests", json={"prompt": "ab", "max_tokens": 8})
    req_id = r.json()["id"]
    wait_status(stack.url, req_id, {"done"})
    r = httpx.delete(f"{stack.url}/v1/requests/{req_id}")
    assert r.status_code == 409 and "finished" in r.json()["error"]["message"]


def test_long_poll_answers_when_the_request_ends(stack: Stack) -> None:
    r = httpx.post(f"{stack.url}/v1/requests", json={"prompt": "abc", "max_tokens": 64})
    req_id = r.json()["id"]
    view = httpx.get(f"{stack.url}/v1/requests/{req_id}", params={"wait_s": 30}, timeout=40).json()
    assert view["status"] == "done" and view["text"] is not None
    again = httpx.get(f"{stack.url}/v1/requests/{req_id}", params={"wait_s": 30}, timeout=40)
    assert again.json()["status"] == "done"  # already finished: answered at once
    assert httpx.get(f"{stack.url}/v1/requests/nope", params={"wait_s": 1}).status_code == 404
    for bad in (-1, 61, "soon"):
        r = httpx.get(f"{stack.url}/v1/requests/{req_id}", params={"wait_s": bad})
        assert r.status_code == 422 and "wait_s" in r.text, r.text


BAD = [
    ({"prompt": "", "max_tokens": 8}, 422, "prompt"),
    ({"prompt": "abc" * 40, "max_tokens": 8}, 400, "context"),
    ({"prompt": "abc", "max_tokens": 0}, 400, "max_tokens"),
    ({"prompt": "abc", "max_tokens": -8}, 400, "max_tokens"),
    ({"prompt": "abc", "max_tokens": 128}, 400, "max_tokens"),
    ({"prompt": "abc", "max_tokens": 12, "block_length": 8}, 400, "block_length"),
    ({"prompt": "abc", "max_tokens": 8, "slo_class": "gold"}, 400, "slo_class"),
    ({"prompt": "abc", "max_tokens": 8, "deadline_ms": -5}, 422, "deadline_ms"),
    ({"prompt": "abc", "max_tokens": "many"}, 422, "max_tokens"),
    ({"prompt": 12}, 422, "prompt"),
    ({"prompt": "abc", "colour": "red"}, 422, "colour"),
    ({"prompt": "abc", "temperature": -1}, 422, "temperature"),
    ({"prompt": "ABC!"}, 400, "prompt"),
    ({"max_tokens": 8}, 422, "prompt"),
]


@pytest.mark.parametrize(("body", "code", "needle"), BAD)
def test_bad_inputs(stack: Stack, body: dict, code: int, needle: str) -> None:
    r = httpx.post(f"{stack.url}/v1/requests", json=body)
    assert r.status_code == code, r.text
    assert needle in r.text


@pytest.mark.parametrize(
    "raw", [b"{not json", b'{"prompt": "\xff\xfe"}', b"", b"[1, 2]", b"null"]
)
def test_malformed_bodies(stack: Stack, raw: bytes) -> None:
    for path in ("/v1/requests", "/v1/completions", "/v1/chat/completions"):
        r = httpx.post(f"{stack.url}{path}", content=raw,
                       headers={"Content-Type": "application/json"})  # fmt: skip
        assert 400 <= r.status_code < 500, (path, raw, r.status_code, r.text)
        assert r.json()["error"]["message"]


def test_openai_errors(stack: Stack, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-nope", prompt="abc", max_tokens=8)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=_model(client), prompt="abc", max_tokens=12,
                                  extra_body={"block_length": 8})  # fmt: skip
    assert "block_length" in str(e.value)
    r = httpx.post(f"{stack.url}/v1/chat/completions", json={"messages": []})
    assert r.status_code == 422 and "messages" in r.text


def test_arrivals_are_counted_per_class_for_the_planner(stack: Stack) -> None:
    bus = stack.bus()
    before = _arrivals(bus, "batch")
    r = httpx.post(f"{stack.url}/v1/requests",
                   json={"prompt": "ab", "max_tokens": 8, "slo_class": "batch"})  # fmt: skip
    assert r.status_code == 202
    assert _arrivals(bus, "batch") == before + 1
    wait_status(stack.url, r.json()["id"], {"done"})


def _arrivals(bus: Bus, cls: str) -> int:
    """Arrivals of `cls` over the last two buckets (the submit may straddle a boundary)."""
    now = bucket_start_s(now_ms())
    return sum(int(bus.client.hget(bus.keys.arrivals(b), cls) or 0) for b in (now - 10, now))


def test_plain_worker_follows_its_pools_plan_entry(stack: Stack) -> None:
    bus = stack.bus()
    [worker] = [w for w in bus.client.smembers(bus.keys.workers())
                if bus.client.exists(bus.keys.worker(w))]  # fmt: skip

    def settle(pool: PoolSpec, want: dict[str, str]) -> None:
        publish_plan(bus.client, bus.keys, ClusterPlan(pools=[pool]))
        wait_heartbeat(bus, worker, want)

    try:
        settle(PoolSpec(pool_id="default", tp=1, tau=0.7, tau_floor=0.6, max_batch_size=2),
               {"tau": "0.7", "tau_floor": "0.6", "max_batch_size": "2"})  # fmt: skip
        r = httpx.post(f"{stack.url}/v1/requests", json={"prompt": "abc", "max_tokens": GEN,
                                                         "block_length": BLOCK})  # fmt: skip
        body = wait_status(stack.url, r.json()["id"], {"done"})
        assert body["thresholds"] == [0.7], body
    finally:  # the module's other tests expect the worker's own settings
        settle(PoolSpec(pool_id="default", tp=1, tau=0.9),
               {"tau": "0.9", "tau_floor": "0.0", "max_batch_size": "8"})  # fmt: skip
        bus.client.delete(bus.keys.plan())
