"""Hand-made RAG cases on the real SmolLM2-135M-Instruct (integration: loads the GGUF model, about 20 s): a 306-word
library notice (opening hours, fees, staff), questions about it, and given and generated answers. An invented
name is never `supported`; short answers copied from the notice are; the copy test by text finds at least every
copy the test by token id finds, and more where the answer is tokenized unlike the notice (`T` + `obias` against
` Tob` + `ias`)."""

from __future__ import annotations

import pytest

from retrieval_heads.monitor import Monitor

pytestmark = pytest.mark.integration

LIBRARY = """Harbour Street Library: visitor information

The Harbour Street Library is a small public library in the old customs house by the harbour in Kelmarsh. It was founded in 1894 by the merchant Eliza Crane, whose portrait hangs above the main staircase.

Opening hours. The library opens at nine in the morning from Monday to Friday and closes at six in the evening. On Saturdays it opens at ten and closes at two. It is closed on Sundays and on public holidays. The reading room on the first floor keeps the same hours, except on Wednesdays, when it stays open until eight.

Fees. Borrowing books is free for residents of Kelmarsh. Visitors from elsewhere pay an annual card fee of twelve euros. A day pass for the reading room costs four euros. Printing costs ten cents a page, and a lost card is replaced for two euros. Late returns are charged twenty cents per book per day, up to a limit of five euros per book.

Staff. The head librarian is Tobias Rennick, who has run the library since 2011. The children's corner is looked after by Maren Voss, who reads stories aloud every Thursday afternoon. The archive of old harbour records is kept by Ivo Lindqvist, and visits to the archive must be booked with him a week in advance. Volunteers from the town help at the front desk on Saturdays.

Services. The library lends books, newspapers and maps, and it offers free wireless internet in every room. Four computers are available for public use and can be booked for one hour at a time. Groups of up to ten people can reserve the meeting room in the basement free of charge, but only during opening hours. Guided tours of the building take place on the first Saturday of each month and last about forty minutes."""
KEEPER = "Who is the current keeper of the library?"
HEAD = "Who is the head librarian?"
DAY_PASS = "How much does a day pass for the reading room cost?"


@pytest.fixture(scope="module")
def monitors():
    from retrieval_heads.models.loading import load_model

    model, tok = load_model("smollm2-135m")
    scores = "docs/runs/smollm2/scores.json"
    return {m: Monitor(model, tok, scores, max_new_tokens=24, copy_match=m) for m in ("text", "id")}


@pytest.mark.parametrize("question,answer", [(KEEPER, "The current keeper is Agnes Holloway."),
                                             (HEAD, "Agnes Holloway."), (DAY_PASS, "Seven euros.")])
def test_an_invented_answer_is_not_supported(monitors, question, answer):
    rep = monitors["text"].score(LIBRARY, question, answer)
    assert rep.verdict != "supported"
    invented = [t for t in rep.tokens if t.absent]
    assert invented and all(t.unsupported for t in invented)
    assert {w for t in invented for w in t.text.split()} <= {"current", "Agnes", "Hollow", "ay", "A", "gn", "es",
                                                             "Seven"}


@pytest.mark.parametrize("question,answer", [(DAY_PASS, "Four euros."), (HEAD, "Tobias Rennick.")])
def test_a_short_answer_copied_from_the_notice_is_supported(monitors, question, answer):
    rep = monitors["text"].score(LIBRARY, question, answer)
    assert rep.verbatim and rep.verdict == "supported" and not rep.unsupported


def test_text_matching_finds_copies_across_tokenizations(monitors):
    by_text = monitors["text"].score(LIBRARY, HEAD, "Tobias Rennick.")
    by_id = monitors["id"].score(LIBRARY, HEAD, "Tobias Rennick.")
    assert [t.text for t in by_text.tokens][:2] == ["T", "obias"]  # the notice holds ` Tob` + `ias`
    assert all(a.copy >= b.copy for a, b in zip(by_text.tokens, by_id.tokens))
    assert by_id.tokens[1].copy == 0.0 < by_text.tokens[1].copy
    assert by_text.hallucination_score < by_id.hallucination_score


def test_a_generated_answer_links_the_name_to_the_notice(monitors):
    rep = monitors["text"].run(LIBRARY, HEAD)
    assert "Tobias Rennick" in rep.answer  # greedy and deterministic
    at = rep.answer.index("Tobias Rennick")
    name = [t for t in rep.tokens if at <= t.start < at + len("Tobias Rennick")]
    assert name and not any(t.unsupported for t in name)
    linked = [t for t in name if t.source and t.source["kind"] == "context"]
    assert len(linked) >= len(name) - 1
    for t in linked:
        assert LIBRARY[t.source["start"]:t.source["end"]].strip() in "Tobias Rennick"
    by_id = monitors["id"].score(LIBRARY, HEAD, [t.token_id for t in rep.tokens])
    assert all(a.copy >= b.copy for a, b in zip(rep.tokens, by_id.tokens))
