"""`rheads answer`: every chosen method answers every input item; the monitor scores every answer.

Out, in `out`:
- `config.json`: the run's `AnswerConfig` (methods and each one's resolved parameters), model key and items hash;
- `answers.jsonl`: a header line, then one record per item and method, written as it goes (rerun the same
  command to resume; finished pairs are not redone): `id`, `method`, `answer`, `abstained`, `hallucination_score`
  (the monitor's teacher-forced score of the generated answer; for an abstained row, of the answer it withheld),
  `verdict`, `mean_logprob` (of the chosen tokens under the method's distribution), `new_tokens`, `seconds`
  (generation only: not loading, not the monitor's scoring after it; with the shared prefill, the method's own
  decoding plus `prefill_seconds`, the measured prefills of the prefixes it used, `loop.py`), `correct` (a gold
  string found in the answer, case- and punctuation-insensitive on word boundaries, `scoring.judge.contains_answer`;
  false when abstained; null without gold), `generated` (the text before any refusal), `reason` (eos, stop, length) and
  `monitor_baselines` (the logit statistics and RAUQ of the monitor's teacher-forced pass over the same tokens,
  every head recorded there);
- `summary.json`: per method `n`, `accuracy` and `selective_accuracy` (over the items with gold; selective = among
  those not abstained; null when none), `abstention_rate`, `coverage`, `mean_seconds`,
  `mean_hallucination_score`, `mean_new_tokens`.
Every input line and every prompt's fit in the model's context is checked before anything is written. A folder
may gather methods over several runs: a later run with other methods adds theirs (config.json and summary.json
then cover every method in the folder), as long as the rest of the config agrees and a method named again keeps
its parameters.
`shard` ("i/n") answers the i-th of n parts of the items, balanced by their prompt lengths in tokens
(`cluster/shard.py`), with every method: the shard's folder is a whole run over those items, with shard.json
naming them; `rheads merge` combines the n folders (each item's records in method order, the items in the input's
order) and summarizes once more. A shard's folder holds the methods of one command (the merge reruns that one):
adding methods to it later is refused.

Left out on purpose: the issue's benchmark (item families, intervals, risk-coverage curves): this runs given items.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cluster.shard import select
from ..config import Config, ModelConfig
from ..errors import ParamError, RHeadsError
from ..io.jsonl import atomic_write_json, read_jsonl
from ..io.rundir import open_run
from ..version import FORMAT_VERSION, __version__
from .items import read_items
from .registry import get_method_class, parse_methods


@dataclass
class AnswerConfig(Config):
    model: ModelConfig = field(default_factory=ModelConfig)
    scores: str = ""
    threshold: float = 0.1  # retrieval heads score above it (the monitor's and the methods' head set)
    template: str = "default"
    chat: bool | None = None
    input: str = ""
    methods: list[str] = field(default_factory=lambda: ["greedy"])
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> parameter -> value
    max_new_tokens: int = 32
    shared_prefill: bool = True  # one prefill per question and ablation, copied into every pass (loop.py)
    shard: str | None = None  # "i/n": only the i-th of n cost-balanced parts of the items (cluster/shard.py)


def build_methods(config: AnswerConfig) -> dict[str, Any]:
    """The method objects of the config, in its order; `config.params` is replaced by every parameter resolved."""
    names = parse_methods(config.methods)
    extra = sorted(set(config.params) - set(names))
    if extra:
        key = next(iter(config.params[extra[0]] or {}), "")
        raise ParamError("params", f"{extra[0]}.{key}", f"names no method of {{methods}} ({','.join(names)}): add "
                         f"{extra[0]} there, or fix the name")
    methods = {n: get_method_class(n)(**config.params.get(n, {})) for n in names}
    config.methods = names
    config.params = {n: m.settings() for n, m in methods.items()}
    return methods


def _correct(answer: str, gold: list[str] | None, abstained: bool) -> bool | None:
    from ..scoring.judge import contains_answer

    if gold is None:
        return None
    return (not abstained) and any(contains_answer(answer, g) for g in gold)


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(sum(xs) / len(xs), 4) if xs else None


def summarize(records: list[dict], methods: list[str]) -> dict[str, dict[str, Any]]:
    """Per method: the figures of the module docstring, from its answer records."""
    out = {}
    for m in methods:
        rs = [r for r in records if r["method"] == m]
        gold = [r for r in rs if r["correct"] is not None]
        kept = [r for r in gold if not r["abstained"]]
        n = len(rs)
        out[m] = {"n": n, "n_gold": len(gold),
                  "accuracy": round(sum(r["correct"] for r in gold) / len(gold), 4) if gold else None,
                  "abstention_rate": round(sum(r["abstained"] for r in rs) / n, 4) if n else None,
                  "coverage": round(sum(not r["abstained"] for r in rs) / n, 4) if n else None,
                  "selective_accuracy": round(sum(r["correct"] for r in kept) / len(kept), 4) if kept else None,
                  "mean_seconds": _mean([r["seconds"] for r in rs]),
                  "mean_hallucination_score": _mean([r["hallucination_score"] for r in rs]),
                  "mean_new_tokens": _mean([r["new_tokens"] for r in rs])}
    return out


def format_table(summary: dict[str, Any]) -> str:
    """The per-method summary as a markdown table."""
    cols = ("n", "accuracy", "abstention_rate", "selective_accuracy", "mean_seconds", "mean_hallucination_score")
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for m, s in summary["methods"].items():
        cells = ["-" if s[c] is None else (f"{s[c]:.3f}" if isinstance(s[c], float) else str(s[c])) for c in cols]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


_PER_METHOD = ("methods", "params")


def _settings(config_dict: dict) -> dict:
    """The config without the per-method fields: what every run sharing a folder must agree on."""
    return {k: v for k, v in config_dict.items() if k not in _PER_METHOD}


def _same_setting(method: str, old: dict, new: dict) -> bool:
    """The same parameters; a parameter the method gained since the old run counts as the same at its default
    (that run ran without it, as the default does)."""
    defaults = get_method_class(method).params
    return set(old) <= set(new) and all(new[k] == v for k, v in old.items()) and \
        all(new[k] == defaults.get(k) for k in set(new) - set(old))


def _merge_previous(out: Path, config: AnswerConfig, overwrite: bool) -> AnswerConfig:
    """The config of the folder after this run: earlier methods first, then this run's new ones (module docstring)."""
    path = out / "config.json"
    if overwrite or not path.is_file():
        return config
    try:
        old = json.loads(path.read_text()).get("config") or {}
    except (json.JSONDecodeError, AttributeError):
        return config  # claim_run_dir words the error
    old_params = old.get("params") or {}
    for m in config.methods:
        if m in old_params and not _same_setting(m, old_params[m], config.params[m]):
            raise ParamError("out", str(out), f"holds {m} answers made with other parameters ({old_params[m]}): "
                             "start over there ({overwrite}), use another {out}, or give the same {params}")
    earlier = [m for m in old.get("methods") or [] if isinstance(m, str)]
    merged = AnswerConfig.from_dict(config.to_dict())
    merged.methods = earlier + [m for m in config.methods if m not in earlier]
    merged.params = {**{m: old_params.get(m, {}) for m in earlier}, **config.params}
    return merged


