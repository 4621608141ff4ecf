"""One prefill per question (`Answerer(share_prefill=True)`, the default) against one prefill per pass: every method
gives the same answer and the monitor the same report, on tiny random Llama, Qwen2, Mistral and Gemma 3 (the last
two with sliding windows shorter than the prompt); each answer is charged the prefills it used, once each."""

from __future__ import annotations

import math

import pytest
import torch

from answer_helpers import items, make_scores, tiny_model
from retrieval_heads.answer import get_method_class
from retrieval_heads.answer.loop import Answerer
from retrieval_heads.answer.registry import method_names

N = 8


def same(a, b, path="report") -> None:
    """Equal, floats within 1e-4 (the prefix's cache changes the float rounding, nothing else)."""
    if isinstance(a, float) and isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-4), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral", "gemma3"])
def test_shared_prefill_gives_the_answers_and_reports_of_separate_prefills(family, tok):
    model = tiny_model(tok, family=family)
    scores = make_scores(L=model.config.num_hidden_layers)
    shared = Answerer(model, tok, scores, baselines=True)
    alone = Answerer(model, tok, scores, baselines=True, share_prefill=False)
    for it in items(2):
        prompt = shared.monitor.prompt(it["context"], it["question"], N)
        window = getattr(model.config, "sliding_window", None)
        assert window is None or prompt.n > 4 * window  # the windows really slide over the prompt
        for name in method_names():
            method = get_method_class(name)
            a = shared.answer(method(), it["context"], it["question"], N)
            b = alone.answer(method(), it["context"], it["question"], N)
            assert (a.generated_ids, a.abstained, a.answer) == (b.generated_ids, b.abstained, b.answer), name
            ra = shared.report(it["context"], it["question"], a.generated_ids)
            rb = alone.report(it["context"], it["question"], b.generated_ids)
            same(ra.to_dict(), rb.to_dict(), f"{family} {name}")
            assert b.prefill_seconds == 0 and a.prefill_seconds > 0


def test_each_answer_is_charged_the_prefills_it_used_once(answerer):
    it = items(1)[0]
    greedy = answerer.answer(get_method_class("greedy")(), it["context"], it["question"], N)
    prefixes = {key[1]: secs for key, (_, secs) in answerer._prefixes.items()}
    assert list(prefixes) == [()]  # the plain prompt's, no heads masked
    assert greedy.prefill_seconds == pytest.approx(prefixes[()])
    decore = answerer.answer(get_method_class("decore")(), it["context"], it["question"], N)
    prefixes = {key[1]: secs for key, (_, secs) in answerer._prefixes.items()}
    assert len(prefixes) == 2  # and the masked prompt's, computed during decore's answer
    assert decore.prefill_seconds == pytest.approx(sum(prefixes.values()))
    assert decore.seconds >= decore.prefill_seconds
    abstain = answerer.answer(get_method_class("abstain")(), it["context"], it["question"], N)
    assert abstain.prefill_seconds == pytest.approx(prefixes[()])  # its own monitor call reuses the same prefix


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_a_pass_on_a_prefix_records_the_same_top1_slots(family, tok):
    """The recorders of a pass that takes over a prefilled cache see the slots they would see after prefilling the
    whole prompt themselves (the controller counts from the prefix's length, `cached`), sliding layers included."""
    from retrieval_heads.answer.passes import Pass
    from retrieval_heads.capture.recorders import Top1

    model = tiny_model(tok, family=family)
    answerer = Answerer(model, tok, make_scores(L=model.config.num_hidden_layers))
    it = items(1)[0]
    ids = answerer.monitor.prompt(it["context"], it["question"], N).input_ids
    answerer.decoding(it["context"], it["question"], N)
    recs = Top1(), Top1()
    passes = Pass(model, ids, recorders=[recs[0]]), Pass(model, ids, recorders=[recs[1]], prefix=answerer.prefix(ids))
    assert passes[1].ctl.cached == len(ids) - 1
    for token in (5, 9, 7):
        got = [p.last(r) for p, r in zip(passes, recs)]
        assert got[0].keys() == got[1].keys()
        for layer in got[0]:
            assert torch.equal(got[0][layer], got[1][layer]), (layer, got[0][layer], got[1][layer])
        assert max(int(t.max()) for t in got[0].values()) > len(ids) // 2  # slots far beyond any window
        for p in passes:
            p.feed(token)
