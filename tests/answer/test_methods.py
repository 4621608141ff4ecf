"""The answering methods on a tiny random model: the baselines reduce to greedy where their papers say they do, the
contrasts equal their formulas computed by hand from separate forward passes, our methods' degenerate settings are
greedy, and abstain refuses exactly on the unsupported verdict."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from answer_helpers import CONTEXT, QUESTION, items
from retrieval_heads.answer import get_method_class
from retrieval_heads.answer.loop import decode
from retrieval_heads.answer.methods.abstain import REFUSAL
from retrieval_heads.answer.passes import Pass
from retrieval_heads.answer.support import contrast, needs_support, token_match
from retrieval_heads.capture.controller import AttentionController
from retrieval_heads.capture.decoding import generate_batch
from retrieval_heads.errors import ParamError
from retrieval_heads.heads.masks import select_heads, to_ablate

N = 10


def ids_of(answerer, method, it, **params):
    return answerer.answer(get_method_class(method)(**params), it["context"], it["question"], N).generated_ids


def test_greedy_equals_plain_greedy_generate(answerer, model, tok):
    for it in items(3):
        prompt = answerer.monitor.prompt(it["context"], it["question"], N)
        eos = answerer.monitor.eos
        ref = generate_batch(model, [prompt.input_ids], N, eos, AttentionController(), eos[0], tokenizer=tok,
                             stop=answerer.stop)[0]
        want = [t for t in ref.tokens if t not in set(eos)]
        assert ids_of(answerer, "greedy", it) == want


@pytest.mark.parametrize("method,params", [("cad", {"a": 0.0}), ("decore", {"alpha": 0.0}),
                                           ("decore", {"mask": "none"}), ("gated", {"alpha": 0.0}),
                                           ("gated", {"mask": "none"}), ("copy", {"k": 1})])
def test_degenerate_settings_are_greedy(answerer, method, params):
    for it in items(2):
        assert ids_of(answerer, method, it, **params) == ids_of(answerer, "greedy", it)


def _logits(model, ids, ablate=None):
    ctl = AttentionController(ablate=ablate or {})
    with ctl.activate(model), torch.no_grad():
        return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1].float()  # [V]


def test_cad_step_equals_the_formula_from_two_separate_passes(answerer, model):
    a = 0.7
    run = answerer.decoding(CONTEXT, QUESTION, N)
    method = get_method_class("cad")(a=a)
    method.start(run)
    full, noctx = run.prompt.input_ids, run.no_context_ids()
    assert len(noctx) < len(full) and QUESTION.split()[0] in run.tokenizer.decode(noctx)
    for step in range(2):  # step 1 checks the two caches after a fed token
        got = method.step(run)
        extra = run.tokens
        want = (1 + a) * _logits(model, full + extra) - a * _logits(model, noctx + extra)
        torch.testing.assert_close(got.scores, want, rtol=1e-4, atol=1e-4)
        assert got.token == int(want.argmax())
        run.tokens.append(got.token)
        for p in run.passes.values():
            p.feed(got.token)


def test_decore_step_equals_the_entropy_scaled_contrast(answerer, model, scores):
    run = answerer.decoding(CONTEXT, QUESTION, N)
    method = get_method_class("decore")(mask="top:2", alpha=0.5)
    method.start(run)
    got = method.step(run)
    ids = run.prompt.input_ids
    ablate = to_ablate(select_heads("top:2", 3, 4, scores=scores))
    lb = torch.log_softmax(_logits(model, ids), -1)
    lm = torch.log_softmax(_logits(model, ids, ablate), -1)
    h = float(-(lb.exp() * lb).sum())
    torch.testing.assert_close(got.scores, lb + 0.5 * h * (lb - lm), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(lb, lm)  # the masked pass really masks
    torch.testing.assert_close(contrast(lb, lm, 0.5, cap=0.1), lb + 0.1 * (lb - lm))


def test_a_pass_read_late_catches_up_in_one_call(model):
    ids = list(range(3, 30))
    late = Pass(model, ids[:10])
    late.logits()
    for t in ids[10:]:
        late.feed(t)
    torch.testing.assert_close(late.logits(), _logits(model, ids), rtol=1e-4, atol=1e-4)
    assert late.calls == 2 and late.tokens == len(ids)


@pytest.mark.parametrize("verdict", ["supported", "partly unsupported", "unsupported", "nothing to check"])
def test_abstain_refuses_exactly_on_unsupported(answerer, monkeypatch, verdict):
    monkeypatch.setattr(type(answerer), "report", lambda self, c, q, ids, **kw: SimpleNamespace(verdict=verdict, hallucination_score=0.5))
    method = get_method_class("abstain")()
    got = answerer.answer(method, CONTEXT, QUESTION, N)
    greedy = answerer.answer(get_method_class("greedy")(), CONTEXT, QUESTION, N)
    assert got.generated_ids == greedy.generated_ids
    assert got.abstained == (verdict == "unsupported")
    assert got.answer == (method.p["refusal"] if verdict == "unsupported" else greedy.answer)


@pytest.mark.parametrize("max_score", [-1.0, 0.3, 0.6, 1.0])
def test_abstain_by_score_refuses_exactly_above_max_score(answerer, max_score):
    method = get_method_class("abstain")(refuse_on="", max_score=max_score)
    for it in items(3):
        got = answerer.answer(method, it["context"], it["question"], N)
        rep = answerer.monitor.score(it["context"], it["question"], got.generated_ids)
        assert got.abstained == (bool(got.generated_ids) and rep.hallucination_score > max_score)
    assert max_score >= 0 or got.abstained or not got.generated_ids


def test_abstain_follows_the_real_monitor(answerer):
    for it in items(3):
        got = answerer.answer(get_method_class("abstain")(), it["context"], it["question"], N)
        rep = answerer.monitor.score(it["context"], it["question"], got.generated_ids)
        assert got.abstained == (rep.verdict == "unsupported")


@pytest.mark.parametrize("decoder,params", [("copy", {"k": 3}), ("gated", {"mask": "top:2"}), ("cad", {})])
def test_abstain_on_a_decoder_writes_that_decoders_answer(answerer, decoder, params, monkeypatch):
    """`abstain` with `decoder=X` answers exactly as X (at X's defaults), then refuses on the monitor as before."""
    cls = get_method_class(decoder)
    monkeypatch.setattr(cls, "params", {**cls.params, **params})  # the decoder's defaults, as abstain builds it
    for it in items(3):
        got = answerer.answer(get_method_class("abstain")(decoder=decoder, refuse_on="", max_score=0.5),
                              it["context"], it["question"], N)
        plain = answerer.answer(cls(), it["context"], it["question"], N)
        assert got.generated_ids == plain.generated_ids
        rep = answerer.monitor.score(it["context"], it["question"], got.generated_ids)
        assert got.abstained == (bool(got.generated_ids) and rep.hallucination_score > 0.5)
        assert got.answer == (REFUSAL if got.abstained else plain.answer)


def test_abstain_on_a_decoder_that_differs_from_greedy(answerer):
    """The delegation is not vacuous: on some item the copy decoder's answer differs from greedy's."""
    diff = 0
    for it in items(4):
        a = answerer.answer(get_method_class("abstain")(decoder="copy", refuse_on=""), it["context"],
                            it["question"], N).generated_ids
        diff += a != ids_of(answerer, "greedy", it)
        assert a == ids_of(answerer, "copy", it)
    assert diff > 0


@pytest.mark.parametrize("decoder", ["abstain", "nope", "copy:k10", ""])
def test_abstain_refuses_a_bad_decoder_in_one_line(decoder):
    with pytest.raises(ParamError) as err:
        get_method_class("abstain")(decoder=decoder)
    assert "\n" not in str(err.value) and "greedy" in str(err.value)


def test_copy_keeps_or_reranks_within_top_k(answerer):
    run = answerer.decoding(CONTEXT, QUESTION, N)
    method = get_method_class("copy")(k=3)
    out = decode(method, run, N, keep_scores=True)
    for c in out.steps:
        top = torch.topk(c.scores, 3).indices.tolist()
        assert c.token in top


def test_token_text_matching():
    assert token_match("athens", "ath") and token_match("four", "four") and token_match("ath", "athens")
    assert not token_match("", "a") and not token_match("tokyo", "athens") and not token_match("to", "tokyo")
    assert needs_support(" Athens") and not needs_support(" the") and not needs_support(".")


def test_unknown_parameter_and_bad_value_are_refused():
    from retrieval_heads.errors import ParamError

    with pytest.raises(ParamError, match="no parameter"):
        get_method_class("cad")(b=1)
    with pytest.raises(ParamError, match="float"):
        get_method_class("cad")(a="much")
    assert get_method_class("cad")(a="1").p["a"] == 1.0


def test_copy_reranks_to_more_attended_candidates_only_when_greedy_is_unsupported(answerer):
    from retrieval_heads.answer.support import candidate_mass, supported

    cls = get_method_class("copy")
    seen = []

    class Checked(cls):
        def step(self, run):
            c = super().step(run)
            base = run.passes["base"]
            greedy = int(base.logits().argmax())
            if c.token != greedy:
                assert not supported(run, base.last(self.top1), greedy)
                assert candidate_mass(run, self.attn, c.token) > candidate_mass(run, self.attn, greedy)
                seen.append(c.token)
            return c

    for it in items(3):
        answerer.answer(Checked(), it["context"], it["question"], N)
    assert seen  # the tiny model's answers do get re-ranked


def test_ending_the_answer_needs_no_support(answerer):
    """An end-of-answer token is always supported, so `copy` and `gated` never re-rank it away (they did: every
    SmolLM2 answer of `copy` ran to the token limit, its `<|im_end|>` holding letters)."""
    from retrieval_heads.answer.support import supported

    cls = get_method_class("copy")
    checked = []

    class Checked(cls):
        def step(self, run):
            c = super().step(run)  # the base pass has run: its recorders hold this step's top-1 keys
            top = run.passes["base"].last(self.top1)
            for e in run.eos:
                assert supported(run, top, e)
                checked.append(e)
            return c

    it = items(1)[0]
    answerer.answer(Checked(), it["context"], it["question"], 4)
    assert checked


def test_gated_runs_the_masked_pass_only_at_unsupported_steps(answerer, model, scores):
    ablate = to_ablate(select_heads("top:2", 3, 4, scores=scores))
    gated = steps = 0
    for it in items(3):
        run = answerer.decoding(it["context"], it["question"], N)
        method = get_method_class("gated")(mask="top:2")
        out = decode(method, run, N, keep_scores=True)
        masked = run.passes.get("masked")
        assert masked is None or masked.calls == method.gated
        gated, steps = gated + method.gated, steps + len(out.steps)
        ids = run.prompt.input_ids
        for t, c in enumerate(out.steps):
            base = _logits(model, ids + out.generated_ids[:t])
            lm = _logits(model, ids + out.generated_ids[:t], ablate)
            assert c.token in (int(base.argmax()), int(contrast(base, lm, 1.0).argmax()))
    assert 0 < gated < steps
