"""The monitor's copy test by text (`textmatch.py`, `Recording.step`) and its text rules (`rules.absent_words`,
`rules.copied_verbatim`, the verdict), on hand-made prompts and recorder outputs: no model."""

from __future__ import annotations

import numpy as np
import torch

from retrieval_heads.monitor.prompt import MonitorPrompt
from retrieval_heads.monitor.recording import HeadSet, Recording
from retrieval_heads.monitor.rules import absent_words, copied_verbatim, is_unsupported, verdict
from retrieval_heads.monitor.score import make_token, report
from retrieval_heads.monitor.textmatch import (SlotTexts, copy_match, norm, texts_match, token_match, word_around,
                                               word_so_far)

CONTEXT = "The reading room opens at nine. Entry costs four euros. The keeper is Tobias Rennick in Athens."
QUESTION = "Who is the keeper?"


def _prompt(pieces: list[str]) -> MonitorPrompt:
    """A prompt whose slots are: one template token, the context split into `pieces`, the question (one token)."""
    assert "".join(pieces) == CONTEXT
    offsets, kinds, at = [None], [""], 0
    for p in pieces:
        offsets.append((at, at + len(p)))
        kinds.append("context")
        at += len(p)
    offsets.append((0, len(QUESTION)))
    kinds.append("question")
    n = len(offsets)
    ids = [100 + i for i in range(n)]  # every slot its own id: nothing matches by id
    return MonitorPrompt(ids, CONTEXT, QUESTION, (1, n - 1), (n - 1, n), offsets, kinds)


def _pieces(*split_at: str) -> list[str]:
    """The context cut before each of the given substrings (each cut is a token boundary)."""
    cuts = sorted({CONTEXT.index(s) for s in split_at} | {0, len(CONTEXT)})
    return [CONTEXT[a:b] for a, b in zip(cuts, cuts[1:])]


def test_texts_and_words():
    assert norm("  Athens ") == "athens" and texts_match("athens", "ath") and not texts_match("", "a")
    assert copy_match("athens", "ath") and copy_match("4", "4")
    assert not copy_match("40", "4") and not copy_match("and", "a")  # a one-character prefix is no copy
    assert not copy_match("to", "tokyo") and not copy_match("at", "athens")  # a short source is no copy of more
    assert token_match("ath", "athens") and not token_match("to", "tokyo") and not token_match("in", "india")
    text = "in Athens, today"
    assert word_around(text, 3, 6) == "athens" and word_around(text, 5, 9) == "athens" and word_around(text, 9, 10) == ""
    answer = "Athens."
    assert word_so_far(answer, 0, 3) == "ath" and word_so_far(answer, 3, 7) == "athens" and word_so_far(answer, 6, 7) == ""


def test_slot_texts_match_across_token_boundaries():
    pr = _prompt(_pieces(" Athens", " Tobias", "nick"))
    st = SlotTexts(pr)
    athens = next(i for i, t in enumerate(st.text) if t == "athens.")
    ren = next(i for i, t in enumerate(st.text) if t.startswith("tobias"))
    assert st.word[athens] == "athens" and st.word[ren] == "tobias"
    assert st.matches(athens, "ath", "ath") and st.matches(athens, "ens", "athens")  # `Ath` + `ens` against ` Athens`
    assert not st.matches(athens, "tok", "tok") and not st.matches(athens, ".", "")  # other text; no word character
    nick = next(i for i, t in enumerate(st.text) if t.startswith("nick"))
    assert st.word[nick] == "rennick" and st.matches(nick, "nick", "rennick")  # the context's word spans two tokens
    assert not st.matches(0, "ath", "ath")  # a template slot matches nothing
    st2 = SlotTexts(_prompt(_pieces(" Athens", " in", " Tobias")))
    inn = next(i for i, t in enumerate(st2.text) if t == "in")  # a short function word of the context ...
    assert st2.word[inn] == "in" and not st2.matches(inn, "india", "india")  # ... is no copy of a longer answer word


class _Stub:
    """Stands in for a recorder: `step(t)` returns fixed per-layer arrays."""

    def __init__(self, per_layer):
        self.per_layer = per_layer

    def step(self, t):
        return self.per_layer


