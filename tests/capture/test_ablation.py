"""Head ablation against hand-made references (forward hooks on an untouched SDPA model), and mask specs.

The reference never goes through the `rheads` attention: it edits the input of `o_proj` (the per-head
attention outputs, [B, q, H*D]) with a forward pre-hook, using V captured from `v_proj` for `uniform`.
"""

from __future__ import annotations

import pytest
import torch

from retrieval_heads.capture.attention import use_rheads
from retrieval_heads.capture.controller import AttentionController, collect_means
from retrieval_heads.errors import RHeadsError
from tiny import FAMILIES, tiny_model

FAMS = list(FAMILIES)
ATOL = 1e-5


def _ids(n=30, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 64, (1, n), generator=g)  # ids 0-2 are pad/bos/eos: generate() would mask pads


def _dims(model):
    cfg = model.config
    H, KV = cfg.num_attention_heads, cfg.num_key_value_heads
    D = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
    return H, KV, D


def _windows(model) -> list[int | None]:
    """Per layer: the sliding window (keys q-w+1 .. q visible), or None for full causal attention."""
    cfg = model.config
    window = getattr(cfg, "sliding_window", None)
    types = getattr(cfg, "layer_types", None) or ["sliding_attention" if window else "full_attention"] \
        * cfg.num_hidden_layers
    return [window if t == "sliding_attention" else None for t in types]


