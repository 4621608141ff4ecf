"""The retrieval-head KV cache on tiny random models of the four families.

Oracles: transformers' own DynamicCache (when sink + recent covers the sequence the output must be the same), and
an independent masked attention over a full cache (`kvref` below: per KV head, the sink + recent visibility
written from the prompt's padding, in float64) for windows that drop tokens.
"""

import numpy as np
import pytest
import torch
from transformers import AttentionInterface, DynamicCache, MistralConfig
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from retrieval_heads.errors import RHeadsError
from retrieval_heads.heads.scores import HeadScores
from retrieval_heads.capture.attention import use_rheads
from retrieval_heads.capture.controller import AttentionController
from retrieval_heads.kvcache.cache import (RetrievalHeadCache, RetrievalHeadLayer, build_cache, cache_bytes,
                                             expected_bytes, full_cache_bytes, prefill_chunking)
from retrieval_heads.kvcache import make_policy, policy_names
from retrieval_heads.kvcache.factory import CacheFactory
from retrieval_heads.kvcache.policies.full import FullPolicy
from retrieval_heads.kvcache.policies.random import RandomPolicy
from retrieval_heads.kvcache.policies.retrieval import RetrievalPolicy
from retrieval_heads.kvcache.policies.streaming import StreamingPolicy
from tiny import COMMON, FAMILIES, tiny_model

FAMS = list(FAMILIES) + ["mistral-full"]  # Mistral without a sliding window: MHA with every layer compressible


def _model(family, attn="sdpa"):
    if family == "mistral-full":
        from transformers import AutoModelForCausalLM

        torch.manual_seed(0)
        m = AutoModelForCausalLM.from_config(MistralConfig(**COMMON, num_key_value_heads=4, sliding_window=None),
                                             attn_implementation="sdpa", dtype=torch.float32)
        with torch.no_grad():
            for name, p in m.named_parameters():
                if "q_proj.weight" in name or "k_proj.weight" in name:
                    p.mul_(6.0)
        m = m.eval()
    else:
        m = tiny_model(family)
    if attn == "rheads":
        use_rheads(m)
    elif attn == "kvref":
        _register_ref()
        m.set_attn_implementation("kvref")
    return m


def _mixed(model):
    """[L, KV] map with full and compressed KV heads side by side where the layer has more than one."""
    L, KV = model.config.num_hidden_layers, model.config.num_key_value_heads
    return np.array([[(l + j) % 2 == 0 for j in range(KV)] for l in range(L)])


