"""Token ids → the texts clients see: the partial canvas, finished blocks, the final answer."""

from __future__ import annotations

from typing import Any

MASK_GLYPH = "_"  # how a still-masked position shows in the partial text


def apply_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Cut `text` at the first stop string; returns (text, whether a stop string was found)."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class TextCodec:
    def __init__(self, tokenizer: Any, mask_id: int, eos_id: int, pad_id: int) -> None:
        self.tok = tokenizer
        self.mask_id, self.eos_id, self.pad_id = mask_id, eos_id, pad_id

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        if self.tok is None:
            return " ".join(map(str, ids))
        return str(self.tok.decode(ids, skip_special_tokens=True))

    def _until_eos(self, ids: list[int]) -> list[int]:
        for i, t in enumerate(ids):
            if t in (self.eos_id, self.pad_id):
                return ids[:i]
        return ids

    def partial(self, answer: list[int]) -> str:
        """Committed text with one glyph per masked position (up to the first EOS)."""
        out: list[str] = []
        run: list[int] = []
        for t in self._until_eos(answer):
            if t == self.mask_id:
                if run:
                    out.append(self.decode(run))
                    run = []
                out.append(MASK_GLYPH)
            else:
                run.append(t)
        if run:
            out.append(self.decode(run))
        return "".join(out)

    def final(self, answer: list[int], stop: list[str]) -> tuple[str, str]:
        """(text, finish_reason): the answer up to EOS, cut at the first stop string."""
        ids = self._until_eos(answer)
        text, stopped = apply_stop(self.decode(ids), stop)
        return text, "stop" if stopped or len(ids) < len(answer) else "length"
