"""The worker's Redis side, on its own threads, so the model never waits on the network.

- control thread: listens on the `ctl` channel (cancellations, enqueue wake-ups), claims work when
  the batch has room (woken by pub/sub, else a slow poll), heartbeats (renewing leases) and reaps
  expired leases. Claimed items and cancellations go to `inbox`.
- publish thread: takes each step's `Out` records from `outbox` and writes them in one pipelined
  round trip (steps that pile up while Redis is slow are merged into one round trip).
The loop thread only touches the two queues and `release()`.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from common.bus import Bus, now_ms
from common.config import RedisCfg, WorkerCfg
from common.schemas import WorkItem
from workers.outbox import Out, build_calls

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CancelMsg:
    req_id: str
    reason: str  # "cancelled" (pub/sub) | "lost" (lease no longer ours) | the status seen


@dataclass(slots=True)
class Held:
    attempt: int
    pool: str


@dataclass(slots=True)
class IOStats:
    num_round_trips: int = 0
    num_steps_published: int = 0
    num_claims: int = 0
    num_stale: int = 0
    num_redis_errors: int = 0
    queue_depth: int = 0  # the pool queue's length at the last claim tick
    heartbeat: dict[str, str] = field(default_factory=dict)  # extra fields from the loop


class WorkerIO:
    def __init__(
        self,
        rcfg: RedisCfg,
        wcfg: WorkerCfg,
        worker_id: str,
        max_batch_size: int,
        codec: Any,
        tp_degree: int = 1,  # of the TP group this worker leads (heartbeat only)
    ) -> None:
        self.wcfg, self.worker_id, self.max_batch_size = wcfg, worker_id, max_batch_size
        self.tp_degree = tp_degree
        self.bus = Bus(rcfg)
        self.codec = codec
        self.inbox: queue.Queue[WorkItem | CancelMsg] = queue.Queue()
        self.outbox: queue.Queue[list[Out] | None] = queue.Queue()
        self.held: dict[str, Held] = {}
        self.lock = threading.Lock()
        self.claiming = threading.Event()
        self.claiming.set()
        self.stats = IOStats()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads = [
            threading.Thread(target=self._control_loop, name="io-control", daemon=True),
            threading.Thread(target=self._publish_loop, name="io-publish", daemon=True),
        ]

    # ---- used by the loop thread ----

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def publish(self, outs: list[Out]) -> None:
        if outs:
            self.outbox.put(outs)

    def release(self, req_id: str) -> None:
        """The loop dropped a request without a publish (cancelled, lost): stop renewing it."""
        with self.lock:
            self.held.pop(req_id, None)
        self._wake.set()

    def stop_claiming(self) -> None:
        self.claiming.clear()

    def num_held(self) -> int:
        with self.lock:
            return len(self.held)

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush the outbox, then stop both threads."""
        self.outbox.put(None)
        self._threads[1].join(timeout_s)
        self._stop.set()
        self._threads[0].join(timeout_s)

    # ---- control thread ----

    def _control_loop(self) -> None:
        next_hb = next_reap = 0.0
        pubsub = None
        while not self._stop.is_set():
            try:
                if pubsub is None:
                    pubsub = self.bus.client.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(self.bus.keys.ctl())
                    self._wake.set()
                msg = pubsub.get_message(timeout=self.wcfg.claim_poll_s)
                for _ in range(1000):  # drain a burst of messages before one claim
                    if msg is None:
                        break
                    self._handle(msg)
                    msg = pubsub.get_message(timeout=0)
                self._claim()
                now = time.monotonic()
                if now >= next_hb:
                    self._heartbeat()
                    next_hb = now + self.wcfg.heartbeat_s
                if now >= next_reap:
                    self.bus.reap(self.wcfg.max_retries)
                    next_reap = now + self.wcfg.reap_interval_s
            except redis.RedisError as e:
                self.stats.num_redis_errors += 1
                log.warning("redis error in control thread: %s", e)
                pubsub = self._close_pubsub(pubsub)
                self._stop.wait(0.2)
        self._close_pubsub(pubsub)

    @staticmethod
    def _close_pubsub(pubsub: Any) -> None:
        if pubsub is not None:
            try:
                pubsub.close()
            except redis.RedisError:
                pass
        return None

    def _handle(self, msg: dict[str, Any]) -> None:
        data = json.loads(msg["data"])
        if data.get("type") == "enqueued":
            self._wake.set()
        elif data.get("type") == "cancel":
            with self.lock:
                mine = data["id"] in self.held
            if mine:
                self.inbox.put(CancelMsg(data["id"], "cancelled"))

    def _claim(self) -> None:
        if not self.claiming.is_set():
            return
        # claim on a wake-up, else on every poll tick (get_message already waited)
        self._wake.clear()
        with self.lock:
            free = self.max_batch_size - len(self.held)
        if free <= 0:
            self.stats.queue_depth = self.bus.queue_len(self.wcfg.pool)
            return
        items = self.bus.claim(
            self.wcfg.pool, self.worker_id, free, lease_ms=self.wcfg.lease_s * 1000.0
        )
        self.stats.queue_depth = self.bus.queue_len(self.wcfg.pool)  # what is left after ours
        if not items:
            return
        with self.lock:
            for it in items:
                self.held[it.req_id] = Held(it.attempt, it.pool)
        self.stats.num_claims += len(items)
        for it in items:
            self.inbox.put(it)

    def _heartbeat(self) -> None:
        with self.lock:
            held = {rid: h.attempt for rid, h in self.held.items()}
        fields = {
            "pool": self.wcfg.pool,
            "tp_rank": "0",
            "tp_degree": str(self.tp_degree),
            "held": str(len(held)),
            "ts_ms": f"{now_ms():.0f}",
            "claiming": "1" if self.claiming.is_set() else "0",
            "tau": str(self.wcfg.tau),  # default τ; the loop's stats may override with the live one
            **self.stats.heartbeat,
        }
        lost = self.bus.heartbeat(self.worker_id, self.wcfg.lease_s, fields, held)
        for req_id in lost:
            self.inbox.put(CancelMsg(req_id, "lost"))

    # ---- publish thread ----

    def _publish_loop(self) -> None:
        while True:
            first = self.outbox.get()
            batch, closing = ([] if first is None else first), first is None
            while not closing:  # merge whatever else is already waiting
                try:
                    more = self.outbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                else:
                    batch.extend(more)
            if batch:
                self._publish(batch)
            if closing:
                return

    def _publish(self, batch: list[Out]) -> None:
        reports, calls, finished = build_calls(self.bus.calls, self.worker_id, batch, self.codec)
        for attempt in range(50):
            try:
                replies = self.bus.publish_step(self.worker_id, reports, calls)
                break
            except redis.RedisError as e:
                self.stats.num_redis_errors += 1
                log.warning("publish failed (try %d): %s", attempt + 1, e)
                time.sleep(0.2)
        else:
            log.error("dropping %d step records after repeated Redis errors", len(batch))
            return
        self.stats.num_round_trips += 1
        self.stats.num_steps_published += 1
        self._after_publish(replies, finished)

    def _after_publish(self, replies: list[tuple[str, Any]], finished: list[str]) -> None:
        for tag, reply in replies:
            if tag in ("complete", "handback"):
                if reply == 0:
                    self.stats.num_stale += 1
            elif reply != "ok" and not isinstance(reply, Exception):
                self.inbox.put(CancelMsg(tag, str(reply)))
            elif isinstance(reply, Exception):
                log.error("publish of %s failed: %s", tag, reply, extra={"req_id": tag})
        stale = [t for t, r in replies if t in ("complete", "handback") and r == 0]
        if stale:
            log.warning("ignored %d stale completions/hand-backs (lease lost)", len(stale))
        with self.lock:
            for req_id in finished:
                self.held.pop(req_id, None)
        if finished:
            self._wake.set()
