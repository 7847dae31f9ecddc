"""The demo task: write each group of letters back in any order, with its size.

A problem is 5–9 labelled groups of 2–4 letters from a–p (half the groups of 3–4 letters repeat
a letter). Prompt `Aabd|Bce|Ccfgh|=`; one correct answer `Adba3|Bec2|Chfcg4|`, then EOS padding
to GEN_LENGTH tokens. Any order of a group's letters is correct, so the answer is checkable but
not unique: that is what makes parallel commits conflict (see docs/demo_model.md).

Training orders follow Plackett–Luce with fixed per-letter weights: i–p are "heavy" (usually
written first, so their first-choice confidence is spread over ~0.5–0.95), a–h are
interchangeable (confidence = share of the remaining letters, so repeated letters collide when
committed together). Pure python: the load generator uses the checker too.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass

LETTERS = "abcdefghijklmnop"
LABELS = "ABCDEFGHI"
SEP = "|"
PROMPT_END = "="
GEN_LENGTH = 64  # answer tokens per problem, EOS-padded (4 blocks of 16)
NUM_GROUPS = (5, 9)
GROUP_SIZE = (2, 4)
REPEAT_PROB = 0.5  # share of groups (size ≥ 3) that repeat a letter
ANSWER_CHARS = (33, 48)  # content length: spans 3 blocks, leaves the 4th block to EOS
# Plackett–Luce weights: a–h equal, i–p increasingly likely to be written first.
WEIGHTS = dict(
    zip(LETTERS, [1.0] * 8 + [4.0, 8.0, 12.0, 16.0, 32.0, 48.0, 64.0, 128.0], strict=True)
)
TEST_BUCKETS = 10  # a problem whose prompt hash is 0 mod this is held out (test split only)
SPLITS = ("train", "test")


@dataclass(frozen=True, slots=True)
class Problem:
    groups: tuple[str, ...]  # each group's letters, sorted

    @property
    def prompt(self) -> str:
        return "".join(f"{LABELS[i]}{g}{SEP}" for i, g in enumerate(self.groups)) + PROMPT_END

    @property
    def split(self) -> str:
        digest = hashlib.blake2b(self.prompt.encode(), digest_size=8).digest()
        return "test" if int.from_bytes(digest, "big") % TEST_BUCKETS == 0 else "train"


def format_answer(orders: list[str]) -> str:
    return "".join(f"{LABELS[i]}{o}{len(o)}{SEP}" for i, o in enumerate(orders))


def answer_chars(groups: tuple[str, ...]) -> int:
    return sum(len(g) + 3 for g in groups)  # label, letters, count, separator


def _sample_group(rng: random.Random) -> str:
    size = rng.randint(*GROUP_SIZE)
    if size >= 3 and rng.random() < REPEAT_PROB:
        distinct = rng.sample(LETTERS, rng.randint(2, size - 1))
        letters = distinct + [rng.choice(distinct) for _ in range(size - len(distinct))]
    else:
        letters = rng.sample(LETTERS, size)
    return "".join(sorted(letters))


def sample_problem(rng: random.Random, split: str) -> Problem:
    """Draw problems until one of the wanted split and answer length comes up."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    lo, hi = ANSWER_CHARS
    while True:
        groups = tuple(_sample_group(rng) for _ in range(rng.randint(*NUM_GROUPS)))
        if lo <= answer_chars(groups) <= hi:
            problem = Problem(groups)
            if problem.split == split:
                return problem


def problems(seed: int, split: str, n: int) -> list[Problem]:
    rng = random.Random(f"{split}:{seed}")
    return [sample_problem(rng, split) for _ in range(n)]


def sample_order(letters: str, rng: random.Random) -> str:
    """One Plackett–Luce draw: repeatedly pick a remaining letter with probability ∝ weight."""
    left = list(letters)
    out = []
    while left:
        i = rng.choices(range(len(left)), weights=[WEIGHTS[c] for c in left])[0]
        out.append(left.pop(i))
    return "".join(out)


def sample_answer(problem: Problem, rng: random.Random) -> str:
    return format_answer([sample_order(g, rng) for g in problem.groups])


def parse_prompt(prompt: str) -> Problem:
    """Inverse of Problem.prompt (the load generator only keeps prompts)."""
    if not prompt.endswith(PROMPT_END):
        raise ValueError(f"not a task prompt: {prompt!r}")
    parts = prompt[: -len(PROMPT_END)].split(SEP)[:-1]
    if not parts or any(p[:1] != LABELS[i] for i, p in enumerate(parts)):
        raise ValueError(f"not a task prompt: {prompt!r}")
    return Problem(tuple(p[1:] for p in parts))


def check(problem: Problem, answer: str) -> bool:
    """Exact match up to order inside groups. `answer` has special tokens (EOS, pad) removed."""
    parts = answer.split(SEP)
    if len(parts) != len(problem.groups) + 1 or parts[-1] != "":
        return False
    for i, (part, group) in enumerate(zip(parts, problem.groups, strict=False)):
        expected_tail = str(len(group))
        if part[:1] != LABELS[i] or not part.endswith(expected_tail):
            return False
        if Counter(part[1 : -len(expected_tail)]) != Counter(group):
            return False
    return True
