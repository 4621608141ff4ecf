"""The benchmark's items: the plan (counts, unique ids, a seeded order that mixes kinds and lengths), contexts that
hold their sentence and fit the length, the counterfactual facts, labels and token labels."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from retrieval_heads.errors import ParamError, RHeadsError
from retrieval_heads.monitor.bench.items import counterfactual_facts, label_of, materialize, plan, token_labels
from retrieval_heads.monitor.prompt import build_prompt
from retrieval_heads.scoring.judge import judge


def test_counterfactual_facts_are_well_formed():
    facts = counterfactual_facts()
    assert len(facts) == 64 and len({f["id"] for f in facts}) == 64
    for f in facts:
        assert f["answer"] in f["statement"]
        assert not re.search(rf"\b{re.escape(f['common'])}\b", f["statement"], re.I)
        assert f["question"].endswith("?")


def test_plan_counts_and_order():
    items = plan([1000, 2000], [0, 50, 100], niah_per_cell=2, cf_per_cell=1)
    assert len(items) == 26 * 2 * 2 + 64 * 2 and len({i.id for i in items}) == len(items)
    assert plan([1000, 2000], [0, 50, 100]) == plan([1000, 2000], [0, 50, 100])  # deterministic
    head = Counter((i.kind, i.length) for i in items[:60])
    assert len(head) == 4  # the first items already cover every kind and length
    assert Counter(i.depth for i in items).keys() == {0, 50, 100}
    assert plan([1000], [50], limit=5) == plan([1000], [50])[:5]


@pytest.mark.parametrize("kwargs,param", [({"cf_per_cell": -1}, "cf_per_cell"),
                                          ({"unanswerable_per_cell": -2}, "unanswerable_per_cell"),
                                          ({"niah_per_cell": -1}, "niah_per_cell"),
                                          ({"niah_per_cell": 0, "cf_per_cell": 0}, "niah_per_cell"),
                                          ({"limit": 0}, "limit")])
def test_plan_refuses_negative_or_empty_counts(kwargs, param):
    """Worded with the parameter's name (the CLI rewords it with its flag), never with a flag."""
    with pytest.raises(ParamError) as e:
        plan([1000], [50], **kwargs)
    assert e.value.param == param and str(e.value).startswith(f"{param}=") and "--" not in str(e.value)
    flags = {"niah_per_cell": "--niah-per-cell", "cf_per_cell": "--cf-per-cell",
             "unanswerable_per_cell": "--unanswerable-per-cell", "limit": "--limit"}
    assert e.value.for_cli(flags).startswith(f"{flags[param]} {e.value.value}: ")


def test_materialized_context_holds_the_sentence_and_fits(tok, haystack, tmp_path):
    hay = tmp_path / "hay.txt"
    hay.write_text(haystack)
    for item in [i for i in plan([300], [0, 50, 100]) if i.kind == "counterfactual"][:3] + \
            [i for i in plan([300], [50]) if i.kind == "niah"][:2]:
        ctx = materialize(item, tok, haystack)
        assert item.statement in ctx
        n = build_prompt(tok, ctx, item.question).n
        assert item.length - 30 <= n <= item.length


def test_unanswerable_items_hold_another_fact_and_no_answer(tok, haystack):
    items = plan([300, 400], [0, 50, 100], niah_per_cell=0, cf_per_cell=0, unanswerable_per_cell=1)
    assert len(items) == 64 * 2 and {i.kind for i in items} == {"unanswerable"}
    assert plan([300], [50], unanswerable_per_cell=0) == plan([300], [50])  # the default plan is unchanged
    facts = {f["id"]: f for f in counterfactual_facts()}
    for item in [i for i in items if i.length == 300]:  # every fact, the ones whose sentence ends in a name too
        f = facts[item.source]
        assert item.gold == "" and item.common == f["common"] and item.question == f["question"]
        assert item.statement != f["statement"] and f["answer"] not in item.statement
        ctx = materialize(item, tok, haystack)
        assert item.statement in ctx and f["statement"] not in ctx
    # no gold answer: any answer is wrong, a refusal is kept apart
    assert label_of(judge("The capital of France is Paris.", "")) == 1
    assert label_of(judge("The context does not say.", "")) is None


def test_labels():
    assert label_of({"class": "correct", "rouge1_recall": 1.0}) == 0
    assert label_of({"class": "partial", "rouge1_recall": 0.6}) == 0
    assert label_of({"class": "partial", "rouge1_recall": 0.4}) == 1
    assert label_of({"class": "hallucinated", "rouge1_recall": 0.0}) == 1
    assert label_of({"class": "refusal", "rouge1_recall": 0.0}) is None
    assert label_of({"class": "degenerate", "rouge1_recall": 0.0}) is None
    ans = "The capital of France is Paris."
    spans = [(0, 3), (3, 11), (11, 14), (14, 21), (21, 24), (24, 30), (30, 31)]
    q, gold = "What is the capital of France?", "Lyon"
    assert token_labels(ans, spans, 1, q, gold) == [None, 0, None, 0, None, 1, None]
    assert token_labels(ans, spans, 0, q, gold) == [None, 0, None, 0, None, 0, None]
    assert token_labels(ans, spans, None, q, gold) == [None] * 7
