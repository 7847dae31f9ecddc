"""The cluster plan: which slots form which tensor-parallel groups, serving which pool.

One JSON document under `keys.plan()`, written whole (never patched) with a version that only
grows; every version also goes to the capped stream `keys.plan_log()`. The planner writes it
(issue 7), an operator can write one by hand (`dilaserve plan apply`), and every slot reads it:
a slot finds its group and rank with `assignment(slot_id)`.

A slot is one worker process on one device, named `{node}/{device}` (e.g. `n0/cuda:3`). A group
lists its slots in rank order (slots[0] is the leader, which claims from the pool's queue and
runs the scheduler); its size is the pool's TP degree and all its slots are on one node.
What makes a slot regroup is its *formation* (group id, pool, slots in order): a new version that
keeps a slot's formation and changes only τ is applied at the next step, without regrouping.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1


class PoolSpec(BaseModel):
    """Every instance of one configuration; requests of a pool share its queue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pool_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    tp: int = Field(ge=1, description="TP degree of each of the pool's groups")
    tau: float = Field(0.9, gt=0, le=1, description="default confidence threshold")
    tau_floor: float = Field(0.0, ge=0, le=1, description="τ control never goes below this")
    max_batch_size: int | None = Field(None, ge=1, description="None: the worker's setting")
    num_instances: int = Field(0, ge=0, description="groups of this pool (filled in if 0)")


class GroupPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    group_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    pool_id: str
    slots: list[str] = Field(min_length=1, description="slot ids in rank order; [0] leads")


class ClusterPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1  # SCHEMA_VERSION; a breaking change bumps both
    version: int = Field(0, ge=0, description="set on publish: previous + 1")
    created_ms: float = Field(0.0, ge=0, description="set on publish (epoch ms)")
    source: str = "manual"  # manual | planner | up
    pools: list[PoolSpec] = Field(default_factory=list)
    groups: list[GroupPlan] = Field(default_factory=list)
    # class → pool → share of that class's requests (the gateway's routing table)
    routing: dict[str, dict[str, float]] = Field(default_factory=dict)
    # What the planner predicted when it chose this plan (absent from hand-written plans);
    # `dilaserve status`, the dashboard and /metrics show them.
    status: str | None = Field(None, description="solver outcome: optimal | feasible | …")
    reason: str = ""
    solve_ms: float | None = Field(None, ge=0)
    attainment: dict[str, float] = Field(default_factory=dict, description="class → P(SLO met)")
    accuracy: float | None = Field(None, description="predicted, load-weighted over classes")
    goodput_rps: float | None = Field(None, ge=0, description="predicted SLO-meeting req/s")
    rates_rps: dict[str, float] = Field(default_factory=dict, description="class → rate planned")

    @model_validator(mode="after")
    def _consistent(self) -> ClusterPlan:
        pools = {p.pool_id: p for p in self.pools}
        if len(pools) != len(self.pools):
            raise ValueError("pool ids must be unique")
        if len({g.group_id for g in self.groups}) != len(self.groups):
            raise ValueError("group ids must be unique")
        seen: dict[str, str] = {}
        for g in self.groups:
            _check_group(g, pools, seen)
        for cls, shares in self.routing.items():
            unknown = sorted(set(shares) - set(pools))
            if unknown:
                raise ValueError(f"routing of class {cls!r} names unknown pools {unknown}")
        counts = {p: sum(g.pool_id == p for g in self.groups) for p in pools}
        self.pools = [
            p if p.num_instances else p.model_copy(update={"num_instances": counts[p.pool_id]})
            for p in self.pools
        ]
        for p in self.pools:
            if p.num_instances != counts[p.pool_id]:
                raise ValueError(
                    f"pool {p.pool_id!r} says num_instances={p.num_instances} but "
                    f"{counts[p.pool_id]} groups serve it"
                )
        return self

    def pool(self, pool_id: str) -> PoolSpec:
        return next(p for p in self.pools if p.pool_id == pool_id)

    def assignment(self, slot_id: str) -> Assignment | None:
        """This slot's group, rank and pool settings; None when the plan leaves it idle."""
        for g in self.groups:
            if slot_id in g.slots:
                p = self.pool(g.pool_id)
                return Assignment(
                    g.group_id, g.pool_id, tuple(g.slots), g.slots.index(slot_id),
                    p.tau, p.tau_floor, p.max_batch_size,
                )  # fmt: skip
        return None

    def slot_ids(self) -> list[str]:
        return [s for g in self.groups for s in g.slots]

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> ClusterPlan:
        return cls.model_validate_json(text)


def _check_group(g: GroupPlan, pools: dict[str, PoolSpec], seen: dict[str, str]) -> None:
    if g.pool_id not in pools:
        raise ValueError(f"group {g.group_id!r} serves unknown pool {g.pool_id!r}")
    tp = pools[g.pool_id].tp
    if len(g.slots) != tp:
        raise ValueError(
            f"group {g.group_id!r} has {len(g.slots)} slots, pool {g.pool_id!r} has tp={tp}"
        )
    for s in g.slots:
        if s in seen:
            raise ValueError(f"slot {s!r} is in groups {seen[s]!r} and {g.group_id!r}")
        seen[s] = g.group_id
    nodes = {slot_node(s) for s in g.slots}
    if len(nodes) > 1:
        raise ValueError(f"group {g.group_id!r} spans nodes {sorted(nodes)}; a group is one node")


def slot_node(slot_id: str) -> str:
    """`n0/cuda:3` → `n0`."""
    return slot_id.split("/", 1)[0]


def slot_id_of(node: str, device: str) -> str:
    return f"{node}/{device}"


@dataclass(frozen=True, slots=True)
class Assignment:
    group_id: str
    pool_id: str
    slots: tuple[str, ...]  # rank order
    rank: int
    tau: float
    tau_floor: float
    max_batch_size: int | None

    @property
    def tp(self) -> int:
        return len(self.slots)

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    @property
    def formation(self) -> str:
        """Identity of the process group: equal formations need no regroup. A short hash of
        (group, pool, slots in rank order), the same on every member."""
        raw = json.dumps([self.group_id, self.pool_id, list(self.slots)])
        return hashlib.blake2b(raw.encode(), digest_size=6).hexdigest()


def uniform_plan(
    slot_ids: list[str], tp: int, pool_id: str = "default", tau: float = 0.9,
    tau_floor: float = 0.0, source: str = "manual",
) -> ClusterPlan:  # fmt: skip
    """Every slot in groups of `tp`, one pool. Slots are grouped per node in sorted order; a
    node's leftover slots (fewer than `tp`) stay idle."""
    by_node: dict[str, list[str]] = {}
    for s in sorted(slot_ids):
        by_node.setdefault(slot_node(s), []).append(s)
    groups = []
    for node, slots in sorted(by_node.items()):
        for i in range(len(slots) // tp):
            members = slots[i * tp : (i + 1) * tp]
            groups.append(GroupPlan(group_id=f"{pool_id}-{node}-{i}", pool_id=pool_id,
                                    slots=members))  # fmt: skip
    pool = PoolSpec(pool_id=pool_id, tp=tp, tau=tau, tau_floor=tau_floor)
    return ClusterPlan(source=source, pools=[pool], groups=groups)
