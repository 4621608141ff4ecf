"""The item families of `rheads answer bench`, each item `{"id", "family", "context", "question", "answers",
"common"}` (`common`: the real-world answer a counterfactual context overrides, else None):

- `niah`: an `eval` needle in the Paul Graham haystack at each length and depth (the monitor benchmark's plan,
  `monitor/bench/items.py`, one depth per needle and length); gold: the needle's answer;
- `counterfactual`: a changed fact (`monitor/data/counterfactual.jsonl`) in the haystack at each length; gold: the
  stated answer; answering the real-world one (`common`) is a hallucination from memory;
- `halueval`: HaluEval QA's knowledge paragraph as the context and its question (HotpotQA-derived), the reserved
  rows of `halueval_qa_heldout_rows.txt` dropped unread (`evals/suite/qadata.py`); `halueval_items` rows drawn
  with `seed`; gold: the row's right answer.

- `qa_2`: the suite's `qa_2` samples (`evals/suite/tasks/qa.py`): at each length, one per depth's worth of items
  (as many as NIAH has per length), the gold HaluEval paragraph among distractor paragraphs up to that length of
  the suite's prompt; context: the documents, question: the row's question, gold: its right answer.

Two disjoint splits (`split`): `eval`, the items a method is reported on, and `tune`, the items its parameters may
be chosen on (`rheads answer bench --split tune`): NIAH takes the `eval` needles against the `detect` ones, the
counterfactual facts and the HaluEval rows alternate (even against odd positions in their files); `qa_2` draws its
questions and distractors from the even rows only, and has no tune split (it is refused there). `per_family` keeps
a seeded sample of that many items of each family.

Left out on purpose: fitting anything here (the bench only builds the items a tuning run or a report uses).
"""

from __future__ import annotations

import random

from ...errors import ParamError
from ...monitor.bench.items import counterfactual_facts, materialize, plan
from ...probes.haystack import get_haystack

FAMILIES = ("niah", "counterfactual", "halueval", "qa_2")
SPLITS = ("eval", "tune")
DEFAULT_FAMILIES = ("niah", "counterfactual", "halueval")  # qa_2's long distractor prompts on request


def bench_items(tokenizer, *, families: list[str], lengths: list[int], depths: list[float], halueval_items: int,
                seed: int, haystack: str = "paul-graham", template: str = "default", chat: bool | None = None,
                qa_data: str | None = None, heldout: str | None = None, max_context: int | None = None,
                split: str = "eval", per_family: int | None = None) -> list[dict]:
    """The items of the chosen families, in family order (see the module docstring)."""
    bad = [f for f in families if f not in FAMILIES]
    if bad or not families:
        raise ParamError("families", bad[0] if bad else families, f"use some of {', '.join(FAMILIES)}")
    if split not in SPLITS:
        raise ParamError("split", split, f"use one of {', '.join(SPLITS)}")
    if split == "tune" and "qa_2" in families:
        raise ParamError("split", split, "qa_2 has no tune split: leave qa_2 out of the families when tuning")
    if per_family is not None and (isinstance(per_family, bool) or not isinstance(per_family, int) or per_family < 1):
        raise ParamError("per_family", per_family, "give a number of items per family >= 1, or leave it out for all")
    parity = 0 if split == "eval" else 1
    out: list[dict] = []
    hay = get_haystack(haystack) if {"niah", "counterfactual"} & set(families) else None
    cf_ids = [f["id"] for f in counterfactual_facts()]
    cf_keep = {fid for i, fid in enumerate(cf_ids) if i % 2 == parity}
    needles = "eval" if split == "eval" else "detect"
    for fam, kw in (("niah", dict(niah_per_cell=1, cf_per_cell=0)), ("counterfactual", dict(niah_per_cell=0,
                                                                                             cf_per_cell=1))):
        if fam not in families:
            continue
        planned = [it for it in plan(lengths, depths, seed=seed, needles=needles, **kw)
                   if fam == "niah" or it.source in cf_keep]
        for it in sorted(_sample(planned, per_family, seed), key=lambda i: i.id):
            ctx = materialize(it, tokenizer, hay, template, chat, max_context=max_context)
            out.append({"id": f"{fam}-{it.id}", "family": fam, "context": ctx, "question": it.question,
                        "answers": [it.gold], "common": it.common})
    if "halueval" in families:
        from ...evals.suite.qadata import load_rows

        if halueval_items < 1:
            raise ParamError("halueval_items", halueval_items, "use at least 1 HaluEval item")
        rows = [r for r in load_rows(qa_data, heldout) if r.line % 2 == parity]
        n = min(halueval_items, per_family or halueval_items, len(rows))
        for r in sorted(random.Random(seed).sample(rows, n), key=lambda r: r.line):
            out.append({"id": f"halueval-{r.line}", "family": "halueval", "context": r.knowledge,
                        "question": r.question, "answers": [r.answer], "common": None})
    if "qa_2" in families:
        out += _sample(qa2_items(tokenizer, lengths, len(depths), seed, chat, qa_data, heldout, parity), per_family,
                       seed)
    for i, it in enumerate(out):
        it["line"] = i + 1  # what run_answer's errors name
    return out


def _sample(items: list, n: int | None, seed: int) -> list:
    """A seeded sample of `n` of `items` in their order (all of them when n is None or not smaller)."""
    if n is None or n >= len(items):
        return list(items)
    keep = set(random.Random(seed).sample(range(len(items)), n))
    return [it for i, it in enumerate(items) if i in keep]


def qa2_items(tokenizer, lengths: list[int], per_length: int, seed: int, chat: bool | None, qa_data: str | None,
              heldout: str | None, parity: int = 0) -> list[dict]:
    """The suite's `qa_2` samples as answer items: per length, `per_length` samples fitted to that length with the
    suite's own prompt (`evals/suite/fit.py`), their documents the context and their question the question; only
    HaluEval rows whose line number has the split's `parity` (the eval split's: even)."""
    from ...evals.suite.common import TaskContext, sample_seed
    from ...evals.suite.fit import make_sample
    from ...evals.suite.prompt import PromptBuilder
    from ...evals.suite.registry import get_task

    task, prompt, shared, out = get_task("qa_2"), PromptBuilder(tokenizer, chat), {}, []
    for n in lengths:
        ctx = TaskContext(target=n, qa_data=qa_data, heldout=heldout, seed=seed, _cache=shared,
                          qa_keep=lambda r: r.line % 2 == parity)  # the eval split's rows only: none a tune row
        for i in range(per_length):
            s = make_sample(task, ctx, prompt, n, i, seed)
            context, question, gold = task.parts(ctx, sample_seed(seed, task.name, n, i), s.units, i)
            out.append({"id": f"qa_2-{n}-{i}", "family": "qa_2", "context": context, "question": question,
                        "answers": gold, "common": None})
    return out
