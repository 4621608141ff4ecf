"""Shared helpers of the suite tests: offline BPE tokenizers (plain and chat), an essay file, a fake HaluEval QA
file with its reserved rows, and a tiny Llama with a longer context."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from retrieval_heads.capture.attention import use_rheads
from retrieval_heads.evals.suite.common import NOISE, words
from retrieval_heads.evals.suite.tasks import aggregation, niah, qa, vt
from tiny import COMMON, SPECIALS, bpe_tokenizer, word_haystack

CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|user|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
CHAT_SPECIALS = [*SPECIALS, "<|user|>", "<|end|>", "<|assistant|>"]
ESSAY = word_haystack(400)
MARKER = "ZQXHELDOUTROW"


def _texts() -> list[str]:
    templates = [niah.PLURAL[0], niah.SINGULAR[0], niah.NEEDLE, vt.TEMPLATE, vt.PREFIX, aggregation.CWE,
                 aggregation.FWE, aggregation.CWE_PREFIX, aggregation.FWE_PREFIX, qa.TEMPLATE, NOISE]
    return [ESSAY, *templates, " ".join(words()[:400]), "0123456789 abcdef-"]


def tokenizer(chat: bool):
    return bpe_tokenizer(_texts(), 900, specials=CHAT_SPECIALS, chat_template=CHAT_TEMPLATE if chat else None)


def essay_file(tmp: Path) -> str:
    p = tmp / "essay.txt"
    p.write_text(ESSAY)
    return str(p)


def fake_qa(tmp: Path, rows: int = 60, heldout: tuple[int, ...] = (0, 3, 7, 11, 20, 33)) -> tuple[str, str]:
    """(jsonl, heldout list): reserved rows carry MARKER in every field."""
    rng = random.Random(0)
    lines = []
    for i in range(rows):
        tag = f" {MARKER}" if i in heldout else ""
        topic = " ".join(rng.choice(ESSAY.split()) for _ in range(8))
        lines.append(json.dumps({"knowledge": f"Paragraph {i} says {topic}.{tag} Its keeper is Keeper{i}.",
                                 "question": f"Who keeps paragraph {i}?{tag}", "right_answer": f"Keeper{i}{tag}",
                                 "hallucinated_answer": "nobody"}))
    data, held = tmp / "qa.jsonl", tmp / "heldout.txt"
    data.write_text("\n".join(lines) + "\n")
    held.write_text("\n".join(map(str, heldout)) + "\n")
    return str(data), str(held)


def tiny_llama(tok, context: int = 2048):
    torch.manual_seed(0)
    cfg = LlamaConfig(**{**COMMON, "vocab_size": len(tok), "max_position_embeddings": context},
                      num_key_value_heads=2, bos_token_id=0, eos_token_id=1)
    return use_rheads(AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=torch.float32).eval())


def scored_suite(tmp: Path, tasks: list[str], seed: int = 0):
    """(tokenizer, tiny Llama with a 1024-token context, a 3-sample SuiteConfig of `tasks` at 400 tokens, the path
    of a random scores.json of the model's shape): what the sweeps over the suite start from."""
    import numpy as np

    from retrieval_heads.config import ModelConfig
    from retrieval_heads.evals.suite.run import SuiteConfig
    from retrieval_heads.heads.scores import HeadScores

    tok = tokenizer(chat=True)
    model = tiny_llama(tok, context=1024)
    scores = HeadScores.empty(3, 4)
    scores.add_sample(np.random.default_rng(seed).random((3, 4)))
    scores.save(tmp / "scores.json")
    suite = SuiteConfig(model=ModelConfig(model="tiny-llama"), tasks=tasks, lengths=[400], samples=3,
                        max_new_tokens=3, haystack=essay_file(tmp))
    return tok, model, suite, str(tmp / "scores.json")
