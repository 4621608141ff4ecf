"""The capture runtime as real users run it: static caches, recorders against eager attention, teacher forcing,
layers left to plain SDPA, bfloat16, layers on several devices, and a compiled model refused."""

import pytest
import torch
from transformers import DynamicCache, StaticCache

from retrieval_heads.errors import RHeadsError
from retrieval_heads.capture import attention as attention_mod
from retrieval_heads.capture.attention import use_rheads
from retrieval_heads.capture.controller import AttentionController
from retrieval_heads.capture.recorders import Entropy, PrevToken, SpanMass, Top1
from tiny import FAMILIES, tiny_model

FAMS = list(FAMILIES)


def _ids(n=30, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 64, (1, n), generator=g)  # [1, n]


def _generate(model, ids, ctl, n_new=8, cache=None):
    with torch.no_grad(), ctl.activate(model):
        return model.generate(ids, max_new_tokens=n_new, do_sample=False, cache=cache, disable_compile=True,
                              attention_mask=torch.ones_like(ids))


@pytest.mark.parametrize("family", FAMS)
def test_static_cache_gives_the_positions_of_a_dynamic_cache(family):
    """StaticLayer returns its whole buffer and StaticSlidingWindowLayer rolls (sequence 38 > windows 5-6)."""
    model = use_rheads(tiny_model(family))
    ids = _ids(30)
    dyn, sta = AttentionController(capture=True), AttentionController(capture=True)
    a = _generate(model, ids, dyn, cache=DynamicCache(config=model.config))
    b = _generate(model, ids, sta, cache=StaticCache(config=model.config, max_cache_len=48))
    assert torch.equal(a, b)
    assert torch.equal(dyn.top1_positions(), sta.top1_positions())


def _eager_rows(family, seq, n):
    """Eager attention weights (the oracle) of the rows that produced the generated tokens: L x [H, T, k]."""
    eager = tiny_model(family, "eager")
    with torch.no_grad():
        att = eager(seq[:, :-1], output_attentions=True).attentions  # L x [1, H, q, k]
    return [a[0, :, n - 1:, :].double() for a in att]


@pytest.mark.parametrize("family", FAMS)
def test_recorders_match_eager_attention(family):
    model = use_rheads(tiny_model(family))
    ids = _ids(30)
    n = ids.shape[1]
    spans = torch.tensor([[[5, 15], [n, 10 ** 9]]])  # [B=1, S=2, 2]: a context span, and the generated text
    mass, ent, prev = SpanMass(spans, heads={1: [0, 2]}), Entropy(), PrevToken(heads={0: [1, 3]})
    seq = _generate(model, ids, AttentionController(recorders=[mass, ent, prev]), n_new=6)
    rows = _eager_rows(family, seq, n)
    got = mass.result()
    assert list(got) == [1] and got[1].shape == (1, 6, 2, 2)  # [B, T, h, S]
    k = rows[1].shape[-1]
    slot = torch.arange(k)
    for s, (lo, hi) in enumerate([(5, 15), (n, 10 ** 9)]):
        want = rows[1][[0, 2]][..., (slot >= lo) & (slot < hi)].sum(-1).T  # [T, h]
        assert torch.allclose(got[1][0, :, :, s].double(), want, atol=1e-5)
    for layer, r in enumerate(rows):
        p = r.clamp_min(1e-30)
        want = -(r * p.log()).sum(-1).T  # [T, H]
        assert torch.allclose(ent.result()[layer][0].double(), want, atol=1e-4), layer
    q = torch.arange(6) + n - 1  # the slot of each recorded row
    want = rows[0][[1, 3]][:, torch.arange(6), q - 1].T  # [T, h]
    assert torch.allclose(prev.result()[0][0].double(), want, atol=1e-5)


@pytest.mark.parametrize("family", FAMS)
def test_teacher_forced_rows_equal_the_generation_rows(family):
    model = use_rheads(tiny_model(family))
    ids = _ids(30)
    n = ids.shape[1]
    live = AttentionController(capture=True)
    seq = _generate(model, ids, live, n_new=6)
    forced = AttentionController(capture=True, rows=(n - 1, n + 5))
    with torch.no_grad(), forced.activate(model):
        model(seq[:, :-1])  # one forward pass over prompt + answer
    assert torch.equal(forced.top1_positions(), live.top1_positions())


