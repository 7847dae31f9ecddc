"""Finishes: one reader of the finished stream wakes every waiter of the ids it sees."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from common.keys import Keys
from gateway.waiters import Finishes


async def _scenario(url: str) -> None:
    client = Redis.from_url(url, decode_responses=True)
    stream = Keys(prefix="waiters-test").finished()
    finishes = Finishes(client, stream, block_ms=100, recheck_s=60.0)
    reader = asyncio.create_task(finishes.run_forever())
    status = {"a": False}

    async def is_finished() -> bool:
        return status["a"]

    try:
        # Nothing ends: the wait gives up at its timeout.
        assert not await finishes.wait("a", is_finished, timeout_s=0.3)
        # Two waiters on one id, one on another: an entry for "a" wakes both of a's only.
        waits = [asyncio.create_task(finishes.wait(i, is_finished, 30.0)) for i in "aab"]
        await asyncio.sleep(0.3)
        await client.xadd(stream, {"id": "a", "status": "done"})
        done, pending = await asyncio.wait(waits, timeout=5.0)
        assert {waits[0], waits[1]} == done and pending == {waits[2]}
        assert all(t.result() for t in done)
        waits[2].cancel()
        await asyncio.gather(waits[2], return_exceptions=True)
        assert finishes.num_waiting == 0  # nothing left behind
        # An end already recorded before the wait began: the status check answers at once.
        status["a"] = True
        assert await finishes.wait("a", is_finished, timeout_s=5.0)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await client.aclose()


def test_finishes_wakes_the_waiters_of_an_ended_request(redis_url: str) -> None:
    asyncio.run(_scenario(redis_url))
