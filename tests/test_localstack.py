"""Where `LocalStack` puts its processes: the gateway at the asked niceness, worker i on core i."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from dilaserve.localstack import LocalStack


def _spawn(place) -> subprocess.Popen[bytes]:  # noqa: ANN001 - a preexec callable or None
    return subprocess.Popen(["sleep", "5"], preexec_fn=place)


def test_gateway_niceness_and_pinned_workers(tmp_path: Path) -> None:
    cores = sorted(os.sched_getaffinity(0))
    stack = LocalStack(tmp_path, tmp_path, num_workers=1, gateway_niceness=7, pin_workers=True)
    gateway, worker = _spawn(stack._placement(-1)), _spawn(stack._placement(0))
    try:
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, gateway.pid) == min(19, own + 7)
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) == own
        assert os.sched_getaffinity(worker.pid) == {cores[0]}
        assert os.sched_getaffinity(gateway.pid) == set(cores)
    finally:
        for p in (gateway, worker):
            p.kill()
            p.wait()


def test_no_pinning_by_default_nor_with_more_workers_than_cores(tmp_path: Path) -> None:
    assert LocalStack(tmp_path, tmp_path, num_workers=1)._placement(0) is None
    many = len(os.sched_getaffinity(0)) + 1
    stack = LocalStack(tmp_path, tmp_path, num_workers=many, pin_workers=True)
    assert stack._placement(0) is None
