"""Scoring rules on hand-built token records: content words, echo tokens, unsupported spans, verdicts and the
answer-level variants; and RAUQ and the logit baselines on hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from retrieval_heads.monitor.recording import StepSignals
from retrieval_heads.monitor.rules import word_flags
from retrieval_heads.monitor.score import make_token, report
from retrieval_heads.monitor.signals import AnswerTrace, HeadSetTrace, get_signal, stats
from retrieval_heads.monitor.signals.combined import token_score
from retrieval_heads.monitor.signals.rauq import prev_attention, rauq, rauq_layers


def answer_score(copy, copy_q, mass, content, variant="combined"):
    return get_signal(variant).value(AnswerTrace(content, {"retrieval": HeadSetTrace(copy, copy_q, mass)}), "retrieval")


def logit_baselines(logprobs, entropies):
    return stats(AnswerTrace(logprobs=logprobs, entropies=entropies))


def _answer(parts):
    """parts: (text, copy, copy_q, mass) -> (answer, tokens)."""
    toks, text = [], ""
    for i, (piece, c, q, m) in enumerate(parts):
        text += piece
        toks.append(make_token(i, 100 + i, piece, len(text) - len(piece), text, StepSignals(c, q, int(c > 0), m, None),
                               None, -0.1, 1.0))
    return text, toks


def test_word_flags_are_per_word_not_per_token():
    pieces = ["The", " Jo", "rund", " Kle", "e", " is", " a", " giant", ",", " or", " not", "."]
    ans, spans = "", []
    for p in pieces:
        spans.append((len(ans), len(ans) + len(p)))
        ans += p
    # 'rund' belongs to the content word Jorund; 'The', 'is', 'a', 'or', 'not' are function words; ',' '.' no word
    assert word_flags(ans, spans) == [False, True, True, True, True, False, False, True, False, False, False, False]


def test_echo_tokens_do_not_count_and_spans_join_over_punctuation_only():
    ans, toks = _answer([("The", 0.0, 0.0, 0.5), (" key", 0.0, 0.8, 0.6), (" is", 0.0, 0.0, 0.4),
                         (" in", 0.0, 0.0, 0.3), (" Paris", 0.0, 0.0, 0.2), (",", 0.0, 0.0, 0.2),
                         (" France", 0.0, 0.0, 0.1), (" under", 0.9, 0.0, 0.9), (" tile", 0.1, 0.0, 0.2)])
    rep = report(ans, toks, "eos", 10)
    by = {t.text.strip(): t for t in rep.tokens}
    assert by["key"].echo and not by["key"].unsupported and by["key"].score == pytest.approx(1 - (0.8 + 0.6) / 2)
    # unsupported = no head copied it from the context, whatever the token score: 'tile' (copy 0.1) is supported
    assert [by[w].unsupported for w in ("Paris", "France", "under", "tile")] == [True, True, False, False]
    assert not by["The"].content and not by[","].content
    assert rep.unsupported == [(ans.index(" Paris"), ans.index(" under"))]
    counted = [("Paris", 0, 0.2), ("France", 0, 0.1), ("under", 0.9, 0.9), ("tile", 0.1, 0.2)]
    assert rep.hallucination_score == pytest.approx(np.mean([token_score(c, 0, m) for _, c, m in counted]))
    assert rep.scores["copy"] == pytest.approx(np.mean([1 - c for _, c, _ in counted]))
    assert rep.scores["mass"] == pytest.approx(np.mean([1 - m for _, _, m in counted]))
    assert rep.verdict == "unsupported"  # 2 of 4 counted tokens: not under half


def test_verdicts():
    ans, toks = _answer([(" Lyon", 0.9, 0.0, 0.9), (" city", 0.8, 0.0, 0.8)])
    assert report(ans, toks, "eos", 5).verdict == "supported"
    ans, toks = _answer([(" Lyon", 0.9, 0.0, 0.9), (" city", 0.8, 0.0, 0.8), (" Paris", 0.0, 0.0, 0.1)])
    assert report(ans, toks, "eos", 5).verdict == "partly unsupported"
    ans, toks = _answer([(" Paris", 0.0, 0.0, 0.1), (" capital", 0.0, 0.9, 0.5), (" Rome", 0.0, 0.0, 0.1)])
    assert report(ans, toks, "eos", 5).unsupported == [(0, 6), (14, 19)]  # the echo token ends a span
    ans, toks = _answer([(" capital", 0.0, 0.9, 0.5), (".", 0.0, 0.0, 0.1)])
    rep = report(ans, toks, "eos", 5)
    assert rep.verdict == "nothing to check" and rep.hallucination_score == pytest.approx(token_score(0, 0.9, 0.5))
    assert report("", [], "eos", 5).hallucination_score is None
    assert answer_score([], [], [], [], "copy") is None


def test_logit_baselines_and_rauq_by_hand():
    lp = [math.log(0.9), math.log(0.5), math.log(0.8)]
    b = logit_baselines(lp, [0.1, 2.0, 0.5])
    assert b.pop("anchor") is None  # no context: the anchor signal is undefined
    assert b == pytest.approx({"mean_logprob": np.mean(lp), "min_logprob": math.log(0.5), "max_entropy": 2.0,
                               "mean_entropy": np.mean([0.1, 2.0, 0.5]), "n_tokens": 3})
    L, H = 3, 2
    assert rauq_layers(L) == [1, 2] and rauq_layers(30) == list(range(10, 21))
    # rows: row r's query is answer token r - 1; a_i (i >= 1) = row i + 1
    prev = np.zeros((4, L * H))
    prev[2:, 1 * H + 0] = [0.9, 0.7]  # layer 1, head 0: the most previous-token attentive head of layer 1
    prev[2:, 1 * H + 1] = [0.2, 0.1]
    prev[2:, 2 * H + 1] = [0.3, 0.4]  # layer 2, head 1
    u, per_tok = rauq(lp, prev, L, H, alpha=0.2)
    p = np.exp(lp)

    def layer(a):
        c = [p[0]]
        for i in (1, 2):
            c.append(0.2 * p[i] + 0.8 * a[i - 1] * c[-1])
        return -np.mean(np.log(c)), (-np.log(c)).tolist()

    l1, l2 = layer([0.9, 0.7]), layer([0.3, 0.4])
    best = max(l1, l2)
    assert u == pytest.approx(best[0]) and per_tok == pytest.approx(best[1])
    # a run cut at the token limit lacks the row after the last token: its a_i is the mean of the others
    a = prev_attention(prev[:3], 3)
    assert a[2, 1 * H] == pytest.approx(0.9) and a[1, 1 * H] == pytest.approx(0.9)
