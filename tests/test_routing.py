"""The gateway spreads each class over pools by the plan's weights."""

from __future__ import annotations

from collections import Counter

from common.plan import ClusterPlan, PoolSpec
from gateway.routing import Router


def _plan(version: int, routing: dict[str, dict[str, float]]) -> ClusterPlan:
    pools = [PoolSpec(pool_id=p, tp=1) for p in ("fast", "bulk")]
    return ClusterPlan(version=version, pools=pools, routing=routing)


def test_weighted_shares_are_exact_over_a_window() -> None:
    r = Router("default")
    r.update(_plan(1, {"interactive": {"fast": 0.75, "bulk": 0.25}, "batch": {"bulk": 1.0}}))
    got = Counter(r.pool_for("interactive") for _ in range(100))
    assert got == {"fast": 75, "bulk": 25}
    assert {r.pool_for("batch") for _ in range(10)} == {"bulk"}


def test_unrouted_class_and_no_plan_use_the_default_pool() -> None:
    r = Router("default")
    assert r.pool_for("interactive") == "default"
    r.update(_plan(1, {"batch": {"bulk": 1.0}}))
    assert r.pool_for("interactive") == "default"


def test_a_new_plan_version_replaces_the_routing() -> None:
    r = Router("default")
    r.update(_plan(1, {"batch": {"bulk": 1.0}}))
    r.update(_plan(2, {"batch": {"fast": 1.0}}))
    assert r.pool_for("batch") == "fast"
    r.update(None)
    assert r.pool_for("batch") == "default"
