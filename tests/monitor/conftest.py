"""Shared fixtures of the monitor tests: a tiny random Llama with a BPE tokenizer trained on a word haystack and
the counterfactual facts, a score file that marks a few of its heads as retrieval heads, and both saved to a
directory for the CLI (`model_dir`: the model, scores.json, and other.json of another shape)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from retrieval_heads.heads.scores import HeadScores
from retrieval_heads.monitor.bench.items import counterfactual_facts
from retrieval_heads.probes.needles import get_needles
from retrieval_heads.capture.attention import use_rheads
from tiny import COMMON, bpe_tokenizer, word_haystack

HAYSTACK = word_haystack(200)
TEMPLATE = ("<context> </context> Based only on the context above, answer the question in a short sentence. "
            "Question: Answer:")
RETRIEVAL = {(1, 0): 0.8, (2, 3): 0.5, (2, 1): 0.2}  # (layer, head): score; the rest score 0 or 0.05


def texts() -> list[str]:
    return [HAYSTACK, TEMPLATE, *[f"{n.needle} {n.question}" for n in get_needles("eval")],
            *[f"{f['statement']} {f['question']} {f['common']}" for f in counterfactual_facts()]]


@pytest.fixture(scope="session")
def tok():
    return bpe_tokenizer(texts(), vocab_size=900)


@pytest.fixture(scope="session")
def model(tok):
    torch.manual_seed(0)
    cfg = LlamaConfig(**{**COMMON, "vocab_size": len(tok)}, num_key_value_heads=2, bos_token_id=0, eos_token_id=1)
    m = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=torch.float32).eval()
    with torch.no_grad():  # peaked attention, so top-1 positions have no near-ties
        for name, p in m.named_parameters():
            if "q_proj.weight" in name or "k_proj.weight" in name:
                p.mul_(4.0)
    return use_rheads(m)


def make_scores(L: int = 3, H: int = 4, retrieval: dict | None = None) -> HeadScores:
    m = np.full((L, H), 0.0)
    m[0, 1] = 0.05
    for (l, h), s in (RETRIEVAL if retrieval is None else retrieval).items():
        m[l, h] = s
    scores = HeadScores.empty(L, H)
    scores.add_sample(m)
    return scores


@pytest.fixture(scope="session")
def scores() -> HeadScores:
    return make_scores()


@pytest.fixture(scope="session")
def haystack() -> str:
    return HAYSTACK


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, model, tok):
    d = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    make_scores().save(d / "scores.json")
    make_scores(L=5).save(d / "other.json")
    return d
