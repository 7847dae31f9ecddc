"""Child processes that do not outlive the process that started them.

`dilaserve up` and the test fixtures start Redis, the gateway and the workers as children. If
the parent dies without stopping them (SIGKILL, an OOM kill, a crashed test runner), orphans
would keep the ports, the CPU and the data directory's lock. On Linux the kernel can signal a
child when its parent dies (PR_SET_PDEATHSIG); SIGTERM lets a worker hand its requests back and
the gateway drain, as on any other stop. The signal follows the *thread* that started the
child, so start children from a thread that lives as long as they should (all callers use the
main thread).
"""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Looked up here, in the parent: the child, forked from a process that may run threads, should
# not load anything between fork and exec.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """Run in the child before exec (subprocess's `preexec_fn`); a no-op off Linux."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def preexec(then: Callable[[], None] | None = None) -> Callable[[], None]:
    """`die_with_parent`, then `then` (e.g. niceness or CPU affinity for this child)."""

    def run() -> None:
        die_with_parent()
        if then is not None:
            then()

    return run
