"""Process-group setup and teardown for one tensor-parallel group.

A group of degree d is d worker processes (slots) on one node. Rank 0 hosts a TCPStore on a free
port and publishes its address (through Redis, see the plan); every rank connects to it and joins
the default process group. Both steps have timeouts, and so does every collective afterwards:
a dead or stuck peer makes a call fail instead of hanging (gloo notices a closed socket at once;
otherwise the collective timeout fires; NCCL's watchdog aborts the process on timeout).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


class GroupJoinError(RuntimeError):
    """Rendezvous failed: a peer never arrived within the join timeout, or the store is gone."""


def default_backend(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


@dataclass(slots=True, frozen=True)
class GroupSpec:
    group_id: str  # names the group; prefixes its store keys so groups never read each other's
    rank: int
    tp_size: int
    store_host: str
    store_port: int
    device: str = "cpu"  # "cpu" or "cuda:N"; picks the backend
    timeout_s: float = 30.0  # per collective
    join_timeout_s: float = 60.0  # rendezvous: every rank must connect within this
    backend_name: str = ""  # "" → nccl on cuda, gloo on cpu; gloo on cuda shares one GPU (tests)

    @property
    def backend(self) -> str:
        return self.backend_name or default_backend(self.device)


def host_store(host: str, tp_size: int, join_timeout_s: float, port: int = 0) -> dist.TCPStore:
    """The leader's rendezvous store. Port 0 takes a free port: read it back from `.port`."""
    return dist.TCPStore(
        host, port, tp_size, is_master=True, wait_for_workers=False,
        timeout=timedelta(seconds=join_timeout_s),
    )  # fmt: skip


class TPGroup:
    """Membership of one process in one TP group: join on construction, `close()` to leave.
    A process is in at most one group at a time: joining initialises the default process group
    (under the join timeout), and `group` is a process group over the same ranks with the
    collective timeout, which the model's all-reduces and the plan broadcasts use."""

    def __init__(self, spec: GroupSpec, store: dist.Store | None = None) -> None:
        self.spec = spec
        if dist.is_initialized():
            raise GroupJoinError("this process is already in a process group; close() it first")
        if spec.device.startswith("cuda"):
            torch.cuda.set_device(torch.device(spec.device))
        try:
            store = store or dist.TCPStore(
                spec.store_host, spec.store_port, spec.tp_size, is_master=False,
                timeout=timedelta(seconds=spec.join_timeout_s),
            )  # fmt: skip
            self.group = self._init(spec, dist.PrefixStore(f"tp/{spec.group_id}", store))
        except (RuntimeError, dist.DistError) as e:
            self.close()  # half-joined: leave, so the process can try again
            raise GroupJoinError(
                f"joining group {spec.group_id} as rank {spec.rank}/{spec.tp_size} at "
                f"{spec.store_host}:{spec.store_port} failed: {e}"
            ) from e
        log.info("joined TP group %s as rank %d/%d", spec.group_id, spec.rank, spec.tp_size)

    @staticmethod
    def _init(spec: GroupSpec, store: dist.Store) -> dist.ProcessGroup:
        # Joining waits for every rank up to join_timeout_s (gloo connects its mesh inside
        # init_process_group, under the group's timeout); the group the model then uses gets
        # the collective timeout, so a step never waits on a dead peer longer than timeout_s.
        dist.init_process_group(
            spec.backend, store=store, rank=spec.rank, world_size=spec.tp_size,
            timeout=timedelta(seconds=spec.join_timeout_s),
        )  # fmt: skip
        dist.barrier()  # rendezvous may be lazy (NCCL): make joining fail here, now
        group = dist.new_group(
            list(range(spec.tp_size)), timeout=timedelta(seconds=spec.timeout_s),
            backend=spec.backend,
        )  # fmt: skip
        assert group is not None
        return group

    @property
    def is_leader(self) -> bool:
        return self.spec.rank == 0

    def close(self) -> None:
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception as e:  # noqa: BLE001 - a broken group must still be left
                log.warning("destroying group %s: %s", self.spec.group_id, e)
