"""Gateway entry: settings → app → uvicorn (`dilaserve gateway` or `python -m gateway`)."""

from __future__ import annotations

import argparse
import logging
import signal

log = logging.getLogger("gateway")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--log-json", action="store_true")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from common.config import Settings
    from common.log import setup_logging
    from gateway.app import create_app
    from gateway.server import DrainingServer

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