def run_answer(model, tokenizer, config: AnswerConfig, out: str | Path, items: list[dict] | None = None, *,
               overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Answer every item with every method (resuming), score each answer, write the files of the module
    docstring; returns the summary."""
    from tqdm.auto import tqdm

    from ..models.info import model_key, model_meta
    from .loop import Answerer

    items = items if items is not None else read_items(config.input)
    if isinstance(config.max_new_tokens, bool) or not isinstance(config.max_new_tokens, int) \
            or config.max_new_tokens < 1:
        raise ParamError("max_new_tokens", config.max_new_tokens, "give the answer's token budget, a whole number "
                         ">= 1")
    methods = build_methods(config)
    answerer = Answerer(model, tokenizer, config.scores, threshold=config.threshold, template=config.template,
                        chat=config.chat, baselines=True, share_prefill=config.shared_prefill)
    tokens = {}  # item id -> prompt length in tokens (a shard's cost)
    for it in items:  # every prompt is checked before anything is written
        try:
            tokens[it["id"]] = answerer.monitor.prompt(it["context"], it["question"], config.max_new_tokens).n
        except RHeadsError as e:
            raise RHeadsError(f"{config.input or 'input'} line {it['line']}: {e}") from None

    def shard(out: Path | None = None) -> list[dict]:
        return select(items, config.shard, cost=lambda it: tokens[it["id"]], key=lambda it: it["id"], out=out,
                      jsonl="answers.jsonl", kind="answer", what="items")

    shard()  # a bad shard is refused here, before out is touched
    sha = hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:16]
    folder = _merge_previous(Path(out), config, overwrite)
    if config.shard is not None and folder.methods != config.methods:
        raise ParamError("out", str(out), f"holds answers by {','.join(folder.methods)}: a shard's folder "
                         "holds the methods of one command (`rheads merge` reruns that command), so give "
                         f"{{methods}} {','.join(folder.methods)}, or use another {{out}}")
    meta = {"version": FORMAT_VERSION, "toolkit": __version__, "config": folder.to_dict(),
            "setup": _settings(config.to_dict()), "model_key": model_key(model), "model": model_meta(model),
            "items_sha": sha}
    _, writer = open_run(out, meta, keys=("setup", "model_key", "items_sha"), jsonl="answers.jsonl", kind="answer",
                         defaults={"setup": _settings(config.defaults())}, overwrite=overwrite)
    path = Path(out) / "answers.jsonl"
    items = shard(Path(out))
    done = {(r["id"], r["method"]) for r in read_jsonl(path) if r.get("type") == "answer"}
    todo = [(it, m) for it in items for m in methods if (it["id"], m) not in done]
    with writer:
        for it, name in tqdm(todo, desc="answer", disable=not progress):
            got = answerer.answer(methods[name], it["context"], it["question"], config.max_new_tokens)
            rep = answerer.report(it["context"], it["question"], got.generated_ids)
            writer.write({"type": "answer", "id": it["id"], "method": name, "answer": got.answer,
                          "abstained": got.abstained, "hallucination_score": rep.hallucination_score,
                          "verdict": rep.verdict,
                          "mean_logprob": None if got.mean_logprob is None else round(got.mean_logprob, 5),
                          "new_tokens": len(got.generated_ids), "seconds": round(got.seconds, 4),
                          "prefill_seconds": round(got.prefill_seconds, 4),
                          "correct": _correct(got.answer, it["answers"], got.abstained),
                          "generated": got.generated, "reason": got.reason,
                          "monitor_baselines": rep.baselines})
    ids = {it["id"] for it in items}
    records = [r for r in read_jsonl(path) if r.get("type") == "answer" and r["id"] in ids
               and r["method"] in folder.methods]
    summary = {"config": folder.to_dict(), "model": model_meta(model), "n_items": len(items),
               "methods": summarize(records, folder.methods)}
    atomic_write_json(Path(out) / "summary.json", summary)
    return summary
