"""Profiles the planner falls back to when a model directory ships none.

The built-in quality profile follows the LLaDA-8B-Instruct GSM8K curve of Fast-dLLM Fig. 5
(gen 256, block 32; reference/dlm_inference.md §5): tokens/step 1.00 / 3.25 / 4.24 / 5.12 /
6.17 / 7.01 and accuracy 79.3 / 79.2 / 78.0 / 76.5 / 72.5 / 66.5 % at τ 1.0 / 0.9 / 0.8 / 0.7 /
0.6 / 0.5; τ 0.95 and 0.85 are interpolated by us. The built-in cost model is illustrative, shaped
like an 8B model on one modern GPU (reuse step ≈ 20 ms at batch 1, refresh ≈ 2.5× that) with TP
cutting the per-token terms by ≈ d/1.1 and the fixed term less, plus an all-reduce overhead
that grows with log2 d. Measure and ship real profiles (`dilaserve profile`, `dilaserve eval`).
"""

from __future__ import annotations

import math
from pathlib import Path

from common.costmodel import Coeffs, CostModel
from common.quality import QualityPoint, QualityProfile

COSTMODEL_FILE = "costmodel.json"
QUALITY_FILE = "quality_profile.json"

# τ, tokens per step, accuracy (fraction)
LLADA_GSM8K_CURVE = (
    (1.0, 1.00, 0.793),
    (0.95, 2.20, 0.793),  # interpolated
    (0.9, 3.25, 0.792),
    (0.85, 3.75, 0.787),  # interpolated
    (0.8, 4.24, 0.780),
    (0.7, 5.12, 0.765),
    (0.6, 6.17, 0.725),
    (0.5, 7.01, 0.665),
)

# a [ms/step], r [ms/row], b [ms/token], d [ms/(token·key)]
_TP1_FULL = (18.0, 0.2, 0.10, 2e-5)
_TP1_REUSE = (18.0, 0.1, 0.06, 1.5e-5)


def example_quality_profile(gen_length: int = 256, block_length: int = 32) -> QualityProfile:
    points = [QualityPoint(tau, acc, tps, gen_length / tps) for tau, tps, acc in LLADA_GSM8K_CURVE]
    return QualityProfile(
        model="example-llada-gsm8k", gen_length=gen_length, block_length=block_length,
        num_problems=1319, points={"dual": points},
    )  # fmt: skip


def example_cost_model(tp_degrees: tuple[int, ...] = (1, 2, 4, 8)) -> CostModel:
    return CostModel({d: _tp_coeffs(d) for d in tp_degrees})


def _tp_coeffs(tp: int) -> Coeffs:
    fixed_scale = 0.3 + 0.7 / tp  # weight reads shrink with d, launch overheads do not
    token_scale = 1.0 if tp == 1 else 1.1 / tp
    allreduce_ms = math.log2(tp)

    def scaled(c: tuple[float, float, float, float]) -> list[float]:
        a, r, b, d = c
        return [a * fixed_scale + allreduce_ms, r * fixed_scale, b * token_scale, d * token_scale]

    return Coeffs(full=scaled(_TP1_FULL), reuse=scaled(_TP1_REUSE))


def load_profiles(model_dir: Path | None) -> tuple[CostModel, QualityProfile, str]:
    """The model directory's profiles where present, else the built-in examples.

    Returns (cost model, quality profile, a line saying where each came from).
    """
    cost, quality = example_cost_model(), example_quality_profile()
    sources = ["cost model: built-in example", "quality: built-in example"]
    if model_dir is not None and (model_dir / COSTMODEL_FILE).is_file():
        cost = CostModel.load(model_dir / COSTMODEL_FILE)
        sources[0] = f"cost model: {model_dir / COSTMODEL_FILE}"
    if model_dir is not None and (model_dir / QUALITY_FILE).is_file():
        quality = QualityProfile.load(model_dir / QUALITY_FILE)
        sources[1] = f"quality: {model_dir / QUALITY_FILE}"
    return cost, quality, "; ".join(sources)
