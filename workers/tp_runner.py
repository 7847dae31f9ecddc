"""One ModelRunner per rank, driven by the leader: rank 0 broadcasts each StepPlan, all execute it.

Every rank holds the same slots and canvases (same plans in the same order, deterministic slot
allocation) and, because the embedding and LM head are replicated and the all-reduce gives every
rank the same sums, the same logits: each rank commits the same tokens, and only the leader's
StepResult is used. The leader also broadcasts PING while idle, so a follower blocked on the next
plan never hits the collective timeout unless the leader is really gone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import torch.distributed as dist

from workers.model.tp import AllReduceHook, GroupLost
from workers.runner import ModelRunner
from workers.sched.plan import StepPlan, StepResult

log = logging.getLogger(__name__)


class MsgKind(StrEnum):
    STEP = "step"  # execute `plan`
    PING = "ping"  # leader is alive and idle
    STOP = "stop"  # leave the group loop (regroup or shutdown)


@dataclass(slots=True)
class GroupMsg:
    kind: MsgKind
    plan: StepPlan | None = None


def _broadcast(msg: GroupMsg | None, group: dist.ProcessGroup | None) -> GroupMsg:
    # Object broadcast pickles, which is fine inside a process group (never across Redis).
    box: list[GroupMsg | None] = [msg]
    try:
        dist.broadcast_object_list(box, src=0, group=group)
    except Exception as e:  # gloo/NCCL raise RuntimeError subclasses, not one type
        raise GroupLost(f"plan broadcast failed: {e}") from e
    assert box[0] is not None
    return box[0]


class LeaderRunner:
    """Drop-in for ModelRunner on rank 0 (the worker loop calls `execute(plan)` as usual)."""

    def __init__(
        self,
        runner: ModelRunner,
        hook: AllReduceHook,
        ping_interval_s: float,
        group: dist.ProcessGroup | None = None,
    ) -> None:
        self.runner, self.hook, self.group = runner, hook, group
        self.ping_interval_s = ping_interval_s
        self._lock = threading.Lock()  # one collective at a time: steps and pings share the group
        self._last_send_s = time.monotonic()
        self._stop = threading.Event()
        self._pinger = threading.Thread(target=self._ping_loop, name="tp-ping", daemon=True)
        self._pinger.start()

    def execute(self, plan: StepPlan) -> StepResult:
        with self._lock:
            self._check()
            self._send(GroupMsg(MsgKind.STEP, plan))
            result = self.runner.execute(plan)
        # The runner turns row failures into per-request errors; a failed collective is not one.
        self._check()
        return result

    def close(self) -> None:
        """Tell followers to leave their loop (best effort: the group may already be broken)."""
        self._stop.set()
        self._pinger.join(timeout=self.ping_interval_s + 1.0)
        with self._lock:
            if self.hook.error is None:
                try:
                    self._send(GroupMsg(MsgKind.STOP))
                except GroupLost as e:
                    log.warning("could not stop followers: %s", e)

    def _send(self, msg: GroupMsg) -> None:
        try:
            _broadcast(msg, self.group)
        except GroupLost as e:
            self.hook.error = e
            raise
        self._last_send_s = time.monotonic()

    def _check(self) -> None:
        if self.hook.error is not None:
            raise GroupLost(f"TP group lost: {self.hook.error}") from self.hook.error

    def _ping_loop(self) -> None:
        while not self._stop.wait(self.ping_interval_s / 2):
            if time.monotonic() - self._last_send_s < self.ping_interval_s:
                continue
            if not self._lock.acquire(blocking=False):
                continue  # a step is running: that broadcast already proved liveness
            try:
                if self.hook.error is None:
                    self._send(GroupMsg(MsgKind.PING))
            except GroupLost as e:
                log.warning("ping failed: %s", e)
            finally:
                self._lock.release()


def follow(
    runner: ModelRunner,
    hook: AllReduceHook,
    group: dist.ProcessGroup | None = None,
    leave: Callable[[], bool] | None = None,
) -> int:
    """A follower's whole life in a group: execute each broadcast plan until STOP, or until
    `leave()` says so (checked after every message; idle leaders ping, so that is often).
    Returns the number of steps executed; raises GroupLost when the leader or a peer is gone."""
    num_steps = 0
    while True:
        msg = _broadcast(None, group)
        if msg.kind is MsgKind.STOP or (leave is not None and leave()):
            return num_steps
        if msg.kind is MsgKind.STEP:
            assert msg.plan is not None
            runner.execute(msg.plan)
            if hook.error is not None:
                raise GroupLost(f"TP group lost: {hook.error}") from hook.error
            num_steps += 1
