"""`dilaserve status`: the cluster as Redis sees it — pools (TP degree, τ, queue depth), workers
(heartbeat age, utilisation), the plan and when it changed, SLO attainment per class over the
last minute and five minutes, and the requests in flight. Live by default; `--once [--json]`
prints one snapshot for scripts (exit 2 when Redis is unreachable)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit")
    parser.add_argument("--json", action="store_true", help="JSON instead of tables")
    parser.add_argument("--interval-s", type=float, default=1.0, help="live refresh period")
    parser.add_argument("--no-requests", action="store_true", help="leave out requests in flight")
    parser.add_argument("--redis-url", help="default: REDIS_URL / DILA_REDIS__URL")
    parser.add_argument("--prefix", help="key prefix (default: DILA_REDIS__PREFIX, dila)")


def snapshot(args: argparse.Namespace) -> dict[str, Any]:
    from common.bus import connect
    from common.cluster_view import build_view, read_sync
    from common.config import Settings
    from common.keys import Keys

    settings = Settings()
    rcfg = settings.redis.model_copy(
        update={k: v for k, v in (("url", args.redis_url), ("prefix", args.prefix)) if v}
    )
    client = connect(rcfg, socket_timeout_s=2.0)
    try:
        raw = read_sync(client, Keys(rcfg.prefix), time.time() * 1000.0, not args.no_requests)
    finally:
        client.close()
    return build_view(raw, [c.name for c in settings.slo_classes])


def _live(args: argparse.Namespace) -> int:
    import redis
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from dilaserve.status_render import render

    with Live(Text("reading Redis…"), console=Console(), screen=False, auto_refresh=False) as live:
        try:
            while True:
                try:
                    live.update(render(snapshot(args), not args.no_requests), refresh=True)
                except (redis.RedisError, OSError) as e:
                    live.update(Text(f"Redis unreachable: {e}", style="red"), refresh=True)
                time.sleep(args.interval_s)
        except KeyboardInterrupt:
            return 0


def run(args: argparse.Namespace) -> int:
    import redis

    if not args.once:
        return _live(args)
    try:
        view = snapshot(args)
    except (redis.RedisError, OSError) as e:
        print(f"Redis unreachable: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(view, indent=2, sort_keys=True))
    else:
        from rich.console import Console

        from dilaserve.status_render import render

        Console().print(render(view, not args.no_requests))
    return 0
