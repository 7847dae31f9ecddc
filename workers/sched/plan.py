"""The scheduler ↔ runner contract: a StepPlan goes in, a StepResult comes out.

Plain slots dataclasses and lists, no tensors, so the scheduling core stays free of torch and the
simulator can produce the same StepResult from a cost model. Positions are absolute canvas
indices (prompt first, then the answer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class CacheMode(StrEnum):
    NONE = "none"  # every step is a full forward over the canvas (LLaDA)
    PREFIX = "prefix"  # reuse steps feed [block start, canvas end) and attend to the cached prefix
    DUAL = "dual"  # reuse steps feed only the block and attend to every cached K/V


class Phase(StrEnum):
    FULL = "full"  # full forward, no cache written (cache mode none)
    REFRESH = (
        "refresh"  # full forward that (re)writes the request's K/V cache: first step of a block
    )
    REUSE = "reuse"  # cached forward: only the block (dual) or block + suffix (prefix)


# ---- decoding rules: typed parameters; the torch implementations live in workers/denoise/ ----


@dataclass(slots=True, frozen=True)
class ThresholdRule:
    """Fast-dLLM: commit every masked block position with confidence ≥ tau, at least the top one.

    tau = 1.0 is defined as top-1 only (in fp32 a softmax can reach exactly 1.0)."""

    tau: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"threshold tau={self.tau} is outside (0, 1]")


@dataclass(slots=True, frozen=True)
class FixedCountRule:
    """LLaDA low-confidence remasking: the block spread evenly over steps_per_block steps."""

    steps_per_block: int

    def __post_init__(self) -> None:
        if self.steps_per_block < 1:
            raise ValueError(f"steps_per_block={self.steps_per_block} must be ≥ 1")


@dataclass(slots=True, frozen=True)
class FactorRule:
    """Fast-dLLM v3 factor rule: commit the top n with (n + 1)(1 − c_n) < factor, at least one."""

    factor: float = 1.0

    def __post_init__(self) -> None:
        if self.factor <= 0.0:
            raise ValueError(f"factor={self.factor} must be > 0")


DecodeRule = ThresholdRule | FixedCountRule | FactorRule


# ---- plan ----


@dataclass(slots=True)
class NewSeq:
    """A request joining the runner. `canvas` may hold commits already (resume from checkpoint)."""

    req_id: str
    canvas: list[int]  # [prompt ; answer], masked answer positions hold the model's mask id
    prompt_len: int
    block_length: int
    cache_mode: CacheMode = CacheMode.DUAL
    temperature: float = 0.0  # 0 → greedy argmax; > 0 → Gumbel sampling at this temperature
    seed: int = 0  # sampling seed (only used when temperature > 0)


@dataclass(slots=True)
class SeqStep:
    """One request's part of a step."""

    req_id: str
    block: int  # index of the answer block being decoded (0-based)
    phase: Phase
    rule: DecodeRule
    step_in_block: int = 0  # steps already taken in this block (the fixed-count schedule needs it)


@dataclass(slots=True)
class StepPlan:
    new: list[NewSeq] = field(default_factory=list)  # join before this step runs
    steps: list[SeqStep] = field(default_factory=list)  # requests advanced by this step
    release: list[str] = field(default_factory=list)  # leave before this step (cancel, hand-back)


# ---- result ----


@dataclass(slots=True)
class SeqOutput:
    req_id: str
    positions: list[int]  # canvas positions the rule committed this step
    tokens: list[int]  # token ids committed there, same length as positions
    eos_fill_from: int | None  # an EOS was committed: positions ≥ this were filled with EOS
    block_done: bool  # the block has no masked position left
    finished: bool  # the answer has no masked position left (the runner released the request)
    min_confidence: float  # lowest confidence among this step's rule commits


@dataclass(slots=True)
class StepResult:
    outputs: list[SeqOutput] = field(default_factory=list)
    full_s: float = 0.0  # wall time of the full-forward sub-batch (FULL + REFRESH rows)
    reuse_s: float = 0.0  # wall time of the cached sub-batch
    num_full_tokens: int = 0  # query tokens fed in the full sub-batch (Σ canvas lengths)
    num_reuse_tokens: int = 0  # query tokens fed in the reuse sub-batch
    num_full_rows: int = 0
    num_reuse_rows: int = 0
    full_attn_area: int = 0  # Σ query tokens × keys in the full sub-batch (Σ L²)
    reuse_attn_area: int = 0  # Σ query tokens × keys in the reuse sub-batch
    failed: dict[str, str] = field(default_factory=dict)  # req_id → error, for requests that raised

    @property
    def step_s(self) -> float:
        return self.full_s + self.reuse_s