def _batch(n=30, pads=(0,), seed=1):
    """Left-padded prompts: ids [B, n] and the 2D mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 64, (len(pads), n), generator=g)  # [B, n]
    mask = torch.ones_like(ids)
    for b, p in enumerate(pads):
        ids[b, :p] = 0
        mask[b, :p] = 0
    return ids, mask


def _generate(model, ids, mask, cache, new=6, chunk=None):
    with torch.no_grad(), prefill_chunking(model, chunk):
        out = model.generate(ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                             pad_token_id=0, cache=cache, output_logits=True, return_dict_in_generate=True,
                             disable_compile=True)
    return out.sequences[:, ids.shape[1]:], torch.stack(out.logits)  # [B, new], [new, B, V]


# ------------------------------------------------------------------------------------------- the masked oracle

REF: dict = {}  # comp [L, KV] bool, sink, recent, pads [B], prefill mode, width W (prompt slots), chunk


def _ref_attention(module, query, key, value, attention_mask, scaling=None, sliding_window=None, **kwargs):
    """Eager float64 attention over the full cache; compressed KV heads see the sink + recent pattern."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if sliding_window is not None:  # sliding layers are the model's own
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    B, H, q, D = query.shape
    KV, k = key.shape[1], key.shape[2]
    G = H // KV
    s = torch.arange(k)[None, None, :]  # [1, 1, k] key slots (a DynamicLayer: slot = index)
    p = (k - q + torch.arange(q))[None, :, None]  # [1, q, 1] query slots
    pads = torch.tensor(REF["pads"])[:, None, None]  # [B, 1, 1]
    real = s >= pads  # [B, 1, k]
    rank = s - pads
    causal = real & (s <= p)  # [B, q, k]
    window = (s == p) | (causal & ((s >= p - REF["recent"]) | (rank < REF["sink"])))
    if REF["prefill"] == "full":  # prompt rows see what the cache held when their chunk began, and their chunk
        chunk = REF["chunk"] or REF["width"]
        start = (p // chunk) * chunk  # [1, q, 1]
        held = (s >= start - REF["recent"]) | (rank < REF["sink"])
        window = torch.where(p < REF["width"], (s == p) | (causal & held), window)
    full_vis = causal | (s == p)
    comp = REF["comp"][module.layer_idx]  # [KV]
    vis = torch.stack([window if comp[h // G] else full_vis for h in range(H)], dim=1)  # [B, H, q, k]
    kk = key.double().repeat_interleave(G, dim=1)  # [B, H, k, D]
    vv = value.double().repeat_interleave(G, dim=1)
    w = (query.double() @ kk.transpose(-1, -2)) * (scaling or D ** -0.5)  # [B, H, q, k]
    w = w.masked_fill(~vis, float("-inf")).softmax(-1)
    return (w @ vv).to(query.dtype).transpose(1, 2).contiguous(), None  # [B, q, H, D]


def _register_ref():
    AttentionInterface.register("kvref", _ref_attention)
    AttentionMaskInterface.register("kvref", sdpa_mask)


# ------------------------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("family", FAMS)
def test_same_as_full_cache_when_the_window_covers(family, chunk):
    """(Both prefill modes: the window covers everything, so they agree.)"""
    ref, ours = _model(family), _model(family, "rheads")
    ids, mask = _batch(30, pads=(0, 5))  # batch 2, one row left-padded
    want_tok, want = _generate(ref, ids, mask, DynamicCache(config=ref.config), chunk=chunk)
    for full, prefill in ((_mixed(ours), "full"), (_mixed(ours), "window"), (np.zeros_like(_mixed(ours)), "window")):
        cache = RetrievalHeadCache(ours.config, full, sink=4, recent=32, prefill=prefill)  # 4 + 32 >= 36 slots
        tok, got = _generate(ours, ids, mask, cache, chunk=chunk)
        assert torch.equal(tok, want_tok)
        assert (got - want).abs().max().item() <= 1e-4
        assert cache.peak_bytes == expected_bytes(ours.config, full, 35, 4, 32, batch=2)
        assert cache.peak_bytes == full_cache_bytes(ours.config, 35, batch=2)  # nothing dropped, nothing added


@pytest.mark.parametrize("prefill, chunk", [("window", None), ("window", 7), ("full", None), ("full", 7)])
@pytest.mark.parametrize("family", FAMS)
def test_small_window_matches_masked_oracle(family, prefill, chunk):
    ours, ref = _model(family, "rheads"), _model(family, "kvref")
    ids, mask = _batch(30, pads=(0, 5))
    full = _mixed(ours)
    REF.update(comp=~full, sink=2, recent=5, pads=[0, 5], prefill=prefill, width=30, chunk=chunk)
    want_tok, want = _generate(ref, ids, mask, DynamicCache(config=ref.config), chunk=chunk)
    cache = RetrievalHeadCache(ours.config, full, sink=2, recent=5, block=4, prefill=prefill)  # several blocks
    tok, got = _generate(ours, ids, mask, cache, chunk=chunk)
    assert (got - want).abs().max().item() <= 1e-4
    assert torch.equal(tok, want_tok)
    # the compressed heads hold sink + recent slots, physically
    for layer in cache.layers:
        if isinstance(layer, RetrievalHeadLayer):
            assert layer.ck.shape[:3] == (2, len(layer.comp), 2 + 5)
            if layer.full:
                assert layer.keys.shape[:3] == (2, len(layer.full), 35)
    assert cache.nbytes() == expected_bytes(ours.config, full, 35, 2, 5, batch=2)


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_batch_rows_match_single_prompts(family):
    """Per-row sinks: a left-padded row decodes as the same prompt alone, with a window that drops tokens."""
    model = _model(family, "rheads")
    full = _mixed(model)
    ids, mask = _batch(30, pads=(0, 6), seed=3)
    tok, logits = _generate(model, ids, mask, RetrievalHeadCache(model.config, full, sink=3, recent=6, block=8))
    for b, p in enumerate((0, 6)):
        one = ids[b:b + 1, p:]
        t1, l1 = _generate(model, one, torch.ones_like(one), RetrievalHeadCache(model.config, full, sink=3, recent=6))
        assert torch.equal(tok[b], t1[0])
        assert (logits[:, b] - l1[:, 0]).abs().max().item() <= 1e-4


def test_window_changes_the_output():
    """The oracle test is not vacuous: a short window gives other logits than the full cache."""
    model = _model("llama", "rheads")
    ids, mask = _batch(30)
    _, full = _generate(model, ids, mask, DynamicCache(config=model.config))
    _, small = _generate(model, ids, mask, RetrievalHeadCache(model.config, _mixed(model), sink=1, recent=3))
    assert (full - small).abs().max().item() > 1e-2


# ------------------------------------------------------------------------------------------- bytes


@pytest.mark.parametrize("family", FAMS)
def test_bytes_match_the_formula(family):
    model = _model(family, "rheads")
    full = _mixed(model)
    for n, new, sink, recent in ((20, 4, 4, 32), (40, 5, 2, 6), (40, 5, 0, 8), (40, 5, 8, 0)):
        ids, mask = _batch(n, pads=(0, 3))
        cache = RetrievalHeadCache(model.config, full, sink=sink, recent=recent)
        _generate(model, ids, mask, cache, new=new)
        T = n + new - 1  # the last token is never fed back
        assert cache.peak_bytes == cache.nbytes() == expected_bytes(model.config, full, T, sink, recent, batch=2)
        ref = DynamicCache(config=model.config)
        _generate(model, ids, mask, ref, new=new)
        assert cache_bytes(ref) == full_cache_bytes(model.config, T, batch=2)
    if family in ("llama", "mistral-full"):  # every layer is compressible: strictly fewer bytes once T > window
        assert expected_bytes(model.config, full, 1000, 4, 32) < full_cache_bytes(model.config, 1000)


# ------------------------------------------------------------------------------------------- policies


def _scores(model, seed=0):
    L, H = model.config.num_hidden_layers, model.config.num_attention_heads
    m = np.random.default_rng(seed).random((L, H)) * 0.1  # at or below the 0.1 threshold ...
    m[0, 0], m[2, 3], m[1, 0] = 0.5, 0.3, 0.2  # ... but three retrieval heads, in KV heads (0, 0), (2, 1), (1, 0)
    return m


def test_policies():
    model = _model("llama", "rheads")
    m = _scores(model)
    KV, G = model.config.num_key_value_heads, 2
    want = (m > 0.1).reshape(m.shape[0], KV, G).any(2)  # [L, KV]
    ret = RetrievalPolicy(m).full_kv_heads(model)
    assert np.array_equal(ret, want)
    top1 = RetrievalPolicy(m, top=1).full_kv_heads(model)
    l, h = np.unravel_index(np.argmax(m), m.shape)
    assert top1.sum() == 1 and top1[l, h // G]
    rnd = RandomPolicy(m, seed=1).full_kv_heads(model)
    assert rnd.sum() == ret.sum() and not (rnd & ret).any()
    assert np.array_equal(rnd, RandomPolicy(m, seed=1).full_kv_heads(model))
    assert not StreamingPolicy().full_kv_heads(model).any()
    assert FullPolicy().full_kv_heads(model).all()
    assert isinstance(build_cache(FullPolicy(), model), DynamicCache)
    assert not isinstance(build_cache(FullPolicy(), model), RetrievalHeadCache)
    assert isinstance(build_cache(StreamingPolicy(), model), RetrievalHeadCache)
    assert set(policy_names()) == {"full", "retrieval", "random", "streaming", "snapkv", "headkv", "hybrid"}
    assert make_policy("random", m, seed=2).describe(model)["full_kv_heads"] == int(ret.sum())


def test_random_draws_differ_by_seed_and_skip_sliding_layers():
    model = _model("gemma3", "rheads")  # layers 0 and 2 slide
    L, H = model.config.num_hidden_layers, model.config.num_attention_heads
    m = np.zeros((L, H))
    m[1, 0] = m[0, 0] = 0.9  # one retrieval head in a full layer, one in a sliding layer
    draws = {tuple(RandomPolicy(m, seed=s).full_kv_heads(model).ravel()) for s in range(6)}
    assert len(draws) > 1
    for d in draws:
        a = np.array(d).reshape(L, -1)
        assert a.sum() == 1 and not a[[0, 2]].any() and not a[1, 0]  # a full layer's non-retrieval head


def test_from_scores_and_factory(tmp_path):
    model = _model("llama", "rheads")
    m = _scores(model)
    hs = HeadScores(m.shape[0], m.shape[1], {(l, h): [float(m[l, h])] for l in range(m.shape[0])
                                              for h in range(m.shape[1])})
    hs.save(tmp_path / "scores.json")
    cache = RetrievalHeadCache.from_scores(model, str(tmp_path / "scores.json"), sink=4, recent=8)
    assert np.array_equal(cache.full_heads, RetrievalPolicy(m).full_kv_heads(model))
    ids, mask = _batch(30)
    with torch.no_grad():  # the spelling: past_key_values=
        model.generate(ids, attention_mask=mask, max_new_tokens=3, do_sample=False, pad_token_id=0,
                       past_key_values=cache)
    assert cache.get_seq_length() == 32 and cache.peak_bytes == expected_bytes(model.config, cache.full_heads, 32, 4, 8)
    f = CacheFactory(make_policy("streaming"), 4, 8)
    _generate(model, ids, mask, f(model, 1))
    assert f.held_bytes() == expected_bytes(model.config, np.zeros_like(m[:, :2], dtype=bool), 35, 4, 8)


# ------------------------------------------------------------------------------------------- errors


def test_errors_are_one_line():
    model = _model("llama", "rheads")
    with pytest.raises(RHeadsError, match="layers x"):
        RetrievalHeadCache.from_scores(model, np.zeros((5, 4)))  # another model's shape
    with pytest.raises(RHeadsError, match="rheads"):
        RetrievalHeadCache.from_scores(_model("llama"), _scores(model))  # sdpa, not the registered attention
    for sink, recent in ((0, 0), (-1, 4)):
        with pytest.raises(RHeadsError, match="sink"):
            RetrievalHeadCache.from_scores(model, _scores(model), sink=sink, recent=recent)
    with pytest.raises(RHeadsError, match="unknown KV policy"):
        make_policy("lru")
    ids, mask = _batch(20)
    cache = RetrievalHeadCache(model.config, _mixed(model), sink=2, recent=4)
    with pytest.raises(RHeadsError, match="compressed KV cache"):
        with AttentionController(ablate={0: [1]}).activate(model):
            _generate(model, ids, mask, cache)
    with pytest.raises(RHeadsError) as e:
        RetrievalPolicy(_scores(model), top=-1)
    assert "\n" not in str(e.value)


def test_plain_controller_is_allowed():
    """NIAH runs under an empty controller (nothing recorded or masked): the compressed cache accepts it."""
    model = _model("qwen2", "rheads")
    ids, mask = _batch(30)
    _, want = _generate(model, ids, mask, RetrievalHeadCache(model.config, _mixed(model), sink=2, recent=4))
    with AttentionController().activate(model):
        _, got = _generate(model, ids, mask, RetrievalHeadCache(model.config, _mixed(model), sink=2, recent=4))
    assert torch.equal(got, want)


# ------------------------------------------------------------------------------------------- one cache per call


def test_a_used_cache_is_refused_and_reset_makes_it_fresh():
    model = _model("llama", "rheads")
    ids, mask = _batch(30, pads=(0, 5))
    fresh = RetrievalHeadCache(model.config, _mixed(model), sink=2, recent=5)
    want_tok, want = _generate(model, ids, mask, fresh)
    used = RetrievalHeadCache(model.config, _mixed(model), sink=2, recent=5)
    _generate(model, ids, mask, used)
    with pytest.raises(RHeadsError, match="already holds 35 tokens of an earlier generate call") as e:
        _generate(model, ids, mask, used)
    assert "\n" not in str(e.value)
    used.reset()
    assert used.get_seq_length() == 0 and used.nbytes() == 0 and used.peak_bytes == 0
    tok, got = _generate(model, ids, mask, used)
    assert torch.equal(tok, want_tok) and torch.equal(got, want)
    assert used.peak_bytes == fresh.peak_bytes


def test_the_documented_snippet_warns_nothing_about_the_cache_argument():
    """README: `from retrieval_heads import RetrievalHeadCache` and `model.generate(ids, ..., cache=cache)`."""
    import warnings

    from retrieval_heads import RetrievalHeadCache as FromPackage

    assert FromPackage is RetrievalHeadCache
    model = _model("llama", "rheads")
    scores = _scores(model)
    cache = FromPackage.from_scores(model, scores, sink=4, recent=8)
    ids, _ = _batch(20)
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        output = model.generate(ids, max_new_tokens=5, cache=cache, do_sample=False, pad_token_id=0)
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]
    assert output.shape == (1, 25) and cache.peak_bytes == cache.nbytes() > 0
