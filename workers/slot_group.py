"""One formation of a slot: join its TP group, build this rank's shard, serve until moved.

The leader (rank 0) hosts the rendezvous store and publishes its address in Redis; followers
wait for the address of exactly their formation and connect. Then the leader runs the ordinary
worker loop (claim → schedule → execute → publish) over a LeaderRunner, and the followers execute
the plans it broadcasts. A plan watcher ends the formation when the plan moves this slot (the
loop hands its requests back at block boundaries), and retunes the pool's τ, τ floor and batch
cap in place when only those changed (a cap beyond what the runners hold regroups).
A failed collective (dead or stuck peer) hands every request back at its last checkpoint.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from common.config import Settings
from common.keys import Keys
from common.plan import Assignment
from common.plan_bus import Rendezvous, clear_rendezvous, publish_rendezvous, read_plan
from common.plan_bus import read_rendezvous as read_rdv
from common.schemas import WorkItem
from workers.model.tp import GroupLost, build_sharded_model
from workers.runner import ModelRunner
from workers.tp import GroupJoinError, GroupSpec, TPGroup, host_store
from workers.tp_runner import LeaderRunner, follow
from workers.tuning import runner_capacity, tuning_of

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    MOVED = "moved"  # the plan changed this slot's formation (or the slot is stopping)
    LOST = "lost"  # a peer died or hung; requests were handed back
    JOIN_FAILED = "join_failed"  # a peer never arrived


@dataclass
class SlotContext:
    """What a slot keeps across formations (the full weights stay in host memory)."""

    settings: Settings
    slot_id: str
    torch_device: str
    model_cfg: Any
    full_state: dict[str, Any]
    tokenizer: Any
    client: redis.Redis
    keys: Keys
    stop: threading.Event  # the slot process is shutting down
    report: Any  # report(state, asg=None, worker_id="") → slot registration
    ack_version: Any  # ack_version(v): this slot now serves plan version v (τ-only change)


def serve(ctx: SlotContext, asg: Assignment) -> Outcome:
    watcher = PlanWatcher(ctx, asg)
    watcher.start()
    group = None
    try:
        ctx.report("joining", asg)
        if asg.tp > 1:
            group = _join(ctx, asg, watcher.moved)
            if group is None:
                return Outcome.MOVED
        if asg.is_leader:
            return _lead(ctx, asg, group, watcher)
        return _follow(ctx, asg, group)
    except GroupJoinError as e:
        log.warning("slot %s could not form %s: %s", ctx.slot_id, asg.group_id, e)
        return Outcome.JOIN_FAILED
    finally:
        watcher.close()
        if group is not None:
            group.close()


# ---- joining ----


def _spec(ctx: SlotContext, asg: Assignment, host: str, port: int) -> GroupSpec:
    s = ctx.settings.slot
    return GroupSpec(
        asg.group_id, asg.rank, asg.tp, host, port, device=ctx.torch_device,
        timeout_s=s.collective_timeout_s, join_timeout_s=s.join_timeout_s,
    )  # fmt: skip


def _join(ctx: SlotContext, asg: Assignment, moved: threading.Event) -> TPGroup | None:
    s = ctx.settings.slot
    if asg.is_leader:
        store = host_store(s.host, asg.tp, s.join_timeout_s)
        rdv = Rendezvous(asg.formation, s.host, store.port, uuid.uuid4().hex[:12])
        publish_rendezvous(ctx.client, ctx.keys, asg.group_id, rdv, s.join_timeout_s + 5)
        try:
            return TPGroup(_spec(ctx, asg, s.host, store.port), store=store)
        finally:
            clear_rendezvous(ctx.client, ctx.keys, asg.group_id, rdv.nonce)
    deadline = time.monotonic() + s.join_timeout_s
    while time.monotonic() < deadline:
        if moved.is_set():
            return None
        rdv = read_rdv(ctx.client, ctx.keys, asg.group_id)
        # The port check skips a record left by a leader that died before clearing it.
        if rdv is not None and rdv.formation == asg.formation and _port_open(rdv.host, rdv.port):
            return TPGroup(_spec(ctx, asg, rdv.host, rdv.port))
        time.sleep(0.05)
    raise GroupJoinError(f"no leader of {asg.group_id} published a rendezvous in time")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# ---- serving ----


def _build(ctx: SlotContext, asg: Assignment, group: TPGroup | None):  # type: ignore[no-untyped-def]
    from workers.engine import DTYPES

    ecfg = ctx.settings.engine
    model, hook = build_sharded_model(
        ctx.model_cfg, ctx.full_state, asg.rank, asg.tp, group.group if group else None,
        DTYPES[ecfg.dtype], ctx.torch_device,
    )  # fmt: skip
    capacity = runner_capacity(ecfg.max_batch_size, asg)
    return ModelRunner(model, capacity, ecfg.max_canvas_len), hook, capacity


def _follow(ctx: SlotContext, asg: Assignment, group: TPGroup | None) -> Outcome:
    runner, hook, _ = _build(ctx, asg, group)
    ctx.report("serving", asg)
    grace_s = ctx.settings.worker.drain_timeout_s + 5.0
    stopping_since: list[float] = []

    def leave() -> bool:
        # A stopping follower waits for its leader to drain and send STOP, but not forever.
        if not ctx.stop.is_set():
            return False
        stopping_since[:1] = stopping_since[:1] or [time.monotonic()]
        return time.monotonic() - stopping_since[0] > grace_s

    try:
        num_steps = follow(runner, hook, group.group if group else None, leave)
    except GroupLost as e:
        log.warning("slot %s lost group %s: %s", ctx.slot_id, asg.group_id, e)
        return Outcome.LOST
    log.info("slot %s left %s after %d steps", ctx.slot_id, asg.group_id, num_steps)
    return Outcome.MOVED


def _lead(ctx: SlotContext, asg: Assignment, group: TPGroup | None, w: PlanWatcher) -> Outcome:
    from common.ids import new_worker_id
    from workers.main import build_loop

    runner, hook, capacity = _build(ctx, asg, group)
    inner: Any = runner
    if group is not None:
        inner = LeaderRunner(runner, hook, ctx.settings.slot.collective_timeout_s / 4, group.group)
    worker_id = new_worker_id()
    wcfg = ctx.settings.worker.model_copy(
        update={"pool": asg.pool_id, "tau": asg.tau, "worker_id": worker_id}
    )
    default_batch = ctx.settings.engine.max_batch_size
    tuning = tuning_of(asg, default_batch, capacity)
    io = None
    outcome = Outcome.MOVED
    try:
        loop, io = build_loop(
            ctx.settings, wcfg, worker_id, inner, ctx.model_cfg, ctx.tokenizer,
            tuning.max_batch_size, asg.tp,
        )  # fmt: skip

        def retune(_: Any = None) -> None:  # the watcher's latest view wins, whoever calls last
            loop.request_retune(tuning_of(w.asg, default_batch, capacity))

        w.on_retune = retune
        retune()  # the pool's floor from the first claim on, and any change since `asg`
        io.start()
        ctx.report("serving", asg, worker_id)
        try:
            loop.run(w.moved)
        except GroupLost as e:
            log.warning("group %s lost a rank: %s; handing back", asg.group_id, e)
            _hand_back_all(loop, io)
            outcome = Outcome.LOST
    finally:
        ctx.report("draining", asg, worker_id)
        if io is not None:
            io.close()
        if isinstance(inner, LeaderRunner):
            inner.close()
    return outcome


def _hand_back_all(loop: Any, io: Any) -> None:
    """Every request this group holds goes back to its queue at its last checkpoint (the canvas
    saved in Redis at its last block boundary), including claims not yet in the scheduler."""
    from workers.outbox import Out, OutKind

    io.stop_claiming()
    outs = [Out(OutKind.HANDBACK, rid, m.attempt, m.pool, [], m.block_length)
            for rid, m in loop.meta.items()]  # fmt: skip
    while True:
        try:
            msg = io.inbox.get_nowait()
        except queue.Empty:
            break
        if isinstance(msg, WorkItem) and msg.req_id not in loop.meta:
            outs.append(Out(OutKind.HANDBACK, msg.req_id, msg.attempt, msg.pool, [],
                            msg.block_length))  # fmt: skip
    loop.meta.clear()
    io.publish(outs)


class PlanWatcher(threading.Thread):
    """Re-reads the plan; sets `moved` when this slot must leave its formation (or stop)."""

    def __init__(self, ctx: SlotContext, asg: Assignment) -> None:
        super().__init__(name="plan-watch", daemon=True)
        self.ctx, self.asg = ctx, asg
        self.moved = threading.Event()
        self.on_retune: Any = None
        self._done = threading.Event()

    def close(self) -> None:
        self._done.set()
        self.join(timeout=2.0)

    def run(self) -> None:
        poll_s = self.ctx.settings.slot.plan_poll_s
        while not self._done.wait(poll_s):
            if self.ctx.stop.is_set():
                self.moved.set()
                return
            try:
                plan = read_plan(self.ctx.client, self.ctx.keys)
            except redis.RedisError as e:
                log.warning("reading the plan: %s", e)
                continue
            new = plan.assignment(self.ctx.slot_id) if plan is not None else None
            if new is None or new.formation != self.asg.formation or not self._fits(new):
                self.moved.set()
                return
            if _settings(new) != _settings(self.asg):
                self.asg = new
                if self.on_retune is not None:
                    self.on_retune(new)
            assert plan is not None
            self.ctx.ack_version(plan.version)

    def _fits(self, new: Assignment) -> bool:
        """A batch cap above what this formation's runners hold needs a regroup to grow them."""
        default = self.ctx.settings.engine.max_batch_size
        return runner_capacity(default, new) <= runner_capacity(default, self.asg)


def _settings(a: Assignment) -> tuple[float, float, int | None]:
    """What a plan may change in place: τ, τ floor, batch cap."""
    return a.tau, a.tau_floor, a.max_batch_size
