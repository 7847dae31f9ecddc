"""What the gateway knows about the served model: its name, context length and tokenizer.

No torch here: the gateway reads config.json and loads only the tokenizer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.schemas import ChatMessage


@dataclass(slots=True)
class ModelInfo:
    name: str
    max_seq_len: int
    tokenizer: Any
    unk_id: int | None

    @classmethod
    def load(cls, model_dir: Path, name: str = "") -> ModelInfo:
        from transformers import AutoTokenizer

        raw = json.loads((Path(model_dir) / "config.json").read_text())
        max_len = (
            raw.get("max_seq_len")
            or raw.get("max_sequence_length")
            or raw.get("max_position_embeddings")
            or 4096
        )
        tok = AutoTokenizer.from_pretrained(str(model_dir))
        return cls(name or Path(model_dir).name, int(max_len), tok, tok.unk_token_id)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def represents(self, text: str, ids: list[int]) -> bool:
        """Whether `ids` stand for all of `text`: no unknown token and, for a tokenizer without
        one (it drops what it cannot encode), the ids decode back to the text."""
        if self.unk_id is not None:
            return self.unk_id not in ids
        return str(self.tokenizer.decode(ids)) == text

    def chat_prompt(self, messages: list[ChatMessage]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return str(
                self.tokenizer.apply_chat_template(
                    [m.model_dump() for m in messages], tokenize=False, add_generation_prompt=True
                )
            )
        # no template (the demo model): the conversation's texts, one per line
        return "\n".join(m.content for m in messages)
