"""Gateway entry: settings → app → uvicorn, with a graceful SIGTERM.

SIGTERM (or Ctrl-C): /readyz turns 503 at once while /healthz stays 200 ("draining"); after
`drain_grace_s` uvicorn stops accepting and waits up to `drain_timeout_s` for open requests;
the process exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

import uvicorn
from fastapi import FastAPI

from common.config import Settings
from common.log import setup_logging
from gateway.app import create_app

log = logging.getLogger("gateway")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, grace_s: float) -> None:
        super().__init__(config)
        self.app, self.grace_s = app, grace_s
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining:  # a second signal: stop now
            super().handle_exit(sig, frame)
            return
        self._draining = True
        svc = getattr(self.app.state, "service", None)
        if svc is not None:
            svc.draining = True
        log.info("draining: readiness is 503; stopping in %.1fs", self.grace_s)
        threading.Timer(self.grace_s, lambda: setattr(self, "should_exit", True)).start()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--log-json", action="store_true")


def run(args: argparse.Namespace) -> int:
    setup_logging(json_lines=args.log_json)
    settings = Settings()
    gw = settings.gateway
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host or gw.host,
        port=args.port or gw.port,
        log_level="warning",
        timeout_graceful_shutdown=int(gw.drain_timeout_s) or None,
        lifespan="on",
    )
    server = DrainingServer(config, app, gw.drain_grace_s)
    # uvicorn re-raises a captured signal after serving; a Python handler makes that a no-op,
    # so a drained gateway exits 0 instead of dying by the signal.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    log.info("gateway listening on http://%s:%d", config.host, config.port)
    server.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
