"""Redis side of the plan: publish a version, read it, register slots, publish rendezvous.

Publishing is one WATCH/MULTI transaction: read the current version, write the new document with
version + 1, append it to the plan log, record the pools it retires and where their requests go
(common/rehome.py), and announce it on the ctl channel. Two writers racing both succeed, one
after the other, with distinct versions; nobody overwrites a newer plan with an older version
number. Right after, whatever is queued for a retired pool moves to the live pools.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, cast

import redis

from common.keys import Keys
from common.plan import ClusterPlan
from common.rehome import default_calls, queue_plan_change, rehome_retired

PLAN_LOG_MAXLEN = 200


def now_ms() -> float:
    return time.time() * 1000.0


def read_plan(client: redis.Redis, keys: Keys) -> ClusterPlan | None:
    raw = client.get(keys.plan())
    return ClusterPlan.from_json(raw) if raw else None


def publish_plan(client: redis.Redis, keys: Keys, plan: ClusterPlan) -> ClusterPlan:
    """Publish `plan` as the next version; returns it with `version` and `created_ms` set."""

    def tx(pipe: Any) -> ClusterPlan:
        raw = pipe.get(keys.plan())
        prev = json.loads(raw) if raw else {}
        old_pools = {str(p.get("pool_id")) for p in prev.get("pools") or []}
        new = plan.model_copy(update={"version": int(prev.get("version", 0)) + 1,
                                      "created_ms": now_ms()})  # fmt: skip
        text = new.to_json()
        pipe.multi()
        pipe.set(keys.plan(), text)
        pipe.xadd(keys.plan_log(), {"version": new.version, "plan": text},
                  maxlen=PLAN_LOG_MAXLEN, approximate=True)  # fmt: skip
        queue_plan_change(pipe, keys, old_pools, new)
        pipe.publish(keys.ctl(), json.dumps({"type": "plan", "version": new.version}))
        return new

    result = client.transaction(tx, keys.plan(), value_from_callable=True)  # type: ignore[arg-type]
    rehome_retired(client, default_calls(keys))
    return cast(ClusterPlan, result)


# ---- slots ----


@dataclass(slots=True)
class SlotInfo:
    slot_id: str
    node: str
    device: str
    state: str  # idle | joining | serving | draining
    group_id: str = ""
    rank: int = -1
    plan_version: int = 0  # last plan version this slot acted on
    worker_id: str = ""  # the leader's worker id while serving (requests show it)
    pid: int = 0

    def to_hash(self) -> dict[str, str]:
        return {k: str(getattr(self, k)) for k in self.__slots__}

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> SlotInfo:
        return cls(
            h["slot_id"], h["node"], h["device"], h["state"], h.get("group_id", ""),
            int(h.get("rank", -1)), int(h.get("plan_version", 0)), h.get("worker_id", ""),
            int(h.get("pid", 0)),
        )  # fmt: skip


def register_slot(client: redis.Redis, keys: Keys, info: SlotInfo, ttl_s: float) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.slot(info.slot_id), mapping=dict(info.to_hash()))  # type: ignore[arg-type]
    pipe.pexpire(keys.slot(info.slot_id), int(ttl_s * 1000))
    pipe.sadd(keys.slots(), info.slot_id)
    pipe.execute()


def unregister_slot(client: redis.Redis, keys: Keys, slot_id: str) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.delete(keys.slot(slot_id))
    pipe.srem(keys.slots(), slot_id)
    pipe.execute()


def live_slots(client: redis.Redis, keys: Keys) -> list[SlotInfo]:
    """Registered slots whose registration has not expired, sorted by id."""
    ids = sorted(str(s) for s in client.smembers(keys.slots()))
    pipe = client.pipeline(transaction=False)
    for s in ids:
        pipe.hgetall(keys.slot(s))
    return [SlotInfo.from_hash(h) for h in pipe.execute() if h]


# ---- rendezvous ----


@dataclass(slots=True, frozen=True)
class Rendezvous:
    formation: str  # Assignment.formation: followers join only the formation they expect
    host: str
    port: int
    nonce: str  # one per hosting, so a follower never mistakes a dead store for a live one

    def to_json(self) -> str:
        return json.dumps({"formation": self.formation, "host": self.host, "port": self.port,
                           "nonce": self.nonce})  # fmt: skip


def publish_rendezvous(
    client: redis.Redis, keys: Keys, group_id: str, rdv: Rendezvous, ttl_s: float
) -> None:
    client.set(keys.rendezvous(group_id), rdv.to_json(), px=int(ttl_s * 1000))


def read_rendezvous(client: redis.Redis, keys: Keys, group_id: str) -> Rendezvous | None:
    raw = client.get(keys.rendezvous(group_id))
    if not raw:
        return None
    d = json.loads(raw)
    return Rendezvous(d["formation"], d["host"], int(d["port"]), d["nonce"])


def clear_rendezvous(client: redis.Redis, keys: Keys, group_id: str, nonce: str) -> None:
    """Delete the group's rendezvous record only if it is still ours (compare-and-delete)."""
    rdv = read_rendezvous(client, keys, group_id)
    if rdv is not None and rdv.nonce == nonce:
        client.delete(keys.rendezvous(group_id))