def test_recording_counts_a_copy_by_text_and_by_id():
    pr = _prompt(_pieces(" Athens"))
    athens = next(i for i in range(pr.n) if pr.source_of(i) and CONTEXT[pr.offsets[i][0]:].startswith(" Athens"))
    heads = HeadSet.uniform("retrieval", [(0, 0), (0, 1)])
    rec = Recording(pr, [heads], num_layers=1, num_heads=2)
    rec.top1 = _Stub({0: torch.tensor([[athens, 0]])})  # head 0 on ` Athens`, head 1 on the template token
    rec.mass = _Stub({0: torch.zeros(1, 2, 4)})
    by_id = rec.step(0, token=7)[0]  # token 7 is no prompt id: no copy by id
    assert by_id.copy == 0.0 and by_id.slot is None
    by_text = rec.step(0, token=7, piece="ath", word="ath")[0]
    assert by_text.copy == 0.5 and by_text.slot == athens and by_text.n_copy == 1
    assert rec.step(0, token=pr.input_ids[athens])[0].copy == 0.5  # the same id still counts without text
    assert rec.step(0, token=7, piece="tok", word="tok")[0].copy == 0.0


def _answer(text: str, cuts: list[int], copy: list[float]):
    """Token records of `text` cut at `cuts`, with the given copy per token (no mass)."""
    from retrieval_heads.monitor.recording import StepSignals

    bounds = [0, *cuts, len(text)]
    return [make_token(i, i, text[a:b], a, text[:b], StepSignals(c, 0.0, int(c > 0), 0.0, None), None, -1.0, 1.0)
            for i, ((a, b), c) in enumerate(zip(zip(bounds, bounds[1:]), copy))]


def test_an_invented_name_is_never_supported():
    answer = "The current keeper is Agnes Holloway."
    spans = [(0, 3), (3, 11), (11, 18), (18, 21), (21, 27), (27, 36), (36, 37)]
    assert absent_words(answer, spans, CONTEXT, QUESTION) == [False, True, False, False, True, True, False]
    toks = _answer(answer, [a for a, _ in spans[1:]], [0.5] * 7)  # every token "copied" by the heads
    rep = report(answer, toks, "given", 40, context=CONTEXT, question=QUESTION)
    assert rep.verdict != "supported" and [t.unsupported for t in rep.tokens] == [False, True, False, False, True,
                                                                                  True, False]
    assert report(answer, _answer(answer, [a for a, _ in spans[1:]], [0.5] * 7), "given", 40).verdict == "supported"


def test_a_short_verbatim_copy_is_supported():
    assert copied_verbatim("Four euros.", CONTEXT) and copied_verbatim("tobias rennick", CONTEXT)
    assert not copied_verbatim("Five euros.", CONTEXT) and not copied_verbatim("the", CONTEXT)
    assert not copied_verbatim("euros Four", CONTEXT)  # a run of the context's words, in order
    long = " ".join(CONTEXT.split()[:13])
    assert long in CONTEXT and not copied_verbatim(long, CONTEXT)  # 13 words: no longer short
    toks = _answer("Four euros.", [4, 10], [0.0, 0.0, 0.0])  # no head copied anything
    rep = report("Four euros.", toks, "given", 40, context=CONTEXT, question=QUESTION)
    assert rep.verbatim and rep.verdict == "supported" and not any(t.unsupported for t in rep.tokens)
    assert report("Four euros.", _answer("Four euros.", [4, 10], [0.0] * 3), "given", 40).verdict == "unsupported"


def test_inflections_and_echoes():
    assert absent_words("Two euro.", [(0, 3), (3, 8)], CONTEXT, QUESTION) == [True, False]  # euro ~ euros; two: absent
    assert not is_unsupported(True, False, 0.0, verbatim=True) and is_unsupported(True, True, 1.0, absent=True)
    # an absent word counts even on an echo token
    assert verdict([True], [True], [True], [True]) == "unsupported" and verdict([True], [True], [False]) == "nothing to check"
    assert verdict([True, True], [False, False], [True, True], verbatim=True) == "supported"
    assert np.isfinite(report("x", _answer("x", [], [0.0]), "given", 3, context=CONTEXT).hallucination_score)
