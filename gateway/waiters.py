"""Blocking waits for many requests on one Redis read.

A client that waits for a request's end (a blocking OpenAI call, a long poll) could follow that
request's event stream, but that wakes the gateway once per denoising step per waiter. Instead one
task per gateway reads the finished stream (`keys.finished()`: one entry per request that ends,
written by the script that ends it) and wakes the waiters of the ids it sees: one wake-up per
finished request, however many steps it took. Every replica reads the whole stream with a plain
XREAD (the metrics fold uses a consumer group, which would hand each entry to one replica only).

A waiter also re-reads the request's status every `recheck_s`, so an entry it could not see
(the reader was reconnecting to a restarted Redis) costs at most that much latency, never a hang.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress

import redis
from redis.asyncio import Redis

log = logging.getLogger(__name__)
READ_COUNT = 500
RETRY_S = 0.5


class Finishes:
    def __init__(self, client: Redis, stream: str, block_ms: int, recheck_s: float = 2.0) -> None:
        self.client, self.stream, self.block_ms = client, stream, block_ms
        self.recheck_s = recheck_s
        self._events: dict[str, asyncio.Event] = {}
        self._waiters: dict[str, int] = {}

    async def run_forever(self) -> None:
        last = "$"  # only ends from now on: a waiter checks the status itself when it registers
        while True:
            try:
                got = await self.client.xread({self.stream: last}, READ_COUNT, self.block_ms)
            except (redis.RedisError, OSError):
                await asyncio.sleep(RETRY_S)
                continue
            for entry_id, fields in got[0][1] if got else []:
                last = entry_id
                ev = self._events.get(fields.get("id", ""))
                if ev is not None:
                    ev.set()

    async def wait(
        self, req_id: str, is_finished: Callable[[], Awaitable[bool]], timeout_s: float
    ) -> bool:
        """Until `req_id` ends (→ True) or `timeout_s` passes (→ False)."""
        ev = self._register(req_id)
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + timeout_s
        try:
            while True:
                # Registered before the check: an end between the two still sets `ev`.
                if ev.is_set() or await is_finished():
                    return True
                left_s = give_up_at - loop.time()
                if left_s <= 0:
                    return False
                with suppress(TimeoutError):
                    await asyncio.wait_for(ev.wait(), min(self.recheck_s, left_s))
        finally:
            self._unregister(req_id)

    def _register(self, req_id: str) -> asyncio.Event:
        self._waiters[req_id] = self._waiters.get(req_id, 0) + 1
        return self._events.setdefault(req_id, asyncio.Event())

    def _unregister(self, req_id: str) -> None:
        n = self._waiters.pop(req_id) - 1
        if n:
            self._waiters[req_id] = n
        else:
            del self._events[req_id]

    @property
    def num_waiting(self) -> int:
        return len(self._events)