class Reference:
    """Hooks on a plain SDPA model that replace chosen heads' slices of the o_proj input.

    mode zero: 0; uniform: mean of the head's V over the keys it may see (causal, and the last `window`
    positions on sliding layers), with V from a v_proj hook accumulated across decoding steps; mean: given
    per-layer [H, D] vectors; layer: zero the whole input (all heads).
    """

    def __init__(self, model, ablate: dict[int, list[int]], mode: str, means=None, ignore_window: bool = False):
        self.model, self.ablate, self.mode, self.means = model, ablate, mode, means
        self.H, self.KV, self.D = _dims(model)
        self.windows = [None] * len(model.model.layers) if ignore_window else _windows(model)
        self.v: dict[int, torch.Tensor] = {}  # layer -> [B, N so far, KV, D]
        self.handles = []

    def __enter__(self):
        for layer in self.ablate:
            attn = self.model.model.layers[layer].self_attn
            self.handles.append(attn.v_proj.register_forward_hook(self._v_hook(layer)))
            self.handles.append(attn.o_proj.register_forward_pre_hook(self._o_hook(layer)))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()

    def reset(self):
        self.v = {}

    def _v_hook(self, layer):
        def hook(mod, args, out):
            B, q, _ = out.shape
            v = out.view(B, q, self.KV, self.D)  # [B, q, KV, D]
            self.v[layer] = v if layer not in self.v else torch.cat([self.v[layer], v], dim=1)

        return hook

    def _o_hook(self, layer):
        def hook(mod, args):
            x = args[0]
            B, q, _ = x.shape
            x = x.view(B, q, self.H, self.D).clone()  # [B, q, H, D]
            for h in self.ablate[layer]:
                if self.mode == "zero":
                    x[:, :, h] = 0
                elif self.mode == "mean":
                    x[:, :, h] = self.means[layer][h]
                elif self.mode == "uniform":
                    v = self.v[layer][:, :, h // (self.H // self.KV)]  # [B, N, D]
                    N = v.shape[1]
                    w = self.windows[layer]
                    for r in range(q):
                        i = N - q + r  # absolute position of this query
                        lo = 0 if w is None else max(0, i - w + 1)
                        x[:, r, h] = v[:, lo : i + 1].mean(dim=1)
            return (x.view(B, q, self.H * self.D),)

        return hook


def _pair(family):
    return tiny_model(family, "sdpa"), use_rheads(tiny_model(family, "sdpa"))


def _logits_ours(model, ids, ablate, mode, means=None):
    with torch.no_grad(), AttentionController(ablate=ablate, mode=mode, means=means or {}).activate():
        return model(ids).logits


def _logits_ref(model, ids, ablate, mode, means=None, **kw):
    with torch.no_grad(), Reference(model, ablate, mode, means, **kw):
        return model(ids).logits


def _gen_ours(model, ids, ablate, mode, means=None, n=6):
    with torch.no_grad(), AttentionController(ablate=ablate, mode=mode, means=means or {}).activate():
        return model.generate(ids, max_new_tokens=n, do_sample=False, output_logits=True, return_dict_in_generate=True)


def _gen_ref(model, ids, ablate, mode, means=None, n=6):
    with torch.no_grad(), Reference(model, ablate, mode, means):
        return model.generate(ids, max_new_tokens=n, do_sample=False, output_logits=True, return_dict_in_generate=True)


def _means_by_hand(model, ids) -> dict[int, torch.Tensor]:
    """Each head's mean o_proj input slice [H, D] per layer, from a pre-hook on the plain model."""
    H, _, D = _dims(model)
    got: dict[int, torch.Tensor] = {}
    handles = []
    for l, layer in enumerate(model.model.layers):
        def hook(mod, args, l=l):
            x = args[0]
            got[l] = x.view(x.shape[0], x.shape[1], H, D).mean(dim=(0, 1))  # [B, q, H, D] -> [H, D]
        handles.append(layer.self_attn.o_proj.register_forward_pre_hook(hook))
    with torch.no_grad():
        model(ids)
    for h in handles:
        h.remove()
    return got


ABLATE = {0: [1], 2: [0, 3]}


# ------------------------------------------------------------------------------------------- identity


@pytest.mark.parametrize("family", FAMS)
@pytest.mark.parametrize("mode", ["zero", "uniform", "mean"])
def test_empty_mask_is_identity_prefill_and_decode(family, mode):
    ref, ours = _pair(family)
    ids = _ids()
    means = collect_means(ours, [ids]) if mode == "mean" else None
    with torch.no_grad():
        a = ref(ids).logits
        r = ref.generate(ids, max_new_tokens=5, do_sample=False, output_logits=True, return_dict_in_generate=True)
    for empty in ({}, {1: []}):
        assert torch.equal(a, _logits_ours(ours, ids, empty, mode, means))
        g = _gen_ours(ours, ids, empty, mode, means, n=5)
        assert torch.equal(r.sequences, g.sequences)
        assert all(torch.equal(x, y) for x, y in zip(r.logits, g.logits))


# ------------------------------------------------------------------------------------------- semantics


@pytest.mark.parametrize("family", FAMS)
def test_zero_matches_o_proj_hook(family):
    ref, ours = _pair(family)
    ids = _ids()
    for ablate in ({1: [2]}, ABLATE):
        exp = _logits_ref(ref, ids, ablate, "zero")
        got = _logits_ours(ours, ids, ablate, "zero")
        assert (exp - got).abs().max() <= ATOL
        assert (exp - ref(ids).logits).abs().max() > 1e-3  # the mask does something


@pytest.mark.parametrize("family", FAMS)
def test_uniform_matches_hand_mean_of_v(family):
    ref, ours = _pair(family)
    ids = _ids()
    for ablate in ({1: [2]}, ABLATE):
        exp = _logits_ref(ref, ids, ablate, "uniform")
        got = _logits_ours(ours, ids, ablate, "uniform")
        assert (exp - got).abs().max() <= ATOL, family


@pytest.mark.parametrize("family", ["mistral", "gemma3"])
def test_uniform_respects_sliding_window(family):
    ref, ours = _pair(family)
    ids = _ids(30)  # longer than the windows (6 and 5)
    sliding = [l for l, w in enumerate(_windows(ref)) if w is not None]
    ablate = {sliding[0]: [0, 1]}
    got = _logits_ours(ours, ids, ablate, "uniform")
    windowed = _logits_ref(ref, ids, ablate, "uniform")
    full = _logits_ref(ref, ids, ablate, "uniform", ignore_window=True)
    assert (windowed - got).abs().max() <= ATOL
    assert (full - got).abs().max() > 1e-3  # the window matters here, so the test can tell


@pytest.mark.parametrize("family", FAMS)
def test_mean_matches_hand_computed_means(family):
    ref, ours = _pair(family)
    ref_ids, ids = _ids(40, seed=5), _ids()
    hand = _means_by_hand(ref, ref_ids)
    means = collect_means(ours, [ref_ids])
    for l in hand:
        assert torch.allclose(hand[l], means[l], atol=1e-5)
    exp = _logits_ref(ref, ids, ABLATE, "mean", hand)
    got = _logits_ours(ours, ids, ABLATE, "mean", means)
    assert (exp - got).abs().max() <= ATOL


def test_mean_without_reference_is_an_error():
    _, ours = _pair("llama")
    with pytest.raises(RHeadsError, match="collect_means"):
        _logits_ours(ours, _ids(), {0: [0]}, "mean")


@pytest.mark.parametrize("family", FAMS)
@pytest.mark.parametrize("mode", ["zero", "uniform", "mean"])
def test_prefill_and_decode_match_reference_generate(family, mode):
    ref, ours = _pair(family)
    ids = _ids(24)
    means = collect_means(ours, [_ids(40, seed=5)]) if mode == "mean" else None
    r = _gen_ref(ref, ids, ABLATE, mode, means, n=6)
    g = _gen_ours(ours, ids, ABLATE, mode, means, n=6)
    assert torch.equal(r.sequences, g.sequences)
    assert max((x - y).abs().max().item() for x, y in zip(r.logits, g.logits)) <= ATOL


# ------------------------------------------------------------------------------------------- GQA, whole layer


def _o_inputs(model, ids, layer, ctl):
    H, _, D = _dims(model)
    got = {}
    h = model.model.layers[layer].self_attn.o_proj.register_forward_pre_hook(
        lambda mod, args: got.__setitem__("x", args[0].view(*args[0].shape[:2], H, D).clone()))  # [B, q, H, D]
    with torch.no_grad(), ctl.activate():
        model(ids)
    h.remove()
    return got["x"]


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma3"])  # GQA 4:2, MQA 4:1, GQA 4:2 + sliding
@pytest.mark.parametrize("mode", ["zero", "uniform"])
def test_gqa_masking_one_query_head_leaves_its_group_alone(family, mode):
    _, ours = _pair(family)
    H, KV, _ = _dims(ours)
    assert KV < H
    ids = _ids()
    layer = 1
    base = _o_inputs(ours, ids, layer, AttentionController())
    masked = _o_inputs(ours, ids, layer, AttentionController(ablate={layer: [0]}, mode=mode))
    assert not torch.allclose(base[:, :, 0], masked[:, :, 0])
    for h in range(1, H):  # head 1 shares head 0's KV head; none of the others may move
        assert torch.equal(base[:, :, h], masked[:, :, h]), h


@pytest.mark.parametrize("family", FAMS)
def test_masking_every_head_of_a_layer_removes_its_attention(family):
    ref, ours = _pair(family)
    H, _, _ = _dims(ours)
    ids = _ids()
    layer = 1
    attn = ref.model.layers[layer].self_attn

    def drop(mod, args, out):
        return (torch.zeros_like(out[0]),) + tuple(out[1:])  # the attention block adds nothing to the residual

    handle = attn.register_forward_hook(drop)
    with torch.no_grad():
        exp = ref(ids).logits
    handle.remove()
    got = _logits_ours(ours, ids, {layer: list(range(H))}, "zero")
    assert (exp - got).abs().max() <= ATOL
