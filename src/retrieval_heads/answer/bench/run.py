"""`rheads answer bench`: build the item families (`items.py`), answer every item with every method
(`answer/run.py`: answers.jsonl, resumable, the monitor scoring every answer), then evaluate (`evaluate.py`).

Out, in `out`: everything `rheads answer` writes (config.json, answers.jsonl, summary.json), plus `items.jsonl`
(the generated items, family and `common` included), `bench.json` (the config and every figure of `evaluate.py`),
`tables.md` and `risk_coverage.png` (greedy's selective accuracy against coverage, the monitor's score as the
selector, one curve per family). Every item's prompt is checked against the model's context before anything is
written; rerunning resumes.

`--split tune` builds the disjoint tuning items (`items.py`): a grid of settings run there as variants of each
method (`copy:k10`, `answer/registry.py`), and the best chosen there (`tune.py`), leaves the `eval` items untouched
for the report.

Left out on purpose: sharding (run `rheads answer --shard` on the written items.jsonl).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...config import Config, ModelConfig
from ...io.jsonl import atomic_write_json, read_jsonl
from ..run import AnswerConfig, run_answer
from .evaluate import evaluate, format_tables
from .items import DEFAULT_FAMILIES, bench_items


@dataclass
class AnswerBenchConfig(Config):
    model: ModelConfig = field(default_factory=ModelConfig)
    scores: str = ""
    threshold: float = 0.1
    methods: list[str] = field(default_factory=lambda: ["greedy", "cad", "decore", "copy", "gated", "abstain"])
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_new_tokens: int = 32
    families: list[str] = field(default_factory=lambda: list(DEFAULT_FAMILIES))  # qa_2 too on request
    lengths: list[int] = field(default_factory=lambda: [2000, 4000, 8000])
    depths: list[float] = field(default_factory=lambda: [0, 25, 50, 75, 100])
    halueval_items: int = 100
    split: str = "eval"  # eval: the reported items; tune: the disjoint items parameters may be chosen on
    per_family: int | None = None  # a seeded sample of this many items per family (None: all)
    seed: int = 42
    haystack: str = "paul-graham"
    template: str = "default"
    chat: bool | None = None
    qa_data: str | None = None
    heldout: str | None = None
    shared_prefill: bool = True

    def answer_config(self) -> AnswerConfig:
        return AnswerConfig(model=self.model, scores=self.scores, threshold=self.threshold, template=self.template,
                            chat=self.chat, input="answer bench items", methods=list(self.methods),
                            params=dict(self.params), max_new_tokens=self.max_new_tokens,
                            shared_prefill=self.shared_prefill)


def run_answer_bench(model, tokenizer, config: AnswerBenchConfig, out: str | Path, *, overwrite: bool = False,
                     progress: bool = True) -> dict[str, Any]:
    """Build, answer, evaluate (module docstring); returns bench.json's content."""
    from ...models.info import model_dims
    from ...viz.answer import risk_coverage_plot

    _, _, max_ctx = model_dims(model)
    items = bench_items(tokenizer, families=config.families, lengths=config.lengths, depths=config.depths,
                        halueval_items=config.halueval_items, seed=config.seed, haystack=config.haystack,
                        template=config.template, chat=config.chat, qa_data=config.qa_data, heldout=config.heldout,
                        max_context=max_ctx or None, split=config.split, per_family=config.per_family)
    answers = [{k: it[k] for k in ("id", "line", "context", "question", "answers")} for it in items]
    acfg = config.answer_config()
    summary = run_answer(model, tokenizer, acfg, out, items=answers, overwrite=overwrite, progress=progress)
    out = Path(out)
    with (out / "items.jsonl").open("w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps({k: v for k, v in it.items() if k != "line"}) + "\n")
    records = [r for r in read_jsonl(out / "answers.jsonl") if r.get("type") == "answer"]
    ev = evaluate(records, items, list(summary["methods"]))  # every method of the folder, not only this run's
    result = {"config": config.to_dict(), "n_items": len(items),
              "families": {f: sum(it["family"] == f for it in items) for f in config.families},
              "summary": summary["methods"], **ev}
    atomic_write_json(out / "bench.json", result)
    (out / "tables.md").write_text(format_tables(ev) + "\n")
    if ev["risk_coverage"]:
        risk_coverage_plot(ev["risk_coverage"], out / "risk_coverage.png",
                           f"{config.model.model}: greedy answers kept by the monitor's score")
    return result
