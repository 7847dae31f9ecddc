"""What the loop hands the publish thread per request per step, and how it becomes Redis calls.

Decoding text happens here, on the publish thread, not in the hot loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from common.bus import now_ms
from common.bus_calls import Call, Calls
from common.schemas import StepReport


class OutKind(StrEnum):
    PROGRESS = "progress"
    DONE = "done"  # progress of the last step, then completion
    FAILED = "failed"
    EXPIRED = "expired"  # could no longer make its deadline; its class drops such requests
    HANDBACK = "handback"


@dataclass(slots=True)
class Out:
    kind: OutKind
    req_id: str
    attempt: int
    pool: str
    answer: list[int]  # a copy of the answer part of the canvas after this step
    block_length: int
    steps: int = 0
    tokens_committed: int = 0
    tokens_total: int = 0
    block: int = 0
    block_done: bool = False
    tau: float = 0.0
    canvas: list[int] | None = None  # whole canvas: checkpoint (block end) or hand-back
    error: str = ""
    stop: list[str] = field(default_factory=list)
    late: bool = False  # HANDBACK of a hopeless request: requeue in the best-effort lane


def _report(o: Out, codec: Any) -> StepReport:
    rep = StepReport(
        o.req_id, o.attempt, o.steps, o.tokens_committed, o.tokens_total, o.block, o.block_done,
        o.tau, codec.partial(o.answer), canvas=o.canvas if o.block_done else None,
    )  # fmt: skip
    if o.block_done or o.kind is OutKind.DONE:
        finished_blocks = o.answer[: o.block * o.block_length] if o.kind is OutKind.PROGRESS else (
            o.answer
        )
        rep.done_text = codec.final(finished_blocks, o.stop)[0]
    return rep


def build_calls(
    calls: Calls, worker_id: str, batch: list[Out], codec: Any
) -> tuple[list[StepReport], list[Call], list[str]]:
    """→ (progress reports, completion/hand-back calls, ids that leave this worker)."""
    reports: list[StepReport] = []
    extra: list[Call] = []
    leaving: list[str] = []
    at = now_ms()
    for o in batch:
        if o.kind in (OutKind.PROGRESS, OutKind.DONE):
            reports.append(_report(o, codec))
        if o.kind is OutKind.DONE:
            text, reason = codec.final(o.answer, o.stop)
            fields = {"text": text, "finish_reason": reason, "steps": str(o.steps)}
            extra.append(calls.complete(worker_id, o.req_id, o.attempt, "done", at, fields))
        elif o.kind in (OutKind.FAILED, OutKind.EXPIRED):
            fields = {"error": o.error} if o.error else {"steps": str(o.steps)}
            extra.append(calls.complete(worker_id, o.req_id, o.attempt, o.kind.value, at, fields))
        elif o.kind is OutKind.HANDBACK:
            reason = "late" if o.late else "drain"
            extra.append(
                calls.handback(
                    worker_id, o.req_id, o.attempt, o.pool, o.canvas, o.block, reason, late=o.late
                )
            )
        if o.kind is not OutKind.PROGRESS:
            leaving.append(o.req_id)
    return reports, extra, leaving
