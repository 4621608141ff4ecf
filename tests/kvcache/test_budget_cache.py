"""The budget cache (`kvcache/select.py`) and the budget policies (snapkv, headkv, hybrid; retrieval, random and
streaming at a budget) on tiny random models of the four families.

Oracles: transformers' own DynamicCache (a budget of 1 keeps everything: the same tokens and logits); an
independent masked attention over a full cache (`kvsel` below: per KV head, the prompt slots the budget cache kept,
every generated slot, float64); SnapKV's pick written out in numpy from the paper's recipe; and the allocators'
sums against the budget.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AttentionInterface, AutoModelForCausalLM, DynamicCache, MistralConfig
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from retrieval_heads.capture.attention import use_rheads
from retrieval_heads.errors import ParamError, RHeadsError
from retrieval_heads.kvcache import KVConfig
from retrieval_heads.kvcache.budget import FULL, SNAP, WINDOW, full_then, total, uniform_snap, weighted_snap
from retrieval_heads.kvcache.cache import full_cache_bytes, prefill_chunking
from retrieval_heads.kvcache.select import SNAP_KERNEL, SNAP_WINDOW, SelectLayer, select_bytes, snap_scores
from tiny import COMMON, FAMILIES, tiny_model

FAMS = ["llama", "qwen2", "gemma3", "mistral-full"]  # (tiny Mistral with its window has no full-attention layer)
BUDGETED = ["snapkv", "headkv", "hybrid", "retrieval", "random", "streaming"]
N, NEW = 80, 6


def _model(family):
    if family == "mistral-full":
        torch.manual_seed(0)
        m = AutoModelForCausalLM.from_config(MistralConfig(**COMMON, num_key_value_heads=4, sliding_window=None),
                                             attn_implementation="sdpa", dtype=torch.float32).eval()
        with torch.no_grad():
            for name, p in m.named_parameters():
                if "q_proj.weight" in name or "k_proj.weight" in name:
                    p.mul_(6.0)
        return m
    return tiny_model(family)


def _scores(model, seed=0):
    c = model.config
    return np.random.default_rng(seed).random((c.num_hidden_layers, c.num_attention_heads))


def _batch(n=N, pads=(0,), seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 64, (len(pads), n), generator=g)  # [B, n]
    mask = torch.ones_like(ids)
    for b, p in enumerate(pads):
        ids[b, :p] = 0
        mask[b, :p] = 0
    return ids, mask


def _generate(model, ids, mask, cache, new=NEW):
    with torch.no_grad():
        out = model.generate(ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                             pad_token_id=0, cache=cache, output_logits=True, return_dict_in_generate=True,
                             disable_compile=True)
    return out.sequences[:, ids.shape[1]:], torch.stack(out.logits)  # [B, new], [new, B, V]


def _cache(model, policy, budget, scores, sink=4, recent=16):
    kv = KVConfig(policy=policy, budget=budget, sink=sink, recent=recent).validate(scores)
    return kv.build_policy(scores).build_cache(model, sink, recent)


# ------------------------------------------------------------------------------------------- the masked oracle

SEL: dict = {}  # keep: {layer: [B, KV, W] bool over the prompt's W slots}


def _sel_attention(module, query, key, value, attention_mask, scaling=None, sliding_window=None, **kwargs):
    """Float64 attention over the full cache: a KV head's queries after the prompt see only the prompt slots it
    kept, and every generated slot; the prompt itself attends as the model does."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if sliding_window is not None or key.shape[2] <= SEL["width"]:  # sliding layers, and the prefill: the model's own
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    B, H, q, D = query.shape
    KV, k = key.shape[1], key.shape[2]
    G = H // KV
    keep = SEL["keep"][module.layer_idx]  # [B, KV, W]
    vis = torch.cat([keep, torch.ones(B, KV, k - SEL["width"], dtype=torch.bool)], dim=2)  # [B, KV, k]
    vis = vis.repeat_interleave(G, dim=1)[:, :, None, :].expand(B, H, q, k)  # [B, H, q, k]
    kk = key.double().repeat_interleave(G, dim=1)  # [B, H, k, D]
    vv = value.double().repeat_interleave(G, dim=1)
    w = (query.double() @ kk.transpose(-1, -2)) * (scaling or D ** -0.5)  # [B, H, q, k]
    w = w.masked_fill(~vis, float("-inf")).softmax(-1)
    return (w @ vv).to(query.dtype).transpose(1, 2).contiguous(), None  # [B, q, H, D]


