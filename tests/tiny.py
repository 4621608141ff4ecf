"""Tiny random causal LMs of each family, built from configs (no downloads), for the attention oracles; and an
offline word haystack with a small BPE tokenizer trained on it, for the tests that run whole probes."""

import random

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig, MistralConfig, PreTrainedTokenizerFast,
                          Qwen2Config)

SPECIALS = ["<s>", "</s>", "<unk>"]  # ids 0, 1, 2 of bpe_tokenizer

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


def word_haystack(n_sentences: int) -> str:
    """A deterministic haystack of simple sentences (seed 0)."""
    rng = random.Random(0)
    words = ("the river town garden old market winter morning people walked slowly across bridge children laughed "
             "quiet evening light stone houses painted window baker bread warm travelers spoke about weather").split()
    return " ".join(" ".join(rng.choice(words) for _ in range(rng.randint(6, 14))).capitalize() + "."
                    for _ in range(n_sentences))


def bpe_tokenizer(texts: list[str], vocab_size: int, *, specials: list[str] = SPECIALS, byte_alphabet: bool = True,
                  chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `texts`, BOS prepended; `specials` start with <s>, </s>, <unk> (ids
    0, 1, 2) and may add chat markers. Without the byte alphabet every token decodes to readable text."""
    assert specials[:3] == SPECIALS, "bos/eos/unk come first"
    t = Tokenizer(models.BPE(unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet() if byte_alphabet else []
    t.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                     initial_alphabet=alphabet, show_progress=False))
    t.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.chat_template = chat_template
    return fast
