"""Helpers for the operability tests: a small stack, traffic, and a parsed `/metrics` scrape."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.stack import Stack, serving, wait_status

GEN, BLOCK = 16, 8


def watched_stack(
    redis_url: str, model_dir: Path, log_dir: Path, step_delay_s: float
) -> AbstractContextManager[Stack]:
    """Gateway + one worker on a private key prefix; each step sleeps `step_delay_s` so that a
    request stays in flight long enough to be watched."""
    env = {
        "DILA_WORKER__DEBUG_STEP_DELAY_S": str(step_delay_s),
        "DILA_SCHEDULER__POLICY": "edf-fixed",  # needs no fitted cost model: fixed τ 0.9
    }
    return serving(redis_url, model_dir, log_dir, env)


def save_letters_checkpoint(out: Path) -> Path:
    """A tiny random model (char tokenizer) whose special tokens never win: its answers are
    letters, so a partial canvas shows text and masks."""
    import torch

    from tests.dataplane_helpers import save_char_tokenizer
    from tests.engine_helpers import tiny_model
    from workers.model.loader import save_model

    model = tiny_model(seed=0, peaked=8.0)
    with torch.no_grad():
        model.lm_head.weight[:4].zero_()  # PAD, UNK, EOS, MASK: logit 0 under random letters
    save_model(model, out)
    save_char_tokenizer(out)
    return out


def submit(url: str, prompt: str = "abc", **extra: object) -> str:
    body = {"prompt": prompt, "max_tokens": GEN, "block_length": BLOCK, **extra}
    r = httpx.post(f"{url}/v1/requests", json=body, timeout=10)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def run_done(url: str, n: int, **extra: object) -> list[dict]:
    ids = [submit(url, **extra) for _ in range(n)]
    return [wait_status(url, i, {"done", "failed"}) for i in ids]


Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str) -> Samples:
    """`/metrics` through the official Prometheus text parser: sample name → [(labels, value)]."""
    r = httpx.get(f"{url}/metrics", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    rows = samples.get(name, [])
    return sum(v for lab, v in rows if all(lab.get(k) == want for k, want in labels.items()))


def wait_for(check, timeout_s: float = 20, every_s: float = 0.2):  # type: ignore[no-untyped-def]
    """Poll `check()` until it returns something truthy; → that value (AssertionError after)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(f"condition not met in {timeout_s}s (last: {last!r})")
