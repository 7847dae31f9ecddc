"""Validation beyond types, and the deadline: turn a client request into a `RequestRecord`.

Every rejection names the field and the limit. Queue bounds are enforced atomically at submit
(common/lua/submit.lua); deadline feasibility (issue 5) plugs in at `admit`.
"""

from __future__ import annotations

import time

from common.config import Settings
from common.errors import BadRequest
from common.ids import is_valid_req_id, new_req_id
from common.log import bind_request
from common.schemas import RequestRecord, SloFields
from gateway.model_info import ModelInfo


def now_ms() -> float:
    return time.time() * 1000.0


class Admission:
    def __init__(self, settings: Settings, model: ModelInfo) -> None:
        self.gw = settings.gateway
        self.pool = settings.worker.pool
        self.model = model
        self.slo_ms = {c.name: c.slo_ms for c in settings.slo_classes}
        self.fcfs = settings.scheduler.policy == "fcfs-fixed"
        if self.gw.default_slo_class not in self.slo_ms:
            raise ValueError(f"default_slo_class {self.gw.default_slo_class!r} is not configured")

    def request_id(self, header: str | None, body: str | None) -> str:
        raw = header or body
        if raw is None:
            return new_req_id()
        if not is_valid_req_id(raw):
            raise BadRequest(
                "request id must be 1-128 characters of [A-Za-z0-9._:-]", param="request_id"
            )
        return raw

    def build(self, req_id: str, prompt: str, f: SloFields, kind: str) -> RequestRecord:
        bind_request(req_id=req_id)  # log lines of this HTTP request carry the id from here on
        if not prompt:
            raise BadRequest("prompt must not be empty", param="prompt")
        max_tokens = self.gw.default_block_length if f.max_tokens is None else f.max_tokens
        if max_tokens <= 0 or max_tokens > self.gw.max_tokens_limit:
            raise BadRequest(
                f"max_tokens={max_tokens} must be in [1, {self.gw.max_tokens_limit}]",
                param="max_tokens",
            )
        block_length = self._block_length(max_tokens, f.block_length)
        ids = self._prompt_ids(prompt, max_tokens)
        slo_class = f.slo_class or self.gw.default_slo_class
        if slo_class not in self.slo_ms:
            raise BadRequest(
                f"unknown slo_class {slo_class!r}; configured: {sorted(self.slo_ms)}",
                param="slo_class",
            )
        arrival = now_ms()
        deadline = self._deadline(arrival, slo_class, f)
        # FCFS baselines claim in arrival order; everything else claims earliest deadline first.
        score = arrival if self.fcfs else deadline
        return RequestRecord(
            id=req_id, pool=self.pool, slo_class=slo_class, prompt=prompt, prompt_ids=ids,
            max_tokens=max_tokens, block_length=block_length, arrival_ms=arrival,
            deadline_ms=deadline, min_threshold=f.min_threshold or 0.0, priority=f.priority,
            temperature=f.temperature, seed=f.seed, stop=f.stop_list(), kind=kind,
            queue_score=score,
        )  # fmt: skip

    def _block_length(self, max_tokens: int, asked: int | None) -> int:
        if asked is None:
            default = self.gw.default_block_length
            if max_tokens <= default:
                return max_tokens
            asked = default
        if max_tokens % asked:
            raise BadRequest(
                f"max_tokens={max_tokens} is not a multiple of block_length={asked}",
                param="max_tokens",
            )
        return asked

    def _prompt_ids(self, prompt: str, max_tokens: int) -> list[int]:
        ids = self.model.encode(prompt)
        if not ids:
            raise BadRequest("prompt encodes to no tokens", param="prompt")
        if not self.model.represents(prompt, ids):
            raise BadRequest(
                "prompt contains characters the model's tokenizer cannot represent",
                param="prompt",
            )
        limit = self.model.max_seq_len
        if len(ids) + max_tokens > limit:
            raise BadRequest(
                f"prompt ({len(ids)} tokens) + max_tokens ({max_tokens}) exceeds the model's "
                f"context of {limit} tokens",
                param="prompt",
            )
        return ids

    def _deadline(self, arrival: float, slo_class: str, f: SloFields) -> float:
        if f.deadline_ms is not None:
            return float(f.deadline_ms)
        if f.slo_ms is not None:
            return arrival + f.slo_ms
        return arrival + self.slo_ms[slo_class]
