"""One prefill, many caches (`kvcache/shared.py`, `studies/kvshared.py`): every budget policy's cache derived from
one shared prefill gives the same tokens and the same bytes as the policy's own prefill,
on tiny random Llama, Qwen2, Gemma 3 (sliding layers copied) and Mistral, in a left-padded batch; the one-line
refusals. The sweep itself: tests/evals/suite/test_suite_kvsweep_shared.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache, MistralConfig

from retrieval_heads.capture.controller import AttentionController
from retrieval_heads.capture.decoding import generate_batch
from retrieval_heads.errors import RHeadsError
from retrieval_heads.kvcache import KVConfig
from retrieval_heads.kvcache.cache import cache_bytes
from retrieval_heads.kvcache.factory import kv_factory
from retrieval_heads.kvcache.shared import PrefillCapture, derive_cache
from tiny import COMMON, tiny_model

POLICIES = [("full", None), ("snapkv", 0.3), ("headkv", 0.3), ("hybrid", 0.4), ("retrieval", 0.5),
            ("random", 0.3), ("streaming", 0.2)]
NEW = 6


def _model(family):
    if family == "mistral-full":
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(MistralConfig(**COMMON, num_key_value_heads=4, sliding_window=None),
                                                attn_implementation="sdpa", dtype=torch.float32).eval()
    return tiny_model(family)


@pytest.fixture(scope="module", params=["llama", "qwen2", "gemma3", "mistral-full"])
def family(request, tmp_path_factory):
    from retrieval_heads.capture.attention import use_rheads
    from retrieval_heads.heads.scores import HeadScores

    model = use_rheads(_model(request.param))
    c = model.config
    scores = HeadScores.empty(c.num_hidden_layers, c.num_attention_heads)
    scores.add_sample(np.random.default_rng(0).random((c.num_hidden_layers, c.num_attention_heads)))
    path = tmp_path_factory.mktemp("shared") / "scores.json"
    scores.save(path)
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(3, 64, (n,), generator=g).tolist() for n in (90, 75)]  # left-padded together
    return model, str(path), prompts


def _own(model, factory, prompts, ctl):
    """The policy's own prefill: one generate call."""
    gens = generate_batch(model, prompts, NEW, [], ctl, 0, cache=factory)
    return [g.tokens for g in gens], factory.usage(model, len(prompts))


def _shared(model, factory, prompts, ctl):
    capture = PrefillCapture(model.config)
    first = generate_batch(model, prompts, 1, [], ctl, 0, cache=lambda m, B: capture)
    cache = derive_cache(factory(model, len(prompts)), capture)
    rest = generate_batch(model, [p + f.tokens for p, f in zip(prompts, first)], NEW - 1, [], ctl, 0,
                          cache=lambda m, B: cache)
    return [f.tokens + r.tokens for f, r in zip(first, rest)], factory.usage(model, len(prompts))


@pytest.mark.parametrize("policy,budget", POLICIES)
def test_a_derived_cache_decodes_as_the_policys_own_prefill(family, policy, budget):
    model, scores, prompts = family
    ctl = AttentionController()
    kv = KVConfig(policy=policy, budget=budget, sink=4, recent=16)
    own_tokens, own_kv = _own(model, kv_factory(kv, model, scores), prompts, ctl)
    shared_tokens, shared_kv = _shared(model, kv_factory(kv, model, scores), prompts, ctl)
    assert shared_tokens == own_tokens and len(own_tokens[0]) == NEW
    assert shared_kv == own_kv  # the same bytes held
    if budget is not None and budget < 1:
        assert own_kv["kv_bytes"] < own_kv["kv_bytes_full"]


def test_the_capture_serves_one_forward_and_derives_only_fresh_caches(family):
    model, scores, prompts = family
    ctl = AttentionController()
    capture = PrefillCapture(model.config)
    with pytest.raises(RHeadsError, match="has not run"):
        derive_cache(DynamicCache(config=model.config), capture)
    generate_batch(model, prompts[:1], 1, [], ctl, 0, cache=lambda m, B: capture)
    with pytest.raises(RHeadsError, match="one forward"):  # a decoding step through the capture itself
        capture.layers[_select_layer(capture)].update(*_kv(capture))
    used = derive_cache(DynamicCache(config=model.config), capture)
    assert cache_bytes(used) > 0
    with pytest.raises(RHeadsError, match="fresh cache"):
        derive_cache(used, capture)
    window = KVConfig(policy="retrieval", sink=4, recent=16)  # no budget: evicts during prefill, cannot share
    with pytest.raises(RHeadsError, match="cannot be derived"):
        derive_cache(kv_factory(window, model, scores)(model, 1), capture)


def _select_layer(capture):
    from retrieval_heads.kvcache.select import SelectLayer

    return next(i for i, layer in enumerate(capture.layers) if isinstance(layer, SelectLayer))


def _kv(capture):
    _, k, v, _, _ = capture.captured[_select_layer(capture)]
    return k[:, :, -1:], v[:, :, -1:]
