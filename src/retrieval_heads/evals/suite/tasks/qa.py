"""RULER's QA family: `qa_2`, multi-hop QA over HotpotQA-derived paragraphs (HaluEval QA's `knowledge`).

Sample i asks the question of the i-th usable row in a seeded order; its gold paragraph sits among
distractor paragraphs of other usable rows (n = documents, gold included), shuffled, written as RULER's
"Document {i}:\\n{paragraph}". Reserved rows are never read (`qadata.py`). Metric: `string_match_part`.

Left out on purpose: `qa_1` (SQuAD), and splitting a HaluEval paragraph into its two source paragraphs.
"""

from __future__ import annotations

import random

from ..common import sample_seed
from ..qadata import load_rows
from ..registry import Built, SuiteTask, register_task

TEMPLATE = ("Answer the question based on the given documents. Only give me the answer and do not output any other "
            "words.\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the given "
            "documents. Only give me the answer and do not output any other words.\n\nQuestion: {query}")
PREFIX = " Answer:"


@register_task("qa_2", dataset="halueval")
class QA(SuiteTask):
    family, metric, tokens_to_generate = "qa", "string_match_part", 32
    unit = "documents"
    description = "multi-hop QA: HotpotQA-derived paragraphs (HaluEval QA), the gold one among distractors"

    def rows(self, ctx):
        if "qa_rows" not in ctx._cache:
            rows = [r for r in load_rows(ctx.qa_data, ctx.heldout) if ctx.qa_keep is None or ctx.qa_keep(r)]
            order = list(range(len(rows)))
            random.Random(sample_seed(ctx.seed, self.name, "order")).shuffle(order)
            ctx._cache["qa_rows"] = (rows, order)
        return ctx._cache["qa_rows"]

    def check(self, ctx) -> None:
        self.rows(ctx)

    def max_units(self, ctx) -> int | None:
        return len(self.rows(ctx)[0])

    def parts(self, ctx, seed: int, n: int, index: int = 0) -> tuple[str, str, list[str]]:
        """(the n documents as RULER writes them, the question, the gold answers) of a sample: what `build` wraps
        in RULER's template, and what `rheads answer bench`'s `qa_2` family uses as context and question."""
        rows, order = self.rows(ctx)
        rng = random.Random(seed)
        q = order[index % len(order)]
        others = [i for i in rng.sample(range(len(rows)), min(len(rows), n + 1)) if i != q][: n - 1]
        docs = [rows[q].knowledge] + [rows[i].knowledge for i in others]
        random.Random(rng.getrandbits(64)).shuffle(docs)
        context = "\n\n".join(f"Document {i + 1}:\n{d}" for i, d in enumerate(docs))
        return context, rows[q].question, [rows[q].answer]

    def build(self, ctx, seed: int, n: int, index: int = 0) -> Built:
        context, question, gold = self.parts(ctx, seed, n, index)
        return Built(TEMPLATE.format(context=context, query=question), PREFIX, gold)
