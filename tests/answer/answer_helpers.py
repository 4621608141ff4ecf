"""What the answer tests share: the monitor tests' tiny model recipe (a random Llama with peaked attention and a BPE
tokenizer), its score file, and small items. (Named uniquely: tests import it by name, which `conftest` is not.)"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "monitor"))

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, LlamaConfig  # noqa: E402

from monitor_helpers import HAYSTACK, make_scores, texts  # noqa: E402,F401
from retrieval_heads.capture.attention import use_rheads  # noqa: E402
from tiny import COMMON, FAMILIES, bpe_tokenizer  # noqa: E402

CONTEXT = HAYSTACK[:400]
QUESTION = "Where did the children laugh?"


def tiny_tokenizer():
    return bpe_tokenizer(texts(), vocab_size=900)


def tiny_model(tok, seed: int = 0, family: str | None = None):
    """A random Llama (GQA, 2 KV heads), or a tiny model of `family` (`tiny.FAMILIES`), over `tok`'s vocabulary."""
    torch.manual_seed(seed)
    if family is None:
        cfg = LlamaConfig(**{**COMMON, "vocab_size": len(tok)}, num_key_value_heads=2, bos_token_id=0, eos_token_id=1)
    else:
        cfg = FAMILIES[family]()
        cfg.vocab_size, cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = len(tok), 0, 1, 1
    m = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=torch.float32).eval()
    with torch.no_grad():  # peaked attention, so top-1 positions have no near-ties
        for name, p in m.named_parameters():
            if "q_proj.weight" in name or "k_proj.weight" in name:
                p.mul_(4.0)
    return use_rheads(m)


def items(n: int = 2) -> list[dict]:
    sentences = [s.strip() + "." for s in HAYSTACK.split(".") if s.strip()]
    return [{"id": f"q{i}", "context": " ".join(sentences[i:i + 6]), "question": QUESTION,
             "answers": [sentences[i].split()[1]]} for i in range(n)]
