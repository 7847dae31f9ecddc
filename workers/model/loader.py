"""Checkpoint loading: our own format, LLaDA's and Dream's, mapped onto one module tree.

A checkpoint directory holds config.json, one or more *.safetensors files and tokenizer files
that `transformers.AutoTokenizer` loads. Each family has a config reader and a name mapping from
its parameter names to ours; shapes are checked before anything is copied.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from workers.model.config import ModelConfig
from workers.model.transformer import DiffusionLM

OUR_TYPE = "dilaserve"


class CheckpointError(ValueError):
    pass


# ---- config readers: family config.json → ModelConfig ----


def _our_config(raw: dict[str, Any]) -> ModelConfig:
    fields = {k: v for k, v in raw.items() if k not in ("model_type", "torch_dtype")}
    return ModelConfig.from_dict(fields)


def _llada_config(raw: dict[str, Any]) -> ModelConfig:
    # Read config.json, never LLaDA's code defaults (they differ: weight_tying, rope_theta).
    if raw.get("weight_tying"):
        raise CheckpointError("LLaDA checkpoints with weight_tying=true are not supported")
    return ModelConfig(
        vocab_size=raw.get("embedding_size") or raw["vocab_size"],
        hidden_size=raw["d_model"],
        num_layers=raw["n_layers"],
        num_heads=raw["n_heads"],
        num_kv_heads=raw.get("n_kv_heads") or raw["n_heads"],
        intermediate_size=raw["mlp_hidden_size"],
        mask_token_id=raw.get("mask_token_id", 126336),
        eos_token_id=raw.get("eos_token_id", 126081),
        pad_token_id=raw.get("pad_token_id", 126081),
        max_seq_len=raw.get("max_sequence_length", 4096),
        rope_theta=raw.get("rope_theta", 10000.0),
        rms_norm_eps=raw.get("rms_norm_eps", 1e-5),
        qkv_bias=bool(raw.get("include_qkv_bias") or raw.get("include_bias")),
        family="llada",
    )


def _dream_config(raw: dict[str, Any]) -> ModelConfig:
    if raw.get("tie_word_embeddings"):
        raise CheckpointError("Dream checkpoints with tie_word_embeddings=true are not supported")
    return ModelConfig(
        vocab_size=raw["vocab_size"],
        hidden_size=raw["hidden_size"],
        num_layers=raw["num_hidden_layers"],
        num_heads=raw["num_attention_heads"],
        num_kv_heads=raw.get("num_key_value_heads") or raw["num_attention_heads"],
        intermediate_size=raw["intermediate_size"],
        mask_token_id=raw.get("mask_token_id", 151666),
        eos_token_id=raw.get("eos_token_id", 151643),
        pad_token_id=raw.get("pad_token_id", 151643),
        max_seq_len=raw.get("max_position_embeddings", 2048),
        rope_theta=raw.get("rope_theta", 1e6),
        rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
        qkv_bias=True,
        logit_shift=True,
        family="dream",
    )


# ---- name maps: family parameter name → our parameter name (None = not ours) ----

_LLADA_BLOCK = {
    "attn_norm.weight": "attn_norm.weight",
    "q_proj.weight": "attn.q_proj.weight",
    "k_proj.weight": "attn.k_proj.weight",
    "v_proj.weight": "attn.v_proj.weight",
    "q_proj.bias": "attn.q_proj.bias",
    "k_proj.bias": "attn.k_proj.bias",
    "v_proj.bias": "attn.v_proj.bias",
    "attn_out.weight": "attn.o_proj.weight",
    "ff_norm.weight": "mlp_norm.weight",
    "ff_proj.weight": "mlp.gate_proj.weight",  # ff_proj is the gate (goes through SiLU)
    "up_proj.weight": "mlp.up_proj.weight",
    "ff_out.weight": "mlp.down_proj.weight",  # inside a block ff_out is the down-projection
}
_LLADA_TOP = {
    "model.transformer.wte.weight": "embed.weight",
    "model.transformer.ln_f.weight": "norm.weight",
    "model.transformer.ff_out.weight": "lm_head.weight",  # at top level ff_out is the LM head
}
_DREAM_BLOCK = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "mlp_norm.weight",
    **{f"self_attn.{p}_proj.{w}": f"attn.{p}_proj.{w}" for p in "qkv" for w in ("weight", "bias")},
    "self_attn.o_proj.weight": "attn.o_proj.weight",
    **{f"mlp.{p}_proj.weight": f"mlp.{p}_proj.weight" for p in ("gate", "up", "down")},
}
_DREAM_TOP = {
    "model.embed_tokens.weight": "embed.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "lm_head.weight",
}


def _block_mapper(
    top: dict[str, str], block_re: str, block: dict[str, str]
) -> Callable[[str], str | None]:
    pattern = re.compile(block_re)

    def map_name(name: str) -> str | None:
        if name in top:
            return top[name]
        m = pattern.fullmatch(name)
        if m and m.group(2) in block:
            return f"layers.{m.group(1)}.{block[m.group(2)]}"
        return None

    return map_name


_FAMILIES: dict[
    str, tuple[Callable[[dict[str, Any]], ModelConfig], Callable[[str], str | None]]
] = {
    OUR_TYPE: (_our_config, lambda name: name),
    "llada": (
        _llada_config,
        _block_mapper(_LLADA_TOP, r"model\.transformer\.blocks\.(\d+)\.(.+)", _LLADA_BLOCK),
    ),
    "dream": (
        _dream_config,
        _block_mapper(_DREAM_TOP, r"model\.layers\.(\d+)\.(.+)", _DREAM_BLOCK),
    ),
}


def detect_family(raw: dict[str, Any]) -> str:
    model_type = str(raw.get("model_type", "")).lower()
    archs = [a.lower() for a in raw.get("architectures") or []]
    if model_type == OUR_TYPE:
        return OUR_TYPE
    if model_type == "llada" or any("llada" in a for a in archs):
        return "llada"
    if model_type == "dream" or any("dream" in a for a in archs):
        return "dream"
    raise CheckpointError(
        f"unknown checkpoint format: model_type={raw.get('model_type')!r}, "
        f"architectures={raw.get('architectures')!r}; supported: dilaserve, llada, dream"
    )


def read_config(model_dir: Path) -> ModelConfig:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path} not found: a checkpoint directory needs config.json")
    raw = json.loads(path.read_text())
    return _FAMILIES[detect_family(raw)][0](raw)


def read_state_dict(model_dir: Path) -> dict[str, torch.Tensor]:
    """Read every *.safetensors file of a checkpoint and map names to ours (on the CPU)."""
    model_dir = Path(model_dir)
    raw = json.loads((model_dir / "config.json").read_text())
    map_name = _FAMILIES[detect_family(raw)][1]
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"no *.safetensors files in {model_dir}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        for name, tensor in load_file(str(f)).items():
            ours = map_name(name)
            if ours is not None:
                state[ours] = tensor
    return state


def check_shapes(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    expected = {n: p.shape for n, p in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CheckpointError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")
    for name, shape in expected.items():
        if state[name].shape != shape:
            raise CheckpointError(
                f"tensor {name} has shape {tuple(state[name].shape)}, "
                f"the config implies {tuple(shape)}"
            )


def load_model(
    model_dir: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> DiffusionLM:
    cfg = read_config(Path(model_dir))
    with torch.device("meta"):
        model = DiffusionLM(cfg)
    state = read_state_dict(Path(model_dir))
    check_shapes(model, state)
    model = DiffusionLM(cfg)  # materialise (meta was only for the shape check)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True)
    return model.to(device=device, dtype=dtype).eval()


def save_model(model: DiffusionLM, model_dir: str | Path, dtype: torch.dtype | None = None) -> None:
    """Write our own format: config.json + model.safetensors (tokenizer files are separate)."""
    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.to(dtype) if dtype else v).detach().contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(out / "model.safetensors"))
    cfg = {"model_type": OUR_TYPE, **model.cfg.to_dict()}
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
