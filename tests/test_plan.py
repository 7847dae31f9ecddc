"""The cluster plan: schema rules, assignments, formations, and its Redis side."""

from __future__ import annotations

import json

import pytest
import redis
from pydantic import ValidationError

from common.keys import Keys
from common.plan import ClusterPlan, GroupPlan, PoolSpec, uniform_plan
from common.plan_bus import (
    Rendezvous,
    SlotInfo,
    clear_rendezvous,
    live_slots,
    publish_plan,
    publish_rendezvous,
    read_plan,
    read_rendezvous,
    register_slot,
)


def _plan(**kw) -> ClusterPlan:
    pools = kw.pop("pools", [PoolSpec(pool_id="fast", tp=2, tau=0.9),
                             PoolSpec(pool_id="bulk", tp=1, tau=0.7)])  # fmt: skip
    groups = kw.pop("groups", [
        GroupPlan(group_id="g0", pool_id="fast", slots=["n0/cpu:0", "n0/cpu:1"]),
        GroupPlan(group_id="g1", pool_id="bulk", slots=["n0/cpu:2"]),
    ])  # fmt: skip
    return ClusterPlan(pools=pools, groups=groups, **kw)


def test_assignment_gives_group_rank_and_pool_settings() -> None:
    plan = _plan()
    a = plan.assignment("n0/cpu:1")
    assert a is not None and (a.group_id, a.rank, a.tp, a.tau) == ("g0", 1, 2, 0.9)
    assert not a.is_leader and plan.assignment("n0/cpu:0").is_leader  # type: ignore[union-attr]
    assert plan.assignment("n0/cpu:9") is None
    assert [p.num_instances for p in plan.pools] == [1, 1]  # filled in from the groups


def test_formation_ignores_tau_but_not_membership() -> None:
    a = _plan().assignment("n0/cpu:0")
    retuned = _plan(pools=[PoolSpec(pool_id="fast", tp=2, tau=0.6),
                           PoolSpec(pool_id="bulk", tp=1)]).assignment("n0/cpu:0")  # fmt: skip
    reordered = _plan(groups=[
        GroupPlan(group_id="g0", pool_id="fast", slots=["n0/cpu:1", "n0/cpu:0"]),
    ]).assignment("n0/cpu:0")  # fmt: skip
    assert a is not None and retuned is not None and reordered is not None
    assert retuned.formation == a.formation and retuned.tau == 0.6
    assert reordered.formation != a.formation


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([GroupPlan(group_id="g", pool_id="fast", slots=["n0/cpu:0"])], "has 1 slots"),
        ([GroupPlan(group_id="g", pool_id="nope", slots=["n0/cpu:0"])], "unknown pool"),
        ([GroupPlan(group_id="g", pool_id="fast", slots=["n0/cpu:0", "n1/cpu:0"])], "spans"),
        ([GroupPlan(group_id="a", pool_id="bulk", slots=["n0/cpu:0"]),
          GroupPlan(group_id="b", pool_id="bulk", slots=["n0/cpu:0"])], "in groups"),
    ],
)  # fmt: skip
def test_inconsistent_plans_are_rejected(groups: list[GroupPlan], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _plan(groups=groups)


def test_routing_must_name_known_pools_and_unknown_fields_fail() -> None:
    with pytest.raises(ValidationError, match="unknown pools"):
        _plan(routing={"interactive": {"elsewhere": 1.0}})
    raw = json.loads(_plan().to_json())
    raw["pools"][0]["tp_degree"] = 2
    with pytest.raises(ValidationError):
        ClusterPlan.model_validate(raw)


def test_uniform_plan_groups_per_node_and_leaves_the_rest_idle() -> None:
    slots = ["n0/cpu:0", "n0/cpu:1", "n0/cpu:2", "n1/cpu:0", "n1/cpu:1"]
    plan = uniform_plan(slots, tp=2)
    assert [g.slots for g in plan.groups] == [["n0/cpu:0", "n0/cpu:1"], ["n1/cpu:0", "n1/cpu:1"]]
    assert plan.assignment("n0/cpu:2") is None and plan.pools[0].num_instances == 2


def test_publish_bumps_the_version_and_logs_it(redis_client: redis.Redis) -> None:
    keys = Keys("t")
    assert read_plan(redis_client, keys) is None
    v1 = publish_plan(redis_client, keys, _plan())
    v2 = publish_plan(redis_client, keys, _plan(routing={"batch": {"bulk": 1.0}}))
    assert (v1.version, v2.version) == (1, 2) and v2.created_ms >= v1.created_ms
    current = read_plan(redis_client, keys)
    assert current is not None and current.version == 2 and current.routing
    log = redis_client.xrange(keys.plan_log())
    assert [e[1]["version"] for e in log] == ["1", "2"]


def test_slots_register_and_expire(redis_client: redis.Redis) -> None:
    keys = Keys("t")
    register_slot(redis_client, keys, SlotInfo("n0/cpu:0", "n0", "cpu:0", "idle"), ttl_s=30)
    register_slot(redis_client, keys, SlotInfo("n0/cpu:1", "n0", "cpu:1", "serving", "g0", 1,
                                               3, "w-1", 42), ttl_s=30)  # fmt: skip
    redis_client.delete(keys.slot("n0/cpu:0"))  # as if its TTL ran out
    [only] = live_slots(redis_client, keys)
    assert (only.slot_id, only.group_id, only.rank, only.plan_version) == ("n0/cpu:1", "g0", 1, 3)


def test_rendezvous_is_cleared_only_by_its_owner(redis_client: redis.Redis) -> None:
    keys = Keys("t")
    rdv = Rendezvous("abc", "127.0.0.1", 1234, "nonce1")
    publish_rendezvous(redis_client, keys, "g0", rdv, ttl_s=30)
    assert read_rendezvous(redis_client, keys, "g0") == rdv
    clear_rendezvous(redis_client, keys, "g0", "someone-else")
    assert read_rendezvous(redis_client, keys, "g0") == rdv
    clear_rendezvous(redis_client, keys, "g0", "nonce1")
    assert read_rendezvous(redis_client, keys, "g0") is None
