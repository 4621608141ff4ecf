"""The monitor on the real SmolLM2-135M-Instruct with its detected retrieval heads (integration: loads the GGUF
model, about 20 s): on a short NIAH prompt the answer's tokens that come from the needle are linked to the needle's
characters in the context, a made-up continuation scores worse than the needle's own answer when both are
teacher-forced, and the streamed and teacher-forced signals agree."""

from __future__ import annotations

import pytest

from retrieval_heads.monitor import Monitor
from retrieval_heads.monitor.bench.items import BenchItem, materialize
from retrieval_heads.probes.haystack import get_haystack
from retrieval_heads.probes.needles import get_needles

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def setup():
    from retrieval_heads.models.loading import load_model

    model, tok = load_model("smollm2-135m")
    nd = get_needles("eval")[2]  # the oldest tree in Mirelow Forest is a giant silver birch
    item = BenchItem("t", "niah", "n-02", 600, 50, nd.question, nd.real_needle, None, nd.needle)
    context = materialize(item, tok, get_haystack("paul-graham"))
    return Monitor(model, tok, "docs/runs/smollm2/scores.json", max_new_tokens=24), context, nd


def test_needle_tokens_link_to_the_needle(setup):
    mon, context, nd = setup
    rep = mon.run(context, nd.question)
    assert nd.real_needle in rep.answer  # SmolLM2 finds this needle at 600 tokens (greedy, deterministic)
    a = context.index(nd.needle)
    needle_span = (a, a + len(nd.needle))
    answer_at = rep.answer.index(nd.real_needle)
    inside = [t for t in rep.tokens if answer_at <= t.start < answer_at + len(nd.real_needle) and t.content]
    linked = [t for t in inside if t.source and t.source["kind"] == "context"]
    assert len(linked) >= len(inside) // 2
    for t in linked:
        assert needle_span[0] <= t.source["start"] < t.source["end"] <= needle_span[1]
        assert context[t.source["start"]:t.source["end"]].strip().lower() == t.text.strip().lower()
    forced = mon.score(context, nd.question, [t.token_id for t in rep.tokens])
    for g, f in zip(rep.tokens, forced.tokens):
        assert (g.copy, g.copy_q) == pytest.approx((f.copy, f.copy_q), abs=1e-6)
        assert g.mass == pytest.approx(f.mass, abs=1e-3)


def test_a_made_up_answer_scores_worse_than_the_needle(setup):
    mon, context, nd = setup
    good = mon.score(context, nd.question, f"The oldest tree in Mirelow Forest is {nd.real_needle}.")
    bad = mon.score(context, nd.question, "The oldest tree in Mirelow Forest is a small purple maple.")
    assert bad.hallucination_score > good.hallucination_score
    made_up = [t for t in bad.tokens if t.text.strip() in ("purple", "maple")]
    assert made_up and all(t.unsupported for t in made_up)
