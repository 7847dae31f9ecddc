"""`dilaserve up`: the whole stack on this machine — a private Redis (AOF), the gateway and N CPU
workers with the demo model. Ctrl-C (or SIGTERM) drains and stops everything."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

DATA_DIR = Path(".dilaserve")
EXAMPLE_PROMPT = "Acg|Bggn|Cgjn|Dhil|Emo|Fej|Gdk|="  # a demo-task problem (docs/demo_model.md)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2, help="CPU worker processes (default 2)")
    parser.add_argument(
        "--tp", type=int, default=0, help="workers as slots in TP groups of this degree (gloo)"
    )
    parser.add_argument("--host", help="gateway host (default: settings, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="gateway port (default: settings, 8000)")
    parser.add_argument("--model-dir", help="checkpoint directory (default: the demo model)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR,
                        help="Redis data (AOF) and logs (default ./.dilaserve)")  # fmt: skip


def _banner(url: str, n: int, redis_url: str, logs: Path) -> str:
    return f"""
DiLaServe is up: gateway {url}, {n} worker(s), Redis {redis_url}
  submit:  curl -s {url}/v1/requests -H 'content-type: application/json' \\
             -d '{{"prompt": "{EXAMPLE_PROMPT}", "max_tokens": 64, "block_length": 16}}'
  poll:    curl -s {url}/v1/requests/<id>
  openai:  OpenAI(base_url="{url}/v1", api_key="none")
  logs:    {logs}/
Ctrl-C stops everything.
"""


def run(args: argparse.Namespace) -> int:
    from common.config import Settings
    from dilaserve.localstack import LocalStack

    settings = Settings()
    model_dir = Path(args.model_dir or settings.engine.model_dir)
    if not (model_dir / "config.json").is_file():
        print(f"no model at {model_dir}; pass --model-dir", file=sys.stderr)
        return 2
    stack = LocalStack(
        model_dir, args.data_dir, args.workers, args.host or settings.gateway.host,
        args.port or settings.gateway.port, redis_url=settings.redis_url, tp=args.tp,
    )  # fmt: skip
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    # Ctrl-C is KeyboardInterrupt even when started as a background job of a script, whose
    # shell hands it SIGINT ignored (Python then installs no handler of its own).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        stack.start()
        print(_banner(stack.url, args.workers, str(stack.redis_url), stack.logs), flush=True)
        while not stop["now"] and stack.alive():
            time.sleep(0.2)
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping…", file=sys.stderr)
        stack.stop(max(settings.gateway.drain_timeout_s, settings.worker.drain_timeout_s) + 5)
    return 0
