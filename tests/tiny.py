"""Tiny random causal LMs of each family, built from configs (no downloads), for the attention oracles."""

import torch
from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig, MistralConfig, Qwen2Config

COMMON = dict(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
              max_position_embeddings=256)

FAMILIES = {
    "llama": lambda: LlamaConfig(**COMMON, num_key_value_heads=2),  # GQA
    "qwen2": lambda: Qwen2Config(**COMMON, num_key_value_heads=1),  # MQA, q/k/v bias
    "mistral": lambda: MistralConfig(**COMMON, num_key_value_heads=4, sliding_window=6),  # MHA + sliding window
    "gemma3": lambda: Gemma3TextConfig(**{**COMMON, "num_hidden_layers": 4}, num_key_value_heads=2, head_dim=16,
                                       sliding_window=5,
                                       layer_types=["sliding_attention", "full_attention"] * 2),
}


def tiny_model(family: str, attn: str = "sdpa", seed: int = 0, sharpen: float = 6.0):
    """A random model whose q/k projections are scaled up so attention is peaked (no near-ties in top-1)."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(FAMILIES[family](), attn_implementation=attn, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "q_proj.weight" in name or "k_proj.weight" in name:
                p.mul_(sharpen)
    return model.eval()
