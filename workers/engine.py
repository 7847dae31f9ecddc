"""Engine: model + runner + scheduling core in one process, for offline generation.

Used by eval, benchmarks and tests. The worker loop drives the same Scheduler and ModelRunner,
with Redis around them instead of a Python list.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from workers.model.loader import load_model
from workers.model.transformer import DiffusionLM
from workers.runner import ModelRunner
from workers.sched.plan import CacheMode, DecodeRule, ThresholdRule
from workers.sched.scheduler import Scheduler, SchedulerConfig
from workers.sched.state import SeqRequest

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(slots=True)
class GenOutput:
    answer_ids: list[int]  # the answer part of the final canvas
    steps: int
    tokens_per_step: list[int] = field(default_factory=list)  # rule commits of each step
    failed: str | None = None


@dataclass(slots=True)
class GenStats:
    wall_s: float = 0.0
    full_s: float = 0.0
    reuse_s: float = 0.0
    num_steps: int = 0  # engine steps (each advances a whole batch)
    num_full_steps: int = 0  # steps that ran a full-forward sub-batch
    num_reuse_steps: int = 0  # steps that ran a cached sub-batch


class Engine:
    def __init__(self, model: DiffusionLM, tokenizer: object | None, max_batch_size: int = 32):
        self.model, self.tokenizer, self.cfg = model, tokenizer, model.cfg
        self.max_batch_size = max_batch_size
        self.runner = ModelRunner(model, max_batch_size)
        self.last_stats = GenStats()

    @classmethod
    def from_dir(
        cls,
        model_dir: str | Path,
        max_batch_size: int = 32,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> Engine:
        model = load_model(model_dir, DTYPES[dtype], device)
        return cls(model, load_tokenizer(model_dir), max_batch_size)

    def canvas(self, prompt_ids: list[int], gen_length: int) -> list[int]:
        return list(prompt_ids) + [self.cfg.mask_token_id] * gen_length

    def generate(
        self,
        prompts: list[list[int]],
        gen_length: int,
        block_length: int,
        rule: DecodeRule | None = None,
        cache_mode: CacheMode = CacheMode.DUAL,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> list[GenOutput]:
        rule = rule or ThresholdRule(0.9)
        sched = Scheduler(
            SchedulerConfig(self.cfg.mask_token_id, self.cfg.eos_token_id, self.max_batch_size)
        )
        for i, p in enumerate(prompts):
            req = SeqRequest(
                str(i), self.canvas(p, gen_length), len(p), block_length, deadline_ms=float(i),
                rule=rule, cache_mode=cache_mode, temperature=temperature, seed=seed + i,
            )  # fmt: skip
            sched.add(req)
        return self._drive(sched, len(prompts))

    def _drive(self, sched: Scheduler, n: int) -> list[GenOutput]:
        outs = {str(i): GenOutput([], 0) for i in range(n)}
        stats = GenStats()
        t0 = time.perf_counter()
        while sched.has_work:
            plan = sched.schedule(now_ms=0.0)
            result = self.runner.execute(plan)
            stats.full_s += result.full_s
            stats.reuse_s += result.reuse_s
            stats.num_steps += 1
            stats.num_full_steps += result.full_s > 0
            stats.num_reuse_steps += result.reuse_s > 0
            for o in result.outputs:
                outs[o.req_id].tokens_per_step.append(len(o.positions))
            for u in sched.update(plan, result, now_ms=0.0):
                if u.failed:
                    outs[u.req_id].failed = u.failed
        stats.wall_s = time.perf_counter() - t0
        self.last_stats = stats
        for req_id, out in outs.items():
            st = sched.seqs[req_id]
            out.answer_ids = st.canvas[st.req.prompt_len :]
            out.steps = st.steps
        return list(outs.values())


def load_tokenizer(model_dir: str | Path) -> object | None:
    """The checkpoint's tokenizer through transformers.AutoTokenizer, or None if it has none."""
    model_dir = Path(model_dir)
    if not any((model_dir / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))
