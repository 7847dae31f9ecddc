"""Drive a real stack for planner studies: a paced device, Poisson arrivals per class, the
attainment the requests record, and the planner's beat in a thread.

The stack is real (gateway, slot processes, Redis, the planner's jobs); on a CPU the device
time of each step is paced to a cost model (workers/pacing.py), so a plan made for that cost
model meets the hardware it was made for. Used by the end-to-end planner test
(tests/test_planner_e2e.py) and `dilaserve validate-planner --live`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from common.bus_calls import count_arrival
from common.config import Settings
from common.costmodel import Coeffs, CostModel
from common.keys import Keys
from common.outcomes import BUCKET_S, bucket_start_s
from common.quality import QualityPoint, QualityProfile
from planner.defaults import COSTMODEL_FILE, QUALITY_FILE

PROMPT_CHARS = "abcdefghijklmnopqrstuvwxyz"
ENDED = ("done", "failed", "expired", "cancelled")


def paced_cost_model(fixed_ms: float, full_row_ms: float, reuse_row_ms: float) -> CostModel:
    """A device whose sub-batch costs a fixed part plus a part per row (the same at every TP
    degree: the planner then never prefers TP > 1 on it)."""
    return CostModel({1: Coeffs(full=[fixed_ms, full_row_ms, 0.0, 0.0],
                                reuse=[fixed_ms, reuse_row_ms, 0.0, 0.0])})  # fmt: skip


def measure_tokens_per_step(
    model_dir: Path, taus: list[float], gen: int, block: int, num_prompts: int = 24
) -> dict[float, float]:
    """Mean tokens the model commits per step at each τ, over random prompts (greedy)."""
    from workers.engine import Engine
    from workers.sched.plan import ThresholdRule

    engine = Engine.from_dir(model_dir, max_batch_size=num_prompts)
    tok: Any = engine.tokenizer
    rng = random.Random(0)
    prompts = [tok.encode(random_prompt(rng), add_special_tokens=False) for _ in range(num_prompts)]
    out = {}
    for tau in taus:
        steps = [o.steps for o in engine.generate(prompts, gen, block, ThresholdRule(tau))]
        out[tau] = gen * len(steps) / sum(steps)
    return out


def write_profiles(
    model_dir: Path, cost: CostModel, tokens_per_step: Mapping[float, float], gen: int,
    block: int, accuracy: Mapping[float, float] | None = None,
) -> None:  # fmt: skip
    """The model's costmodel.json and quality_profile.json (accuracy: 0.8 unless given, the
    random test models have no task to score)."""
    points = [
        QualityPoint(tau, (accuracy or {}).get(tau, 0.8), tps, gen / tps)
        for tau, tps in sorted(tokens_per_step.items(), reverse=True)
    ]
    profile = QualityProfile(model_dir.name, gen, block, 0, {"dual": points})
    (model_dir / COSTMODEL_FILE).write_text(cost.to_json())
    (model_dir / QUALITY_FILE).write_text(profile.to_json())


def random_prompt(rng: random.Random) -> str:
    return "".join(rng.choice(PROMPT_CHARS) for _ in range(rng.randint(4, 10)))


# ---- arrivals ----


@dataclass(frozen=True, slots=True)
class Arrival:
    t_s: float  # from the start of the run
    slo_class: str
    prompt: str


def poisson_arrivals(rates: Mapping[str, float], duration_s: float, seed: int) -> list[Arrival]:
    rng = random.Random(seed)
    out = []
    for cls, rate in sorted(rates.items()):
        t_s = 0.0
        while rate > 0:
            t_s += rng.expovariate(rate)
            if t_s >= duration_s:
                break
            out.append(Arrival(t_s, cls, random_prompt(rng)))
    return sorted(out, key=lambda a: a.t_s)


def seed_history(
    client: redis.Redis, keys: Keys, rates: Mapping[str, float], window_s: int, now_ms: float
) -> None:
    """Arrival counters as if `rates` had held for the last `window_s` (current bucket too)."""
    pipe = client.pipeline(transaction=False)
    for b in range(bucket_start_s(now_ms) - window_s - BUCKET_S, bucket_start_s(now_ms) + 1,
                   BUCKET_S):  # fmt: skip
        span_s = min(BUCKET_S, max(0.0, now_ms / 1000 - b))
        for cls, rate in rates.items():
            for _ in range(round(rate * span_s)):
                count_arrival(pipe, keys, cls, b * 1000.0)
    pipe.execute()


def clear_history(client: redis.Redis, keys: Keys, now_ms: float, back_s: int = 600) -> None:
    now = bucket_start_s(now_ms)
    client.delete(*[keys.arrivals(b) for b in range(now - back_s, now + 1, BUCKET_S)])


# ---- a run ----


@dataclass(slots=True)
class Sent:
    req_id: str
    slo_class: str
    t_s: float
    accepted: bool  # False: rejected at the door (429), which counts as a miss


def replay(
    url: str, arrivals: list[Arrival], gen: int, block: int, id_prefix: str
) -> list[Sent]:
    """Open loop: each request at its time (a slow submit delays the next, never skips it)."""
    sent = []
    with httpx.Client(base_url=url, timeout=10) as http:
        start = time.monotonic()
        for i, a in enumerate(arrivals):
            time.sleep(max(0.0, start + a.t_s - time.monotonic()))
            req_id = f"{id_prefix}-{i}"
            body = {"prompt": a.prompt, "max_tokens": gen, "block_length": block,
                    "slo_class": a.slo_class}  # fmt: skip
            r = http.post("/v1/requests", json=body, headers={"X-Request-Id": req_id})
            if r.status_code not in (202, 429):
                r.raise_for_status()
            sent.append(Sent(req_id, a.slo_class, a.t_s, r.status_code == 202))
    return sent


def wait_ended(
    client: redis.Redis, keys: Keys, sent: list[Sent], timeout_s: float = 120.0
) -> dict[str, dict[str, str]]:
    """Every accepted request's record (status, arrival, finish, deadline) once it has ended."""
    deadline = time.monotonic() + timeout_s
    fields = ("status", "arrival_ms", "finished_ms", "deadline_ms")
    records: dict[str, dict[str, str]] = {}
    todo = [s.req_id for s in sent if s.accepted]
    while todo and time.monotonic() < deadline:
        pipe = client.pipeline(transaction=False)
        for r in todo:
            pipe.hmget(keys.req(r), fields)
        for r, values in zip(todo, pipe.execute(), strict=True):
            if values[0] in ENDED:
                records[r] = dict(zip(fields, values, strict=True))
        todo = [r for r in todo if r not in records]
        if todo:
            time.sleep(0.2)
    if todo:
        raise TimeoutError(f"{len(todo)} requests did not end within {timeout_s}s")
    return records


