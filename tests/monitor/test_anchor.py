"""The `anchor` signal (a copy of the wrong span): the question's words found in the context, the distance of each
copied token's source to the nearest of them, the answer's value computed by hand, the report storing it, and its
place in `rheads answer bench`'s natural-error table (ours, never the baseline the monitor is compared with)."""

from __future__ import annotations

import pytest

from retrieval_heads.monitor.anchors import anchors, nearest, question_words
from retrieval_heads.monitor.recording import StepSignals
from retrieval_heads.monitor.score import make_token, report
from retrieval_heads.monitor.signals import AnswerTrace, get_signal

CONTEXT = ("Arthur Pike was born in Leeds in 1901. His sister Mary Pike founded a school in Bristol in 1930, "
           "and the school's first teacher was Ada Lowe.")
QUESTION = "Where was Arthur Pike born?"


def test_anchors_are_the_questions_content_words_in_the_context():
    assert question_words(QUESTION) == {"arthur", "pike", "born"}  # "where", "was" are function words
    got = anchors(CONTEXT, QUESTION)
    assert got == [CONTEXT.index("Arthur"), CONTEXT.index("Pike"), CONTEXT.index("born"),
                   CONTEXT.index("Pike founded")]
    assert anchors(CONTEXT, "Is it so?") == []  # nothing but function words
    assert anchors("The US and the UK.", "Is the US big?") == []  # words under 3 characters anchor nothing
    assert nearest([10, 20, 40], 0) == 10 and nearest([10, 20, 40], 26) == 6 and nearest([10, 20, 40], 99) == 59


def _tok(i, text, start, answer, source_start=None, kind="context"):
    sig = StepSignals(copy=1.0 if source_start is not None else 0.0, copy_q=0.0, n_copy=1, mass=0.5, slot=None)
    src = None if source_start is None else {"kind": kind, "start": source_start, "end": source_start + 3, "slot": 0}
    return make_token(i, 100 + i, text, start, answer[: start + len(text)], sig, src, -0.5, 1.0)


def test_the_answer_value_is_the_mean_distance_of_its_copied_content_tokens():
    n = len(CONTEXT)
    near, far = CONTEXT.index("Leeds"), CONTEXT.index("Bristol")
    right = "Leeds."
    rep = report(right, [_tok(0, "Leeds", 0, right, near), _tok(1, ".", 5, right, None)], "given", 50,
                 context=CONTEXT, question=QUESTION)
    want = (near - CONTEXT.index("born")) / n  # "born" is the anchor nearest to Leeds; "." is no content token
    assert rep.baselines["anchor"] == pytest.approx(want)
    wrong = "Bristol"
    rep2 = report(wrong, [_tok(0, "Bristol", 0, wrong, far)], "given", 50, context=CONTEXT, question=QUESTION)
    assert rep2.baselines["anchor"] == pytest.approx((far - CONTEXT.index("Pike founded")) / n)
    assert rep2.baselines["anchor"] > rep.baselines["anchor"]  # the far copy is the more suspicious
    # nothing copied from the context (a question copy does not count): 1; no anchors at all: undefined
    q = report(wrong, [_tok(0, "Bristol", 0, wrong, 5, kind="question")], "given", 50, context=CONTEXT,
               question=QUESTION)
    assert q.baselines["anchor"] == 1.0
    none = report(wrong, [_tok(0, "Bristol", 0, wrong, far)], "given", 50, context=CONTEXT, question="Is it so?")
    assert none.baselines["anchor"] is None
    sig = get_signal("anchor")
    assert sig.ours and sig.higher_is_hallucinated and sig.stat == "anchor"
    a = AnswerTrace(content=[True, True, False], sources=[10, None, 500], anchors=[0, 40], context_chars=100)
    assert sig.value(a) == pytest.approx(0.1)  # the one copied content token, 10 characters from an anchor


def test_the_answer_bench_reports_anchor_as_ours_and_within_supported_answers():
    from retrieval_heads.answer.bench.evaluate import format_tables, natural_errors

    recs = []
    for i in range(12):
        wrong = i % 2 == 0
        recs.append({"id": f"i{i}", "method": "greedy", "correct": not wrong, "new_tokens": 2,
                     "hallucination_score": 0.5, "verdict": "supported" if i < 10 else "unsupported",
                     "monitor_baselines": {"mean_logprob": -0.1 * i, "mean_entropy": 0.1, "rauq": 0.2,
                                           "anchor": 0.9 if wrong else 0.1}})
    ne = natural_errors(recs)
    assert ne["signals"]["anchor"]["auroc"] == 1.0
    assert ne["monitor_minus_best"]["baseline"] != "anchor"  # a baseline, never ours
    assert ne["supported"]["n"] == 10 and ne["supported"]["wrong"] == 5 and ne["supported"]["anchor"]["auroc"] == 1.0
    table = format_tables({"families": {}, "natural_errors": {"all": ne}})
    assert "anchor within supported" in table and "| 10 (5) | 1.000" in table