def _kept_masks(cache, B: int, width: int, pads) -> dict[int, torch.Tensor]:
    """{layer: [B, KV, width] bool} of the prompt slots each KV head of the budget cache kept (padding never)."""
    out = {}
    for l, layer in enumerate(cache.layers):
        if not isinstance(layer, SelectLayer):
            continue
        m = torch.zeros(B, layer.num_kv_heads, width, dtype=torch.bool)
        for h, kept in enumerate(layer.kept):
            for b in range(B):
                slots = kept[b][kept[b] >= 0]
                m[b, h, slots] = True
                assert not m[b, h, : pads[b]].any()  # padding is never kept
        out[l] = m
    return out


# ------------------------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("family", FAMS)
@pytest.mark.parametrize("policy", BUDGETED)
def test_a_budget_of_one_is_the_full_cache(family, policy):
    model = use_rheads(_model(family))
    ids, mask = _batch()
    ref_tok, ref_logits = _generate(model, ids, mask, DynamicCache(config=model.config))
    tok, logits = _generate(model, ids, mask, _cache(model, policy, 1.0, _scores(model)))
    assert torch.equal(tok, ref_tok)
    assert torch.allclose(logits, ref_logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMS)
@pytest.mark.parametrize("policy,budget", [("snapkv", 0.4), ("headkv", 0.4), ("hybrid", 0.5), ("retrieval", 0.5),
                                           ("streaming", 0.3)])
def test_a_small_budget_matches_the_masked_oracle(family, policy, budget):
    model = use_rheads(_model(family))
    pads = (0, 9)
    ids, mask = _batch(pads=pads)
    cache = _cache(model, policy, budget, _scores(model))
    tok, logits = _generate(model, ids, mask, cache)
    kept = _kept_masks(cache, len(pads), N, pads)
    assert kept and any(not m[b, :, p:].all() for m in kept.values() for b, p in enumerate(pads))  # something dropped
    AttentionInterface.register("kvsel", _sel_attention)
    AttentionMaskInterface.register("kvsel", sdpa_mask)
    ref = _model(family)
    ref.set_attn_implementation("kvsel")
    SEL.update(keep=kept, width=N)
    with torch.no_grad():  # teacher-force the budget cache's tokens through the oracle, one step at a time
        seq, am, past = ids, mask, DynamicCache(config=ref.config)
        out = ref(input_ids=seq, attention_mask=am, cache=past, use_cache=True)
        steps = [out.logits[:, -1]]
        for t in range(NEW - 1):
            am = torch.cat([am, torch.ones(len(pads), 1, dtype=am.dtype)], dim=1)
            out = ref(input_ids=tok[:, t: t + 1], attention_mask=am, cache=past, use_cache=True)
            steps.append(out.logits[:, -1])
    assert torch.allclose(logits, torch.stack(steps), atol=1e-4, rtol=1e-4)


def test_batch_rows_match_single_prompts():
    """Rows of a left-padded batch are independent: each row of the batch gives what its real tokens give alone,
    unpadded (its own length's allotment, its picks from its own tokens), and keeps within the budget of its own
    length, whatever rows stand beside it."""
    model = use_rheads(_model("llama"))
    scores = _scores(model)
    pads = (0, 7, 15)
    ids, mask = _batch(pads=pads)
    for policy, budget in (("snapkv", 0.4), ("headkv", 0.4), ("hybrid", 0.5), ("retrieval", 0.5),
                           ("streaming", 0.3)):
        cache = _cache(model, policy, budget, scores)
        together, lt = _generate(model, ids, mask, cache)
        kept = _kept_masks(cache, len(pads), N, pads)
        for b, p in enumerate(pads):
            alone, la = _generate(model, ids[b:b + 1, p:], mask[b:b + 1, p:], _cache(model, policy, budget, scores))
            assert torch.equal(together[b], alone[0]), (policy, b)
            assert torch.allclose(lt[:, b], la[:, 0], atol=1e-4)
            held = sum(int(m[b].sum()) for m in kept.values())
            KV = model.config.num_key_value_heads
            assert held <= max(int(np.floor(budget * (N - p))), 1) * KV * len(kept), (policy, b, held)


