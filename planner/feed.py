"""Read what the planner decides from out of Redis: arrivals, live slots, plan, profiles.

Arrivals: the gateway counts every request it admits or rejects, per class, in 10-second
buckets: `HINCRBY {keys.arrivals(<bucket start s>)} <class> 1` with a TTL, inside the submit
script (common/lua/submit.lua) or, for a request admission refuses before it, in one pipeline
(`count_arrival`). Without them (an older gateway), the planner falls back to the
finished-request windows (`keys.window`, written by the gateway's fold), which lag arrivals by
the service time and miss requests rejected at the door.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

import redis

from common.bus_calls import count_arrival
from common.costmodel import CostModel
from common.keys import Keys
from common.outcomes import BUCKET_S, window_buckets
from common.plan_bus import live_slots
from common.quality import QualityProfile
from planner.assign import Slot
from planner.defaults import load_profiles

__all__ = ["count_arrival", "read_counts", "read_profiles", "read_slots"]
_STATUSES = ("done", "failed", "cancelled", "expired")  # window labels that count requests once


def read_counts(
    client: redis.Redis, keys: Keys, now_ms: float, window_s: int
) -> tuple[dict[int, dict[str, int]], str]:
    """Counts per bucket start per class over the window, and which source they came from."""
    buckets = window_buckets(now_ms, window_s + BUCKET_S)
    pipe = client.pipeline(transaction=False)
    for b in buckets:
        pipe.hgetall(keys.arrivals(b))
    for b in buckets:
        pipe.hgetall(keys.window(b))
    raw = pipe.execute()
    arrivals, finished = raw[: len(buckets)], raw[len(buckets) :]
    if any(arrivals):
        counts = {
            b: {c: int(n) for c, n in h.items()} for b, h in zip(buckets, arrivals, strict=True)
        }
        return counts, "arrivals"
    return {b: _finished_per_class(h) for b, h in zip(buckets, finished, strict=True)}, "finished"


def _finished_per_class(h: dict[str, str]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for name, n in h.items():
        parts = name.split("|")
        if len(parts) == 3 and parts[2] in _STATUSES:
            out[parts[0]] += int(n)
    return dict(out)


def read_slots(client: redis.Redis, keys: Keys) -> list[Slot]:
    """Live slots; a slot's device index orders the slots of a node (lowest first)."""
    infos = live_slots(client, keys)
    order: dict[str, int] = defaultdict(int)
    slots = []
    for info in sorted(infos, key=lambda i: (i.node, _device_index(i.device), i.slot_id)):
        slots.append(Slot(info.slot_id, info.node, order[info.node]))
        order[info.node] += 1
    return slots


def _device_index(device: str) -> int:
    m = re.search(r"(\d+)$", device)
    return int(m.group(1)) if m else 0


def read_profiles(
    client: redis.Redis, keys: Keys, model_dir: Path
) -> tuple[CostModel, QualityProfile, str]:
    """The model's profile hash in Redis (fields `costmodel`, `quality`), else the model
    directory's files, else the built-in examples."""
    cost, quality, source = load_profiles(model_dir)
    h = {str(k): str(v) for k, v in client.hgetall(keys.profile(model_dir.name)).items()}
    if h.get("costmodel"):
        cost = CostModel.from_json(h["costmodel"])
        source = f"cost model: redis {keys.profile(model_dir.name)}; " + source.split("; ")[1]
    if h.get("quality"):
        quality = QualityProfile.from_json(h["quality"])
        source = source.split("; ")[0] + f"; quality: redis {keys.profile(model_dir.name)}"
    return cost, quality, source
