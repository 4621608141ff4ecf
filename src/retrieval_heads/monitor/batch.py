"""`rheads monitor score`: teacher-forced scores for given answers, read from and written to JSONL.

Input: one JSON object per line with `context`, `question` and `answer` (strings) and an optional `id` (default
`line-<n>`); blank lines are skipped. Every line is checked before the model loads; a bad one stops with a one-line
error naming its line number. Output, in `out`: items.jsonl (a header, then one record per input line in input
order: id, hallucination_score, verdict, unsupported spans, tokens and token_scores, the logit baselines on the
same tokens (mean_logprob, min_logprob, max_entropy, mean_entropy, n_tokens) and the score variants), flushed as
it goes (rerun the same command to resume); summary.json (counts, mean score, verdicts, config). Nothing is
written before every item's prompt is checked against the model's context.

Left out on purpose: generating answers (that is `rheads monitor`) and labels (this is label-free scoring).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..config import Config, ModelConfig
from ..errors import RHeadsError
from ..io.jsonl import atomic_write_json, json_objects, read_jsonl
from ..io.rundir import open_run
from ..models.info import model_key, model_meta
from ..version import FORMAT_VERSION, __version__
from .monitor import Monitor


@dataclass
class ScoreConfig(Config):
    model: ModelConfig = field(default_factory=ModelConfig)
    scores: str = ""
    threshold: float = 0.1
    template: str = "default"
    chat: bool | None = None
    input: str = ""


def read_items(path: str | Path) -> list[dict[str, str]]:
    """Validated input items (module docstring); one-line errors name the file and line."""
    path = Path(path)
    if path.is_dir():
        raise RHeadsError(f"input file {path} is a folder: give a JSONL file with context, question, answer per line")
    if not path.is_file():
        raise RHeadsError(f"input file {path} does not exist: give a JSONL file with context, question, answer per line")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise RHeadsError(f"{path} is not UTF-8 text: convert it to UTF-8") from None
    items, seen = [], set()
    for n, where, obj in json_objects(lines, str(path), '{"context": ..., "question": ..., "answer": ...}'):
        for key in ("context", "question", "answer"):
            if key not in obj:
                raise RHeadsError(f"{where} has no {key!r}: each line needs context, question and answer")
            if not isinstance(obj[key], str) or (key != "answer" and not obj[key].strip()):
                raise RHeadsError(f"{where}: {key!r} must be a non-empty string")
        ident = str(obj.get("id", f"line-{n}"))
        if ident in seen:
            raise RHeadsError(f"{where}: id {ident!r} is used twice: give each line its own id")
        seen.add(ident)
        items.append({"id": ident, "line": n, "context": obj["context"], "question": obj["question"],
                      "answer": obj["answer"]})
    if not items:
        raise RHeadsError(f"{path} holds no items: write one JSON object per line")
    return items


def score_record(ident: str, rep) -> dict[str, Any]:
    b = rep.baselines  # the stored signals (signals/): logit statistics and n_tokens
    return {"type": "item", "id": ident, "hallucination_score": rep.hallucination_score, "verdict": rep.verdict,
            "unsupported": [list(s) for s in rep.unsupported], "tokens": [t.text for t in rep.tokens],
            "token_scores": [round(t.score, 5) for t in rep.tokens],
            "sources": [t.source for t in rep.tokens],
            **b,
            "scores": rep.scores}


def run_score(model, tokenizer, config: ScoreConfig, out: str | Path, items: list[dict] | None = None, *,
              overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Score every input item (resuming), write items.jsonl and summary.json; returns the summary. Every item's
    prompt is checked (it fits the model's context) before `out` is touched."""
    items = items if items is not None else read_items(config.input)
    sha = hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:16]
    mon = Monitor(model, tokenizer, config.scores, threshold=config.threshold, template=config.template,
                  chat=config.chat)
    for it in items:  # every prompt is checked before anything is written
        try:
            mon.check(it["context"], it["question"], it["answer"])
        except RHeadsError as e:
            raise RHeadsError(f"{config.input} line {it['line']}: {e}") from None
    meta = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
            "model_key": model_key(model), "model": model_meta(model), "items_sha": sha}
    done, writer = open_run(out, meta, keys=("config", "model_key", "items_sha"), jsonl="items.jsonl", kind="item",
                            overwrite=overwrite)
    with writer:
        for it in tqdm([i for i in items if i["id"] not in done], desc="monitor score", disable=not progress):
            try:
                rep = mon.score(it["context"], it["question"], it["answer"])
            except RHeadsError as e:
                raise RHeadsError(f"{config.input} line {it['line']}: {e}") from None
            writer.write(score_record(it["id"], rep))
    recs = {r["id"]: r for r in read_jsonl(Path(out) / "items.jsonl") if r.get("type") == "item"}
    scores = [recs[i["id"]]["hallucination_score"] for i in items if recs[i["id"]]["hallucination_score"] is not None]
    summary = {"config": config.to_dict(), "model": model_meta(model), "n": len(items),
               "mean_hallucination_score": round(sum(scores) / len(scores), 4) if scores else None,
               "verdicts": dict(Counter(recs[i["id"]]["verdict"] for i in items))}
    atomic_write_json(Path(out) / "summary.json", summary)
    return summary
