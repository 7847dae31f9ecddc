"""uvicorn with a graceful SIGTERM for the gateway.

SIGTERM (or Ctrl-C): /readyz turns 503 at once while /healthz stays 200 ("draining"); after
`drain_grace_s` uvicorn stops accepting and waits up to `drain_timeout_s` for open requests;
the process exits 0.
"""

from __future__ import annotations

import logging
import threading
from types import FrameType

import uvicorn
from fastapi import FastAPI

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
