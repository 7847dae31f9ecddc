"""Per-request state owned by the scheduling core (pure: no torch, no Redis, no asyncio)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from workers.sched.plan import CacheMode, DecodeRule, ThresholdRule


class SeqStatus(IntEnum):
    # Ordered so that "finished" is one comparison (vLLM's RequestStatus idea).
    WAITING = 0
    RUNNING = 1
    DONE = 2
    CANCELLED = 3
    HANDED_BACK = 4
    FAILED = 5
    EXPIRED = 6  # could no longer make its deadline and its class drops such requests

    @property
    def is_finished(self) -> bool:
        return self >= SeqStatus.DONE


@dataclass(slots=True)
class SeqRequest:
    """What a driver (worker loop, engine.generate, simulator) hands to the scheduler."""

    req_id: str
    canvas: list[int]  # [prompt ; answer]; a checkpoint may hold commits already
    prompt_len: int
    block_length: int
    deadline_ms: float  # absolute, on the driver's clock
    rule: DecodeRule = field(default_factory=ThresholdRule)
    cache_mode: CacheMode = CacheMode.DUAL
    temperature: float = 0.0
    seed: int = 0
    arrival_ms: float = 0.0
    tau_floor: float = 0.0  # lowest τ the deadline-aware policy may use (0 → the ladder's bottom)
    late_action: str = "serve"  # "serve" best effort, or "drop" (→ expired) once hopeless
    slo_class: str = ""

    @property
    def gen_length(self) -> int:
        return len(self.canvas) - self.prompt_len

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length


@dataclass(slots=True)
class SeqState:
    req: SeqRequest
    canvas: list[int]
    block: int  # index of the block being decoded
    status: SeqStatus = SeqStatus.WAITING
    step_in_block: int = 0
    steps: int = 0
    num_masked: int = 0  # answer positions still masked
    in_runner: bool = False  # the runner holds a slot for it
    needs_refresh: bool = True  # next step is a refresh: a block start, or just (re)joined
    handback_requested: bool = False
    cancel_requested: bool = False
    failures: int = 0
    last_tau: float | None = None
    seq_no: int = 0  # arrival order within this scheduler: the deterministic tie-breaker
    mean_confidence: float = 0.0  # EWMA of each step's lowest committed confidence
    late: bool = False  # predicted to miss its deadline even at its floor

    @property
    def req_id(self) -> str:
        return self.req.req_id


@dataclass(slots=True)
class SeqUpdate:
    """What one step changed for one request: the driver publishes it."""

    req_id: str
    positions: list[int]
    tokens: list[int]
    block: int  # block index after this step
    block_done: bool
    finished: bool
    steps: int
    tokens_committed: int
    tokens_total: int
    tau: float | None
    failed: str | None = None
    handed_back: bool = False
    expired: bool = False
    late: bool = False  # with handed_back: requeue behind on-time work (the best-effort lane)
