"""`dilaserve plan`: show the cluster plan and the slots, apply a hand-written plan, or build a
uniform one (every live slot in TP groups of one degree).

    dilaserve plan show
    dilaserve plan apply plan.json [--wait-s 60]
    dilaserve plan uniform --tp 2 [--pool default --tau 0.9] [--apply] [--wait-s 60]
    dilaserve plan --gpus 64 --rate 40 --mix interactive=0.3,standard=0.5,batch=0.2

The last form (no subcommand) is the what-if (planner/whatif.py, also `dilaserve whatif`): the
plan the planner would choose for that load and its predicted attainment, touching no cluster.

`apply` checks the document against the schema (common/plan.py) and against the live slots
(a group's slots must be registered, on the node their ids name), publishes it as the next
version, and with --wait-s waits until every slot of the plan serves that version.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    from planner import whatif

    p.add_argument("--redis-url", help="default: settings (REDIS_URL)")
    whatif.add_arguments(p.add_argument_group("what-if (no subcommand)"), required=False)
    sub = p.add_subparsers(dest="action", required=False)
    sub.add_parser("show", help="print the current plan and the live slots")
    a = sub.add_parser("apply", help="publish a plan document as the next version")
    a.add_argument("file", type=Path, help="plan JSON ('-' reads stdin)")
    a.add_argument("--force", action="store_true", help="publish even if slots are missing")
    u = sub.add_parser("uniform", help="every live slot in TP groups of one degree")
    u.add_argument("--tp", type=int, required=True)
    u.add_argument("--pool", default="default")
    u.add_argument("--tau", type=float, default=0.9)
    u.add_argument("--tau-floor", type=float, default=0.0)
    u.add_argument("--apply", action="store_true", help="publish it (default: print only)")
    for q in (a, u):
        q.add_argument("--wait-s", type=float, default=0.0, help="wait until slots serve it")


def run(args: argparse.Namespace) -> int:
    if args.action is None:
        return _whatif(args)
    from common.bus import connect
    from common.config import Settings
    from common.keys import Keys

    settings = Settings()
    rcfg = settings.redis
    if args.redis_url:
        rcfg = rcfg.model_copy(update={"url": args.redis_url})
    client, keys = connect(rcfg), Keys(rcfg.prefix)
    return {"show": _show, "apply": _apply, "uniform": _uniform}[args.action](client, keys, args)


def _whatif(args: argparse.Namespace) -> int:
    from planner import whatif

    if args.gpus is None or args.rate is None:
        print("dilaserve plan: give a subcommand (show, apply, uniform) or a what-if load "
              "(--gpus N --rate R [--mix ...])", file=sys.stderr)  # fmt: skip
        return 2
    return whatif.run(args)


def _show(client: Any, keys: Any, args: argparse.Namespace) -> int:
    from common.plan_bus import live_slots, read_plan

    plan = read_plan(client, keys)
    print(plan.model_dump_json(indent=2) if plan else "no plan published")
    for s in live_slots(client, keys):
        group = f"{s.group_id}#{s.rank}" if s.group_id else "-"
        print(f"{s.slot_id:<24} {s.state:<9} group={group:<28} plan=v{s.plan_version} "
              f"worker={s.worker_id or '-'}")  # fmt: skip
    return 0


def _apply(client: Any, keys: Any, args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from common.plan import ClusterPlan

    text = sys.stdin.read() if str(args.file) == "-" else args.file.read_text()
    try:
        plan = ClusterPlan.model_validate(json.loads(text))
    except (ValueError, ValidationError) as e:
        print(f"invalid plan: {e}", file=sys.stderr)
        return 2
    return _publish(client, keys, plan, args.wait_s, args.force)


def _uniform(client: Any, keys: Any, args: argparse.Namespace) -> int:
    from common.plan import uniform_plan
    from common.plan_bus import live_slots

    slots = [s.slot_id for s in live_slots(client, keys)]
    plan = uniform_plan(slots, args.tp, args.pool, args.tau, args.tau_floor)
    if not args.apply:
        print(plan.model_dump_json(indent=2))
        return 0
    return _publish(client, keys, plan, args.wait_s, force=False)


def _publish(client: Any, keys: Any, plan: Any, wait_s: float, force: bool) -> int:
    from common.plan_bus import publish_plan

    problems = check_slots(client, keys, plan)
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    if problems and not force:
        print("not published (use --force to publish anyway)", file=sys.stderr)
        return 2
    new = publish_plan(client, keys, plan)
    print(f"published plan v{new.version}: {len(new.groups)} groups over {len(new.pools)} pools")
    if wait_s > 0:
        took_s = wait_applied(client, keys, new, wait_s)
        if took_s is None:
            print(f"slots did not all serve v{new.version} within {wait_s}s", file=sys.stderr)
            return 1
        print(f"applied in {took_s:.2f}s")
    return 0


def check_slots(client: Any, keys: Any, plan: Any) -> list[str]:
    """What is wrong with `plan` given the live slots: missing slots, wrong nodes."""
    from common.plan import slot_node
    from common.plan_bus import live_slots

    live = {s.slot_id: s for s in live_slots(client, keys)}
    problems = []
    for sid in plan.slot_ids():
        if sid not in live:
            problems.append(f"slot {sid} is not registered")
        elif live[sid].node != slot_node(sid):
            problems.append(f"slot {sid} registered on node {live[sid].node}")
    return problems


def wait_applied(client: Any, keys: Any, plan: Any, timeout_s: float) -> float | None:
    """Seconds until every slot of `plan` serves in its planned group (None on timeout)."""
    from common.plan_bus import live_slots

    t0 = time.monotonic()
    want = {s: a.group_id for s in plan.slot_ids() if (a := plan.assignment(s)) is not None}
    while time.monotonic() - t0 < timeout_s:
        live = {s.slot_id: s for s in live_slots(client, keys)}
        if all(
            sid in live and live[sid].state == "serving" and live[sid].group_id == gid
            and live[sid].plan_version >= plan.version
            for sid, gid in want.items()
        ):  # fmt: skip
            return time.monotonic() - t0
        time.sleep(0.05)
    return None