def test_layers_without_recorders_run_plain_sdpa(monkeypatch):
    model = use_rheads(tiny_model("llama"))
    calls = []
    real = attention_mod.row_logits
    monkeypatch.setattr(attention_mod, "row_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    top = Top1(heads={1: [0, 3]})
    _generate(model, _ids(20), AttentionController(recorders=[top]), n_new=4)
    assert len(calls) == 4  # layer 1 only, once per forward call
    assert list(top.result()) == [1] and top.result()[1].shape == (1, 4, 2)


@pytest.mark.parametrize("family", FAMS)
def test_bfloat16_top1_matches_eager_except_ties_and_logits_are_close(family):
    model = use_rheads(tiny_model(family).to(torch.bfloat16))
    eager = tiny_model(family, "eager").to(torch.bfloat16)
    ids = _ids(40)
    n = ids.shape[1]
    ctl = AttentionController(capture=True)
    with torch.no_grad(), ctl.activate(model):
        out = model.generate(ids, max_new_tokens=6, do_sample=False, output_logits=True, return_dict_in_generate=True,
                             attention_mask=torch.ones_like(ids), disable_compile=True)
    got = ctl.top1_positions()[:, :, 0]  # [T, L, H]
    with torch.no_grad():
        ref = eager(out.sequences[:, :-1], output_attentions=True)
    checked = 0
    for layer, a in enumerate(ref.attentions):
        rows = a[0, :, n - 1:, :].float()  # [H, T, k]
        top2 = rows.topk(2, dim=-1).values
        clear = ((top2[..., 0] - top2[..., 1]) > 2 ** -6 * top2[..., 0]).T  # bf16 keeps 8 bits: closer is a tie
        checked += int(clear.sum())
        assert torch.equal(got[:, layer][clear], rows.argmax(-1).T[clear].to(got.dtype)), f"layer {layer}"
    assert checked > 0.5 * got.numel()
    ours = torch.stack(out.logits).float()  # [T, 1, V] logits of each decoding step
    want = ref.logits[0, n - 1:].float()  # [T, V] eager logits at the same positions
    assert (ours[:, 0] - want).abs().max() <= 0.05 * want.abs().max()


def test_layers_on_several_devices_are_gathered_before_joining():
    top = Top1()
    top.data = {0: [torch.zeros(1, 1, 2, dtype=torch.int32, device="meta")],
                1: [torch.zeros(1, 1, 2, dtype=torch.int32), torch.ones(1, 1, 2, dtype=torch.int32)]}
    top.seen = {0: 2, 1: 2}
    out = top.result(device="meta")  # joining a CPU piece to a meta piece first would raise
    assert {t.device.type for t in out.values()} == {"meta"} and out[1].shape == (1, 2, 2)


def test_out_of_range_positions_are_an_error():
    top = Top1()
    top.data, top.seen = {0: [torch.tensor([[[5]]], dtype=torch.int32)]}, {0: 5}
    with pytest.raises(RuntimeError, match="outside 0..4"):
        top.result()


def test_a_compiled_model_is_refused_in_one_line():
    model = use_rheads(tiny_model("llama"))
    compiled = torch.compile(model)  # nothing is compiled until it runs
    with pytest.raises(RHeadsError, match="compiled") as e:
        with AttentionController(capture=True).activate(compiled):
            pass
    assert "\n" not in str(e.value)


def test_results_can_be_read_while_generating():
    from retrieval_heads.capture.decoding import generate_batch

    model = use_rheads(tiny_model("llama"))
    top = Top1(heads={2: [1]})
    ctl = AttentionController(recorders=[top])
    seen = []
    gens = generate_batch(model, [_ids(20)[0].tolist(), _ids(15, seed=2)[0].tolist()], 5, [], ctl, 0,
                          on_step=lambda t, toks: seen.append((t, toks.clone(), top.step(t)[2].clone())))
    assert [t for t, _, _ in seen] == [0, 1, 2, 3, 4]
    final = top.result()[2]  # [B, T, h]
    for t, toks, row in seen:
        assert torch.equal(row, final[:, t]) and toks.tolist() == [g.tokens[t] for g in gens]


@pytest.mark.parametrize("family", FAMS)
def test_a_left_padded_batch_captures_what_each_prompt_captures_alone(family):
    from retrieval_heads.capture.decoding import generate_batch

    model = use_rheads(tiny_model(family))
    prompts = [_ids(n, seed=n)[0].tolist() for n in (25, 18, 31)]
    batch = AttentionController(capture=True)
    together = generate_batch(model, prompts, 6, [], batch, 0)
    slots = batch.top1_positions()  # [T, L, B, H] slots of the padded batch
    width = max(map(len, prompts))
    for b, p in enumerate(prompts):
        alone = AttentionController(capture=True)
        single = generate_batch(model, [p], 6, [], alone, 0)[0]
        assert together[b].tokens == single.tokens
        assert torch.equal(slots[:, :, b] - (width - len(p)), alone.top1_positions()[:, :, 0])
