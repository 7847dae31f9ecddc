"""The shipped demo model: loads through the normal loader and answers held-out problems."""

from __future__ import annotations

import pytest

from common.config import DEFAULT_MODEL_DIR

pytestmark = pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "model.safetensors").is_file(), reason="demo model not trained yet"
)


def test_weights_are_small() -> None:
    size_mb = sum(f.stat().st_size for f in DEFAULT_MODEL_DIR.glob("*.safetensors")) / 2**20
    assert size_mb <= 20


def test_scores_on_fresh_held_out_problems_at_tau_0_9_dual_cache() -> None:
    import torch

    from common import task
    from workers.engine import Engine
    from workers.sched.plan import CacheMode, ThresholdRule

    torch.set_num_threads(1)
    engine = Engine.from_dir(DEFAULT_MODEL_DIR, max_batch_size=100)
    tok = engine.tokenizer
    problems = task.problems(seed=2024, split="test", n=100)  # not the eval set (seed 0)
    prompts = [tok.encode(p.prompt, add_special_tokens=False) for p in problems]
    outs = engine.generate(prompts, 64, 16, ThresholdRule(0.9), CacheMode.DUAL)
    answers = [tok.decode(o.answer_ids, skip_special_tokens=True) for o in outs]
    correct = sum(task.check(p, a) for p, a in zip(problems, answers, strict=True))
    assert correct >= 90, f"{correct}/100 correct; e.g. {problems[0].prompt} → {answers[0]}"
