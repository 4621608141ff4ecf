"""ROUGE-1 recall of an answer in a response, with rouge-score.

Left out on purpose: other ROUGE variants.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1"], use_stemmer=False)


def rouge1_recall(response: str, reference: str) -> float:
    """ROUGE-1 recall of `reference` (the answer) in `response`, in [0, 1] (the paper's filter uses > 0.5)."""
    return float(_rouge().score(reference, response)["rouge1"].recall)
