"""Wire types: HTTP bodies (pydantic) and the records that cross Redis (JSON strings only).

A request's Redis hash is flat: every field a string; lists are JSON. `RequestRecord` is the one
place that knows the field names, so the gateway, the workers and the Lua scripts agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RequestStatus(StrEnum):
    # ordered by lifecycle; everything from DONE on is final
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def is_finished(self) -> bool:
        return self not in (RequestStatus.QUEUED, RequestStatus.RUNNING)


class EventType(StrEnum):
    QUEUED = "queued"
    CLAIMED = "claimed"
    PROGRESS = "progress"
    REQUEUED = "requeued"  # handed back (drain) or reaped (lease expired); canvas kept
    FINAL = "final"


# ---------------------------------------------------------------- HTTP: native API


class SloFields(BaseModel):
    """Scheduling fields shared by the native API and the OpenAI extras."""

    max_tokens: int | None = Field(None, description="answer (canvas) length in tokens")
    block_length: int | None = Field(None, ge=1)
    slo_class: str | None = None
    deadline_ms: float | None = Field(None, gt=0, description="absolute deadline, epoch ms")
    slo_ms: float | None = Field(None, gt=0, description="relative: deadline = arrival + slo_ms")
    min_threshold: float | None = Field(None, gt=0, le=1, description="quality floor for tau")
    priority: int = 0
    temperature: float = Field(0.0, ge=0, le=10)
    seed: int = Field(0, ge=0)
    stop: str | list[str] | None = None
    request_id: str | None = Field(None, description="client id: makes submit idempotent")

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class GenerateRequest(SloFields):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)


class SubmitResponse(BaseModel):
    id: str
    status: RequestStatus
    deadline_ms: float
    poll_url: str
    events_url: str


class Progress(BaseModel):
    steps: int = 0
    tokens_committed: int = 0
    tokens_total: int = 0
    block: int = 0


class Timings(BaseModel):
    queued_ms: float | None = None
    run_ms: float | None = None
    e2e_ms: float | None = None


class RequestView(BaseModel):
    id: str
    status: RequestStatus
    pool: str
    slo_class: str
    progress: Progress
    partial_text: str
    text: str | None
    error: str | None
    arrival_ms: float
    deadline_ms: float
    timings: Timings
    slo_met: bool | None
    thresholds: list[float]
    worker: str | None
    attempts: int


# ---------------------------------------------------------------- HTTP: OpenAI-compatible


class OpenAIExtras(SloFields):
    # vLLM-style: unknown fields are accepted and ignored, our extras are read
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    stream: bool = False
    n: int = Field(1, ge=1, le=1)
    user: str | None = None


class CompletionRequest(OpenAIExtras):
    prompt: str | list[str]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str


class ChatRequest(OpenAIExtras):
    messages: list[ChatMessage] = Field(min_length=1)


# ---------------------------------------------------------------- Redis: the request record


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass(slots=True)
class RequestRecord:
    """The fields a submit writes; workers add progress/result fields (see `ProgressFields`)."""

    id: str
    pool: str
    slo_class: str
    prompt: str
    prompt_ids: list[int]
    max_tokens: int
    block_length: int
    arrival_ms: float
    deadline_ms: float
    min_threshold: float = 0.0
    priority: int = 0
    temperature: float = 0.0
    seed: int = 0
    stop: list[str] = field(default_factory=list)
    kind: str = "native"  # native | completion | chat: how the client wants the answer shaped
    status: str = RequestStatus.QUEUED
    # Score in the pool queue: the deadline (EDF claims), or the arrival for FCFS baselines.
    queue_score: float = 0.0
    admission_flag: str = ""  # e.g. "deadline_infeasible" for a best-effort class admitted late

    def to_redis(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in self.__slots__:  # type: ignore[attr-defined]
            value = getattr(self, name)
            out[name] = _dumps(value) if isinstance(value, list) else str(value)
        return out


@dataclass(slots=True)
class WorkItem:
    """A claimed request as the worker sees it (built from the hash the claim script returns)."""

    req_id: str
    attempt: int
    pool: str
    prompt_ids: list[int]
    max_tokens: int
    block_length: int
    deadline_ms: float
    arrival_ms: float
    min_threshold: float
    temperature: float
    seed: int
    stop: list[str]
    failures: int
    canvas: list[int] | None  # checkpoint: resume from here (next step is a refresh)
    slo_class: str = ""

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> WorkItem:
        canvas = h.get("canvas")
        return cls(
            req_id=h["id"],
            attempt=int(h.get("attempt", "1")),
            pool=h.get("pool", "default"),
            prompt_ids=json.loads(h["prompt_ids"]),
            max_tokens=int(h["max_tokens"]),
            block_length=int(h["block_length"]),
            deadline_ms=float(h["deadline_ms"]),
            arrival_ms=float(h["arrival_ms"]),
            min_threshold=float(h.get("min_threshold", "0")),
            temperature=float(h.get("temperature", "0")),
            seed=int(h.get("seed", "0")),
            stop=json.loads(h.get("stop", "[]")),
            failures=int(h.get("failures", "0")),
            canvas=json.loads(canvas) if canvas else None,
            slo_class=h.get("slo_class", ""),
        )


@dataclass(slots=True)
class StepReport:
    """One request's outcome of one worker step, as the worker's outbox publishes it."""

    req_id: str
    attempt: int
    steps: int
    tokens_committed: int
    tokens_total: int
    block: int
    block_done: bool
    tau: float
    partial_text: str
    done_text: str | None = None  # at block ends: the text of every finished block (stop applied)
    canvas: list[int] | None = None  # checkpoint, at block boundaries only

    def event(self) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "steps": self.steps,
            "tokens_committed": self.tokens_committed,
            "tokens_total": self.tokens_total,
            "block": self.block,
            "block_done": self.block_done,
            "tau": self.tau,
        }
        if self.done_text is not None:
            ev["done_text"] = self.done_text
        return ev


def encode(value: Any) -> str:
    return _dumps(value)
