"""The `rheads` attention against the model's own attention (the oracle), on tiny random models."""

import pytest
import torch

from retrieval_heads.capture.attention import use_rheads
from retrieval_heads.capture.controller import AttentionController
from tiny import FAMILIES, tiny_model

FAMS = list(FAMILIES)


def _pair(family):
    ref = tiny_model(family, "sdpa")
    ours = use_rheads(tiny_model(family, "sdpa"))
    return ref, ours


def _ids(n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 64, (1, n), generator=g)  # ids 0-2 are pad/bos/eos: generate() would mask pads


@pytest.mark.parametrize("family", FAMS)
def test_capture_is_identity_on_logits_and_generation(family):
    ref, ours = _pair(family)
    ids = _ids()
    with torch.no_grad():
        ref_out = ref.generate(ids, max_new_tokens=8, do_sample=False, output_logits=True, return_dict_in_generate=True)
        ctl = AttentionController(capture=True)
        with ctl.activate():
            our_out = ours.generate(ids, max_new_tokens=8, do_sample=False, output_logits=True,
                                    return_dict_in_generate=True)
    assert torch.equal(ref_out.sequences, our_out.sequences)
    diff = max((a - b).abs().max().item() for a, b in zip(ref_out.logits, our_out.logits))
    assert diff <= 1e-4
    assert ctl.top1_positions().shape[1] == ours.config.num_hidden_layers


@pytest.mark.parametrize("family", FAMS)
def test_top1_matches_eager_output_attentions(family):
    _, ours = _pair(family)
    eager = tiny_model(family, "eager")
    ids = _ids(48)
    n_new = 6
    ctl = AttentionController(capture=True)
    with torch.no_grad(), ctl.activate():
        seq = ours.generate(ids, max_new_tokens=n_new, do_sample=False)
    got = ctl.top1_positions()[:, :, 0]  # [steps, L, H]
    assert got.shape[0] == n_new
    with torch.no_grad():
        att = eager(seq[:, :-1], output_attentions=True).attentions  # L x [1, H, q, k]
    n = ids.shape[1]
    for layer, a in enumerate(att):
        rows = a[0, :, n - 1:, :]  # [H, steps, k] rows of the queries that produced each new token
        expect = rows.argmax(-1).T  # [steps, H]
        top2 = rows.topk(2, dim=-1).values
        clear = (top2[..., 0] - top2[..., 1]).T > 1e-4  # ignore near-ties
        assert clear.float().mean() > 0.8
        assert torch.equal(got[:, layer][clear], expect[clear].to(got.dtype)), f"layer {layer}"


@pytest.mark.parametrize("family", ["mistral", "gemma3"])
def test_sliding_window_and_causal_masks_hold(family):
    _, ours = _pair(family)
    cfg = ours.config
    window = cfg.sliding_window
    ids = _ids(30)
    ctl = AttentionController(capture=True)
    with torch.no_grad(), ctl.activate():
        ours.generate(ids, max_new_tokens=8, do_sample=False)
    pos = ctl.top1_positions()[:, :, 0]  # [steps, L, H]
    types = getattr(cfg, "layer_types", None) or ["sliding_attention"] * cfg.num_hidden_layers
    for step in range(pos.shape[0]):
        q = ids.shape[1] - 1 + step  # position of the query that produced token `step`
        for layer, kind in enumerate(types):
            p = pos[step, layer]
            assert (p <= q).all()
            if kind == "sliding_attention":
                assert (p > q - window).all(), (step, layer, p, q)
    # full layers do look beyond the window somewhere, or the test proves nothing
    full = [l for l, t in enumerate(types) if t == "full_attention"]
    if full:
        assert any((pos[s, l] <= ids.shape[1] - 1 + s - window).any() for s in range(pos.shape[0]) for l in full)
