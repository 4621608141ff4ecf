"""Shared fixtures of the monitor tests: a tiny random Llama with a BPE tokenizer trained on a word haystack and
the counterfactual facts, a score file that marks a few of its heads as retrieval heads, and both saved to a
directory for the CLI (`model_dir`: the model, scores.json, and other.json of another shape)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from retrieval_heads.heads.scores import HeadScores
from retrieval_heads.capture.attention import use_rheads
from monitor_helpers import HAYSTACK, RETRIEVAL, TEMPLATE, make_scores, texts  # noqa: F401
from tiny import COMMON, bpe_tokenizer

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