# ------------------------------------------------------------------------------------------- SnapKV's pick


def _snap_reference(q, k, real, window, kernel, scaling):
    """SnapKV's recipe in numpy, per row and KV head: softmax of the last `window` queries over the causal, real
    keys; summed over the window and the group; mean-pooled with zero padding; -inf on padding."""
    B, H, n, D = q.shape
    KV = k.shape[1]
    G = H // KV
    w = min(window, n)
    out = np.zeros((B, KV, n - w))
    for b in range(B):
        for h in range(KV):
            acc = np.zeros(n)
            for g in range(G):
                for i in range(n - w, n):
                    logits = (k[b, h] @ q[b, h * G + g, i]) * scaling
                    ok = np.array([j <= i and real[b, j] for j in range(n)])
                    if not ok.any():
                        continue
                    e = np.exp(logits - logits[ok].max()) * ok
                    acc += e / e.sum()
            prefix = np.concatenate([np.zeros(kernel // 2), acc[: n - w], np.zeros(kernel // 2)])
            pooled = np.array([prefix[j: j + kernel].sum() / kernel for j in range(n - w)])
            out[b, h] = np.where(real[b, : n - w], pooled, -np.inf)
    return out


def test_snap_scores_follow_the_paper():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 4, 50, 8, generator=g), torch.randn(2, 2, 50, 8, generator=g)
    real = torch.ones(2, 50, dtype=torch.bool)
    real[1, :6] = False
    got = snap_scores(q, k, real, 12, 7, 0.35).numpy()
    want = _snap_reference(q.double().numpy(), k.double().numpy(), real.numpy(), 12, 7, 0.35)
    assert np.array_equal(np.isinf(got), np.isinf(want))
    assert np.allclose(got[np.isfinite(got)], want[np.isfinite(want)], atol=1e-5)
    assert (SNAP_WINDOW, SNAP_KERNEL) == (32, 7)  # the documented defaults


def test_snapkv_keeps_its_window_and_the_best_pooled_positions():
    model = use_rheads(_model("llama"))
    ids, mask = _batch()
    cache = _cache(model, "snapkv", 0.5, None)
    _generate(model, ids, mask, cache, new=2)
    layer = next(l for l in cache.layers if isinstance(l, SelectLayer))
    for kept in layer.kept:
        slots = kept[0].tolist()
        assert len(slots) == 40 and slots[-SNAP_WINDOW:] == list(range(N - SNAP_WINDOW, N))  # floor(0.5 * 80)
        assert slots == sorted(slots[:-SNAP_WINDOW]) + slots[-SNAP_WINDOW:]


# ------------------------------------------------------------------------------------------- budgets and bytes


@pytest.mark.parametrize("n", [5, 33, 80, 1000])
@pytest.mark.parametrize("budget", [0.01, 0.1, 0.37, 0.9])
def test_every_allocator_stays_within_its_budget(n, budget):
    usable = np.array([True, False, True, True])
    weights = np.random.default_rng(n).random((4, 3))
    heads = int(usable.sum()) * 3
    allowed = max(total(n, budget, heads), heads)  # at least one position per head
    order = [(l, h) for l in range(4) for h in range(3)]
    for al in (uniform_snap(n, budget, usable, 3, SNAP_WINDOW), weighted_snap(n, budget, usable, weights, SNAP_WINDOW),
               full_then(n, budget, usable, 3, order, SNAP, window=SNAP_WINDOW),
               full_then(n, budget, usable, 3, order, WINDOW, window=0, sink=4, recent=16)):
        assert al.kept(usable) <= allowed and (al.counts[usable] >= 1).all() and (al.counts[usable] <= n).all()
        assert ((al.modes[usable] == FULL) == (al.counts[usable] == n)).all()


def test_headkv_follows_the_scores_and_hybrid_keeps_the_retrieval_heads():
    usable = np.ones(3, dtype=bool)
    weights = np.array([[0.0, 0.9], [0.3, 0.0], [0.1, 0.6]])
    al = weighted_snap(1000, 0.2, usable, weights, SNAP_WINDOW)
    c = al.counts
    assert c[0, 1] > c[2, 1] > c[1, 0] > c[2, 0] > c[0, 0] == SNAP_WINDOW and c.sum() <= 200 * 6
    order = [(0, 1), (2, 1)]
    al = full_then(1000, 0.5, usable, 2, order, SNAP, window=SNAP_WINDOW)
    assert al.modes[0, 1] == al.modes[2, 1] == FULL and (al.modes[[0, 1, 1, 2], [0, 0, 1, 0]] == SNAP).all()
    assert al.counts.sum() <= 500 * 6 and al.counts[1, 0] == (3000 - 2000) // 4
    tight = full_then(1000, 0.15, usable, 2, order, SNAP, window=SNAP_WINDOW)  # one full head would not fit
    assert not (tight.modes == FULL).any()


@pytest.mark.parametrize("family", FAMS)
@pytest.mark.parametrize("policy", ["snapkv", "headkv", "hybrid", "retrieval"])
def test_bytes_match_the_formula_and_the_budget(family, policy):
    model = use_rheads(_model(family))
    ids, mask = _batch()
    budget = 0.3
    cache = _cache(model, policy, budget, _scores(model))
    _generate(model, ids, mask, cache)
    al = cache.allotment(N)
    assert cache.nbytes() == select_bytes(model.config, al, N, NEW - 1)  # the last token is never fed back
    full = full_cache_bytes(model.config, N + NEW - 1)
    assert cache.peak_bytes == cache.nbytes() < full
    usable = [l for l, layer in enumerate(cache.layers) if isinstance(layer, SelectLayer)]
    KV = model.config.num_key_value_heads
    assert al.counts[usable].sum() <= max(int(budget * N), 1) * KV * len(usable)


# ------------------------------------------------------------------------------------------- refusals


def test_bad_budgets_are_one_line():
    scores = np.ones((3, 4))
    for kv, param in ((KVConfig(policy="snapkv"), "kv.policy"), (KVConfig(policy="full", budget=0.5), "kv.budget"),
                      (KVConfig(policy="snapkv", budget=1.5), "kv.budget"), (KVConfig(policy="snapkv", budget=0), "kv.budget"),
                      (KVConfig(policy="hybrid", budget=0.5, prefill_chunk=16), "kv.prefill_chunk"),
                      (KVConfig(policy="snapkv", budget=0.5, prefill="window"), "kv.prefill")):
        with pytest.raises(ParamError) as e:
            kv.validate(scores)
        assert e.value.param == param and "\n" not in str(e.value)
    with pytest.raises(ParamError, match="needs retrieval scores"):
        KVConfig(policy="headkv", budget=0.5).validate(None)


def test_a_chunked_prefill_is_refused_at_run_time():
    model = use_rheads(_model("llama"))
    ids, mask = _batch()
    with prefill_chunking(model, 16), pytest.raises(RHeadsError, match="one token per call"):
        _generate(model, ids, mask, _cache(model, "snapkv", 0.5, None))


@pytest.mark.parametrize("policy", BUDGETED + ["retrieval@none"])
def test_a_dropped_budget_cache_is_freed_without_the_cyclic_gc(policy):
    """Its layers hold the cache's settings, not the cache: no cycle keeps a prompt's keys alive until the next
    collection (the 8K sweeps grew to 15 GB that way)."""
    import gc
    import weakref

    model = use_rheads(_model("llama"))
    ids, mask = _batch()
    if policy.endswith("@none"):  # no budget: the retrieval-head cache (sink + recent for the other heads)
        cache = _cache(model, policy.split("@")[0], None, _scores(model))
    else:
        cache = _cache(model, policy, 0.5, _scores(model))
    _generate(model, ids, mask, cache)
    assert cache.get_seq_length() == N + NEW - 1
    refs = [weakref.ref(cache)] + [weakref.ref(layer) for layer in cache.layers]  # the layers hold the keys
    was = gc.isenabled()
    gc.disable()
    try:
        del cache
        assert all(r() is None for r in refs)
    finally:
        if was:
            gc.enable()