def met(rec: dict[str, str] | None) -> bool:
    """Done by its deadline (a request rejected at the door has no record: missed)."""
    if rec is None or rec["status"] != "done":
        return False
    return float(rec["finished_ms"]) <= float(rec["deadline_ms"])


def attainment(
    records: dict[str, dict[str, str]], sent: list[Sent], since_s: float = 0.0
) -> dict[str, float]:
    """Share of requests (arriving from `since_s` on) done by their deadline, per class and
    "all"."""
    hits: dict[str, list[bool]] = {}
    for s in sent:
        if s.t_s >= since_s:
            ok = met(records.get(s.req_id))
            hits.setdefault(s.slo_class, []).append(ok)
            hits.setdefault("all", []).append(ok)
    return {c: sum(v) / len(v) for c, v in sorted(hits.items())}


def latencies_ms(records: dict[str, dict[str, str]]) -> list[float]:
    """Arrival → end of the requests that finished (done)."""
    return sorted(float(r["finished_ms"]) - float(r["arrival_ms"])
                  for r in records.values() if r["status"] == "done")  # fmt: skip


class PlannerBeat(threading.Thread):
    """The Celery beat's schedule, in a thread: watch every `watch_period_s` (a drift re-plans
    at once), re-plan every `replan_period_s`. Calls the same jobs the Celery tasks call."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings) -> None:
        super().__init__(name="planner-beat", daemon=True)
        self.client, self.keys, self.settings = client, keys, settings
        self.log: list[dict[str, Any]] = []  # every re-plan's summary
        self._done = threading.Event()

    def close(self) -> None:
        self._done.set()
        self.join(timeout=30)

    def run(self) -> None:
        from planner.replan import replan_once, watch_once

        p = self.settings.planner
        next_replan = time.monotonic() + p.replan_period_s
        while not self._done.wait(p.watch_period_s):
            moved = watch_once(self.client, self.keys, self.settings)
            if moved or time.monotonic() >= next_replan:
                out = replan_once(self.client, self.keys, self.settings)
                self.log.append({"at_s": time.monotonic(), "drifted": moved, **out})
                next_replan = time.monotonic() + p.replan_period_s
