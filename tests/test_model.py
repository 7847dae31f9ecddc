"""The model against independent implementations, and the checkpoint loaders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from workers.model.config import ModelConfig
from workers.model.loader import CheckpointError, load_model, save_model

HIDDEN, LAYERS, HEADS, INTER, VOCAB = 64, 2, 4, 160, 50


def _hf_logits(hf: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    # A 4D additive mask of zeros: every position attends to every position (no causal mask).
    mask = torch.zeros(ids.shape[0], 1, ids.shape[1], ids.shape[1])
    return hf(input_ids=ids, attention_mask=mask).logits


def _llama(kv_heads: int) -> LlamaForCausalLM:
    cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=kv_heads, rope_theta=500000.0,
        rms_norm_eps=1e-5, max_position_embeddings=128, tie_word_embeddings=False,
        attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


def _qwen2() -> Qwen2ForCausalLM:
    cfg = Qwen2Config(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=2, rope_theta=1e6, rms_norm_eps=1e-6,
        max_position_embeddings=128, tie_word_embeddings=False, attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(1)
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():  # HF initialises biases to zero; make them matter
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    return model


def _write_llada(hf: LlamaForCausalLM, out: Path) -> None:
    """Save HF Llama weights under LLaDA's exact parameter names and config fields."""
    block = {
        "input_layernorm": "attn_norm", "self_attn.q_proj": "q_proj", "self_attn.k_proj": "k_proj",
        "self_attn.v_proj": "v_proj", "self_attn.o_proj": "attn_out",
        "post_attention_layernorm": "ff_norm", "mlp.gate_proj": "ff_proj",
        "mlp.up_proj": "up_proj", "mlp.down_proj": "ff_out",
    }  # fmt: skip
    state = {}
    for name, t in hf.state_dict().items():
        if name == "model.embed_tokens.weight":
            state["model.transformer.wte.weight"] = t
        elif name == "model.norm.weight":
            state["model.transformer.ln_f.weight"] = t
        elif name == "lm_head.weight":
            state["model.transformer.ff_out.weight"] = t
        else:
            i, rest = name.removeprefix("model.layers.").split(".", 1)
            mod, w = rest.rsplit(".", 1)
            state[f"model.transformer.blocks.{i}.{block[mod]}.{w}"] = t.contiguous()
    out.mkdir(parents=True)
    half = len(state) // 2  # two shards, like the real checkpoint's several files
    names = sorted(state)
    save_file({n: state[n] for n in names[:half]}, str(out / "model-00001-of-00002.safetensors"))
    save_file({n: state[n] for n in names[half:]}, str(out / "model-00002-of-00002.safetensors"))
    hc = hf.config
    cfg = {
        "architectures": ["LLaDAModelLM"], "model_type": "llada", "d_model": hc.hidden_size,
        "n_layers": hc.num_hidden_layers, "n_heads": hc.num_attention_heads,
        "n_kv_heads": hc.num_key_value_heads, "mlp_hidden_size": hc.intermediate_size,
        "mlp_ratio": 4, "vocab_size": VOCAB, "embedding_size": VOCAB, "weight_tying": False,
        "mask_token_id": 7, "eos_token_id": 2, "pad_token_id": 2, "rope": True,
        "rope_theta": hc.rope_theta, "rope_full_precision": True, "max_sequence_length": 128,
        "layer_norm_type": "rms", "rms_norm_eps": 1e-5, "include_bias": False,
        "include_qkv_bias": False, "block_type": "llama", "activation_type": "silu",
    }  # fmt: skip
    (out / "config.json").write_text(json.dumps(cfg))


def _write_dream(hf: Qwen2ForCausalLM, out: Path) -> None:
    out.mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in hf.state_dict().items()}, str(out / "model.safetensors")
    )
    raw = hf.config.to_dict()
    raw.update(model_type="Dream", architectures=["DreamModel"], mask_token_id=7, eos_token_id=2)
    raw.update(pad_token_id=2)
    (out / "config.json").write_text(json.dumps(raw))


@pytest.fixture()
def ids() -> torch.Tensor:
    torch.manual_seed(2)
    return torch.randint(0, VOCAB, (3, 21))


@pytest.mark.parametrize("kv_heads", [HEADS, 2])
def test_llada_like_forward_matches_transformers_llama(tmp_path, ids, kv_heads) -> None:
    hf = _llama(kv_heads)
    _write_llada(hf, tmp_path / "llada")
    ours = load_model(tmp_path / "llada")
    assert ours.cfg.family == "llada"
    with torch.no_grad():
        diff = (ours(ids) - _hf_logits(hf, ids)).abs().max().item()
    assert diff <= 1e-4


def test_dream_like_forward_matches_transformers_qwen2(tmp_path, ids) -> None:
    hf = _qwen2()
    _write_dream(hf, tmp_path / "dream")
    ours = load_model(tmp_path / "dream")
    assert ours.cfg.logit_shift and ours.cfg.qkv_bias and ours.cfg.num_kv_heads == 2
    with torch.no_grad():
        diff = (ours(ids) - _hf_logits(hf, ids)).abs().max().item()
    assert diff <= 1e-4


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_foreign_checkpoint_reproduces_our_format(tmp_path, ids, family) -> None:
    hf = _llama(HEADS) if family == "llada" else _qwen2()
    (_write_llada if family == "llada" else _write_dream)(hf, tmp_path / family)
    foreign = load_model(tmp_path / family)
    save_model(foreign, tmp_path / "ours")
    ours = load_model(tmp_path / "ours")
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["model_type"] == "dilaserve"
    with torch.no_grad():
        assert torch.equal(foreign(ids), ours(ids))


def test_bf16_load(tmp_path, ids) -> None:
    hf = _llama(HEADS)
    _write_llada(hf, tmp_path / "llada")
    model = load_model(tmp_path / "llada", dtype=torch.bfloat16)
    with torch.no_grad():
        out = model(ids)
    assert out.dtype == torch.bfloat16
    assert (out.float() - _hf_logits(hf, ids)).abs().max().item() < 0.5


def test_unknown_checkpoint_format(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(CheckpointError, match="unknown checkpoint format.*gpt2"):
        load_model(tmp_path)


def test_mismatched_tensor_shape_names_the_tensor(tmp_path) -> None:
    hf = _llama(HEADS)
    _write_llada(hf, tmp_path / "llada")
    cfg = json.loads((tmp_path / "llada" / "config.json").read_text())
    cfg["mlp_hidden_size"] = INTER * 2
    (tmp_path / "llada" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"gate_proj.weight has shape \(160, 64\)"):
        load_model(tmp_path / "llada")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="num_kv_heads=3 must divide num_heads=4"):
        ModelConfig(50, 64, 1, 4, 3, 128, mask_token_id=7, eos_token_id=2, pad_token_id=0)
    with pytest.raises(ValueError, match="pad_token_id and mask_token_id"):
        ModelConfig(50, 64, 1, 4, 4, 128, mask_token_id=7, eos_token_id=2, pad_token_id=7)
