"""The planner's Celery app: periodic re-planning, drift watch, lease reaping, housekeeping.

    celery -A planner.tasks worker --beat --concurrency 1

Broker and result backend are the data plane's Redis in a database of their own
(`planner.celery_db`, default 1), so Celery's keys never mix with `dila:*`. Only JSON crosses
the broker: a pickled message is refused by the worker (`accept_content=["json"]`). Every task
is idempotent (planner/replan.py), so late acknowledgement is safe: a task whose worker dies
runs again. Beat messages expire after one period, so a busy worker skips stale ticks instead
of piling them up. Celery carries only control work; requests never go through it.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from celery import Celery

from common.bus import connect
from common.config import Settings
from common.keys import Keys


def broker_url(redis_url: str, db: int) -> str:
    """The same server as `redis_url`, database `db`."""
    parts = urlsplit(redis_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


class PlannerRuntime:
    """What the tasks share inside one worker process: settings, keys, one Redis client."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.redis.prefix)

    @cached_property
    def client(self) -> redis.Redis:
        return connect(self.settings.redis, socket_timeout_s=5.0)


def make_app(settings: Settings) -> Celery:
    url = broker_url(settings.redis.url, settings.planner.celery_db)
    app = Celery("dilaserve-planner", broker=url, backend=url, set_as_current=False)
    app.conf.update(_conf(settings))
    _register(app, PlannerRuntime(settings))
    return app


def _conf(s: Settings) -> dict[str, Any]:
    p = s.planner

    def every(period_s: float, task: str) -> dict[str, Any]:
        return {"task": task, "schedule": period_s, "options": {"expires": period_s}}

    return {
        "task_serializer": "json", "result_serializer": "json", "accept_content": ["json"],
        "result_accept_content": ["json"], "task_acks_late": True,
        "task_reject_on_worker_lost": True, "worker_prefetch_multiplier": 1,
        "result_expires": 3600, "broker_connection_retry_on_startup": True,
        "task_default_queue": "dila-planner", "enable_utc": True,
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "replan": every(p.replan_period_s, "planner.replan"),
            "watch": every(p.watch_period_s, "planner.watch"),
            "reap": every(p.reap_period_s, "planner.reap_leases"),
            "housekeeping": every(p.housekeeping_period_s, "planner.housekeeping"),
        },
    }  # fmt: skip


def _register(app: Celery, rt: PlannerRuntime) -> None:
    from planner import replan as jobs

    @app.task(name="planner.replan", shared=False, soft_time_limit=60)  # type: ignore[untyped-decorator]
    def replan(force: bool = False) -> dict[str, Any]:
        return jobs.replan_once(rt.client, rt.keys, rt.settings, force=force)

    @app.task(name="planner.watch", shared=False)  # type: ignore[untyped-decorator]
    def watch() -> list[str]:
        moved = jobs.watch_once(rt.client, rt.keys, rt.settings)
        if moved:  # load shifted since the last plan: re-plan now, not at the next tick
            replan.apply_async(expires=rt.settings.planner.replan_period_s)
        return moved

    @app.task(name="planner.reap_leases", shared=False)  # type: ignore[untyped-decorator]
    def reap_leases() -> list[int]:
        return list(jobs.reap_once(rt.client, rt.settings))

    @app.task(name="planner.housekeeping", shared=False)  # type: ignore[untyped-decorator]
    def housekeeping() -> dict[str, int]:
        return jobs.housekeeping_once(rt.client, rt.keys)

    @app.task(name="planner.ping", shared=False)  # type: ignore[untyped-decorator]
    def ping(token: str) -> str:
        """Liveness probe: records `token` where an operator (or a test) can see it."""
        rt.client.set(rt.keys.stats("planner:ping"), token, ex=3600)
        return token


app = make_app(Settings())  # type: ignore[call-arg]  # the entry point: `celery -A planner.tasks`
