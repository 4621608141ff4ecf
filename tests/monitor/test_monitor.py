"""The Monitor on a tiny random Llama, against an oracle: the model's own eager attention over the same sequence.

Checked: per token, each head set's copy share (top-1 on a context / question token equal to the emitted one),
its mass on the context, the lookback ratios, the log-probabilities and RAUQ; streaming, synchronous and
teacher-forced runs agree; leaving a stream early stops the generation; score files of another shape and files
without retrieval heads are refused in one line."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from retrieval_heads.errors import RHeadsError
from retrieval_heads.monitor import Monitor
from retrieval_heads.monitor.signals.rauq import rauq
from monitor_helpers import RETRIEVAL, make_scores

CONTEXT = ("The river town had an old market and quiet stone houses. The key to the Ashcombe observatory is kept "
           "under a loose floor tile. Children laughed across the bridge in the winter morning light.")
QUESTION = "Where is the key to the Ashcombe observatory kept?"
ALL = [(l, h) for l in range(3) for h in range(4)]


@pytest.fixture(scope="module")
def eager(model):
    cfg = copy.deepcopy(model.config)  # from_config would switch the shared config to eager
    m = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32).eval()
    m.load_state_dict(model.state_dict())
    return m


@pytest.fixture(scope="module")
def mon(model, tok, scores):
    return Monitor(model, tok, scores, compare={"all": ALL}, baselines=True, max_new_tokens=8)


def _oracle(eager, prompt, tokens):
    """Per answer token and head (in (layer, head) order): top-1 slot, context mass, lookback ratio, prev-token
    attention of the next row; from one eager pass over prompt + answer."""
    n, T = prompt.n, len(tokens)
    ids = torch.tensor([prompt.input_ids + tokens])
    with torch.no_grad():
        att = eager(ids, output_attentions=True).attentions  # L x [1, H, n+T, n+T]
    A = torch.stack([a[0] for a in att])  # [L, H, q, k]
    rows = A[:, :, n - 1:n - 1 + T]  # [L, H, T, k] rows that emit answer tokens
    c0, c1 = prompt.context_slots
    top = rows.argmax(-1)  # [L, H, T]
    second = rows.topk(2, dim=-1).values
    clear = (second[..., 0] - second[..., 1]) > 1e-4  # [L, H, T]
    ctx_mass = rows[..., c0:c1].sum(-1)  # [L, H, T]
    new = torch.stack([rows[:, :, i, n:n + i].sum(-1) / max(i, 1) for i in range(T)], dim=-1)  # [L, H, T]
    old = rows[..., :n].sum(-1) / n
    lr = old / (old + new)
    prev = torch.stack([A[:, :, n - 1 + i, n - 2 + i] for i in range(T + 1)], dim=0)  # [T+1, L, H]
    flat = lambda x: x.permute(2, 0, 1).reshape(T, -1).numpy()  # [L, H, T] -> [T, L*H]  # noqa: E731
    return flat(top), flat(clear), flat(ctx_mass), flat(lr), prev.reshape(T + 1, -1).numpy(), ids[0].numpy()


def _expected_copy(top, clear, ids, prompt, tokens, heads, weights):
    c0, c1 = prompt.context_slots
    q0, q1 = prompt.question_slots
    out = []
    for t, tok in enumerate(tokens):
        idx = [l * 4 + h for l, h in heads]
        if not all(clear[t, i] for i in idx):
            out.append(None)
            continue
        w = np.array(weights)
        s = np.array([top[t, i] for i in idx])
        same = ids[s] == tok
        ctx = (s >= c0) & (s < c1) & same
        q = (s >= q0) & (s < q1) & same
        out.append(((w * ctx).sum() / w.sum(), (w * q).sum() / w.sum()))
    return out


def test_generation_signals_match_the_eager_oracle(mon, eager):
    rep = mon.run(CONTEXT, QUESTION, min_new_tokens=6, keep=True)
    prompt = mon.prompt(CONTEXT, QUESTION)
    tokens = [t.token_id for t in rep.tokens]
    assert len(tokens) >= 6
    top, clear, mass, lr, prev, ids = _oracle(eager, prompt, tokens)
    heads = sorted(RETRIEVAL)
    w = [RETRIEVAL[h] for h in heads]
    checked = 0
    for t, exp in enumerate(_expected_copy(top, clear, ids, prompt, tokens, heads, w)):
        tr = rep.tokens[t]
        idx = [l * 4 + h for l, h in heads]
        assert tr.mass == pytest.approx(float(np.dot(w, mass[t, idx]) / sum(w)), abs=1e-4)
        assert tr.sets["all"]["mass"] == pytest.approx(float(mass[t].mean()), abs=1e-4)
        if exp is not None:
            assert (tr.copy, tr.copy_q) == pytest.approx(exp, abs=1e-6)
            checked += 1
    assert checked >= 3
    # every head's per-step record: copy flags from the context, source mass and lookback ratio
    raw = rep.raw
    assert raw["mass"].shape == (len(tokens), 12)
    np.testing.assert_allclose(raw["mass"], mass, atol=1e-4)
    np.testing.assert_allclose(raw["lr"], lr, atol=1e-4)
    c0, c1 = prompt.context_slots
    for t, tok in enumerate(tokens):
        for i in range(12):
            if clear[t, i]:
                assert raw["copy"][t, i] == (c0 <= top[t, i] < c1 and ids[top[t, i]] == tok)
    # log-probabilities are the model's own
    with torch.no_grad():
        logits = eager(torch.tensor([prompt.input_ids + tokens])).logits[0, prompt.n - 1:-1]  # [T, V]
    lp = torch.log_softmax(logits, -1)[torch.arange(len(tokens)), torch.tensor(tokens)]
    np.testing.assert_allclose([t.logprob for t in rep.tokens], lp.numpy(), atol=1e-4)
    # a copied token points at its source: the context characters of the slot most copy weight chose
    for tr in rep.tokens:
        if tr.source is not None:
            kind, a, b = prompt.source_of(tr.source["slot"])
            assert (kind, a, b) == (tr.source["kind"], tr.source["start"], tr.source["end"])
            text = CONTEXT if kind == "context" else QUESTION
            assert text[a:b].strip() in mon.tokenizer.decode([tr.token_id])


def test_generate_stream_and_teacher_forcing_agree(mon, eager):
    rep = mon.run(CONTEXT, QUESTION, min_new_tokens=6)
    streamed = list(mon.generate(CONTEXT, QUESTION, min_new_tokens=6))
    forced = mon.score(CONTEXT, QUESTION, [t.token_id for t in rep.tokens], keep=True)
    assert [t.token_id for t in streamed] == [t.token_id for t in rep.tokens] == [t.token_id for t in forced.tokens]
    for a, b, c in zip(rep.tokens, streamed, forced.tokens):
        assert a.text == b.text == c.text
        assert (a.copy, a.copy_q) == pytest.approx((c.copy, c.copy_q), abs=1e-6)
        assert a.mass == pytest.approx(c.mass, abs=1e-5) and a.logprob == pytest.approx(c.logprob, abs=1e-4)
        assert a.sets["all"]["mass"] == pytest.approx(c.sets["all"]["mass"], abs=1e-4)
    assert rep.answer == forced.answer == "".join(t.text for t in rep.tokens)
    assert rep.hallucination_score == pytest.approx(forced.hallucination_score, abs=1e-5)
    # RAUQ of the teacher-forced answer (every row recorded) against the formula on the eager oracle's rows
    prompt = mon.prompt(CONTEXT, QUESTION)
    *_, prev, _ = _oracle(eager, prompt, [t.token_id for t in forced.tokens])
    expect, _ = rauq([t.logprob for t in forced.tokens], prev, 3, 4)
    assert forced.baselines["rauq"] == pytest.approx(expect, abs=1e-4)


def test_a_static_cache_implementation_gives_the_same_report(mon, model):
    """A user's `generation_config.cache_implementation = "static"` decodes as the dynamic cache (it raised
    inside transformers before), and the setting is left as the user made it."""
    before = mon.run(CONTEXT, QUESTION, min_new_tokens=6)
    model.generation_config.cache_implementation = "static"
    try:
        after = mon.run(CONTEXT, QUESTION, min_new_tokens=6)
        streamed = mon.generate(CONTEXT, QUESTION, min_new_tokens=6).result()
        assert model.generation_config.cache_implementation == "static"
    finally:
        model.generation_config.cache_implementation = None
    for rep in (after, streamed):
        assert [t.token_id for t in rep.tokens] == [t.token_id for t in before.tokens]
        assert rep.hallucination_score == pytest.approx(before.hallucination_score, abs=1e-6)
        assert [t.copy for t in rep.tokens] == pytest.approx([t.copy for t in before.tokens], abs=1e-6)


def test_leaving_a_stream_early_stops_generation(model, tok, scores):
    mon = Monitor(model, tok, scores, max_new_tokens=40)
    stream = mon.generate(CONTEXT, QUESTION, min_new_tokens=40)
    for i, _ in enumerate(stream):
        if i == 1:
            break
    rep = stream.result()
    assert 2 <= len(rep.tokens) < 40


def test_bad_score_files_are_refused(model, tok):
    with pytest.raises(RHeadsError, match="has 4 layers x 4 heads but the model has 3 x 4"):
        Monitor(model, tok, make_scores(L=4))
    with pytest.raises(RHeadsError, match="scores above 0.1"):
        Monitor(model, tok, make_scores(retrieval={}))


def test_copies_from_a_context_of_one_repeated_word_match_the_oracle(mon, eager, tok):
    """Every context token is 'bread': a head copies exactly when its top-1 lies in the context."""
    context = " ".join(["bread"] * 40)
    question = "What did the baker sell?"
    answer = tok(" bread bread bread", add_special_tokens=False)["input_ids"]
    bread = tok(" bread", add_special_tokens=False)["input_ids"]
    assert len(bread) == 1 and answer == bread * 3
    rep = mon.score(context, question, answer)
    prompt = mon.prompt(context, question)
    top, clear, mass, lr, prev, ids = _oracle(eager, prompt, answer)
    heads = sorted(RETRIEVAL)
    w = [RETRIEVAL[h] for h in heads]
    exp = _expected_copy(top, clear, ids, prompt, answer, heads, w)
    got = [(t.copy, t.copy_q) for t in rep.tokens]
    assert all(e is not None for e in exp)
    assert np.ravel(got) == pytest.approx(np.ravel(exp), abs=1e-6)
    assert any(c > 0 for c, _ in got)  # the test exercises real copies
    for t in rep.tokens:
        if t.copy > 0:
            assert t.source["kind"] == "context" and context[t.source["start"]:t.source["end"]].strip() == "bread"


@pytest.mark.parametrize("answer", ["", []])
def test_an_empty_answer_is_scored_with_every_baseline(mon, answer):
    """A method whose first token is the end of its answer: the monitor (every head recorded, for RAUQ) reports
    no tokens instead of failing on the empty recording."""
    for keep in (False, True):
        rep = mon.score(CONTEXT, QUESTION, answer, keep=keep)
        assert rep.answer == "" and rep.tokens == [] and rep.baselines["rauq"] is None
        if keep:
            assert rep.raw["prev"].shape == (0, 12) and rep.raw["mass"].shape == (0, 12)
