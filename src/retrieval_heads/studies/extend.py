"""Rerun the answers that a token limit cut off, with a higher limit, and score each run as if it had had it.

A run decoded with `max_new_tokens` N cuts some answers off (`cut_off`: the limit ended them, not EOS or the
answer line). Decoding is greedy, so an answer that ended before N ends the same way under any higher limit
(beyond float noise from other batch neighbours); the run at a limit M > N is therefore its uncut answers as
they are plus its cut answers decoded again with M new tokens.

- `extend_run(model, tokenizer, run, max_new_tokens, out)` does that for one `rheads eval` run directory: it
  reruns the cut items under the same config and mask (`EvalConfig.only_ids`) into `out/rerun/` (an eval run
  directory, resumable), checks that the rerun masked the same heads with the same model and dtype, and
  writes `out/summary.json`: the merged run's eval summary at M (accuracy with its bootstrap interval, cut-off
  share, ...) plus `extended` {from, from_max_new_tokens, max_new_tokens, n_rerun, n_rerun_ended,
  n_rerun_correct}.
- `extend_experiment(...)` does it for every finished run of a `rheads cot-experiment` directory (or its
  `only` parts) into `out/<mode>/<run>/` and writes `out/summary.json` in the cot-experiment format (seed
  means, paired top-minus-control differences) and its drop.png, which `cot.format_table` prints and
  `rheads report --cot` shows.

`check_extend(run, max_new_tokens, only)` makes the checks that need no model (the CLI calls it before loading
one); both functions check everything, every part of an experiment, before writing anything.

Left out on purpose: the `mean` ablation (its reference means come from a run's first prompts, which a rerun
of the cut items does not have), sampling (greedy only), and rewriting the original run (it stays as made).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import ParamError, RHeadsError
from ..heads.masks import format_heads, resolve_mask, select_heads
from ..io.jsonl import atomic_write_json, of_type, read_jsonl
from ..io.rundir import claim_run_dir
from ..models.info import model_dims, model_key, model_name
from ..version import FORMAT_VERSION, __version__
from ..viz.cot import drop_plot
from .cot import CotConfig, runs_of, cot_summary as summarize_cot
from ..evals.taskeval import EvalConfig, check_eval, cut_off, run_eval, eval_summary as summarize_eval
from .sweep import check_only, finished, run_parts


@dataclass
class ExtendConfig(Config):
    run: str = ""  # the eval run or cot-experiment directory extended
    max_new_tokens: int = 1024  # the new limit for its cut answers


def _load_run(run: Path, max_new_tokens: int) -> tuple[dict, list[dict], EvalConfig]:
    """(config.json, item records, config) of a finished eval run directory that `max_new_tokens` can extend
    (no model needed)."""
    if not (run / "summary.json").exists() or not (run / "items.jsonl").exists():
        raise RHeadsError(f"{run} is not a finished `rheads eval` run (no summary.json or items.jsonl): "
                          "finish it first by rerunning its command")
    meta = json.loads((run / "config.json").read_text())
    base = EvalConfig.from_dict(meta["config"])
    old = base.max_new_tokens
    if old is not None and max_new_tokens <= old:
        raise ParamError("max_new_tokens", max_new_tokens, f"not above the run's limit ({old}): give a higher one")
    if base.ablation == "mean" and meta.get("masked_heads"):
        raise RHeadsError(f"{run} masks heads with the mean ablation, whose reference means come from the run's "
                          "first prompts: rerun it whole with a higher max_new_tokens instead")
    return meta, of_type(read_jsonl(run / "items.jsonl"), "item"), base


@dataclass
class _Rerun:
    """One eval run's extension, checked against the loaded model (`_plan`)."""

    meta: dict
    records: list[dict]
    config: EvalConfig  # the run's config at the new limit
    cut: list[str]  # ids of the items the old limit cut off
    heads: list[tuple[int, int]]  # the heads the run masked


def _plan(model, tokenizer, run: Path, max_new_tokens: int, batch_size: int | None) -> _Rerun:
    """Every check of extending `run`, before anything is written: the run (`_load_run`), the loaded model and
    dtype, the mask resolving to the heads the run masked, and the rerun itself (`check_eval`)."""
    meta, records, base = _load_run(run, max_new_tokens)
    if meta.get("model_key") and meta["model_key"] != model_key(model):
        raise RHeadsError(f"{run} was made by {meta['model_key']}, not the loaded {model_key(model)}: load the "
                          "run's model with its dtype")
    config = replace(base, max_new_tokens=max_new_tokens, only_ids=None)
    cut = [r["id"] for r in records if cut_off(r, base.max_new_tokens)]
    L, H, _ = model_dims(model)
    heads = select_heads(f"heads:{meta['masked_heads']}", L, H) if meta.get("masked_heads") else []
    if cut:
        again = resolve_mask(config.mask, config.scores, L, H, threshold=config.threshold, seed=config.mask_seed)
        if format_heads(again) != format_heads(heads):  # before any decoding
            raise RHeadsError(f"{run}'s mask {config.mask} now resolves to other heads than the run masked (its score "
                              f"file {config.scores} changed): restore the run's score file")
        check_eval(model, tokenizer, replace(config, only_ids=cut), batch_size)
    return _Rerun(meta, records, config, cut, heads)


def check_extend(run: str | Path, max_new_tokens: int, only: list[str] | None = None) -> None:
    """The checks that need no model, for an eval run or a cot-experiment directory (its finished `only` parts):
    one-line errors before a model loads."""
    run = Path(run)
    if (run / "items.jsonl").exists():
        if only is not None:
            raise ParamError("only", ",".join(only), "picks the parts of a cot-experiment directory; an eval run "
                             "has none")
        _load_run(run, max_new_tokens)
        return
    for part in _parts(run, only):
        _load_run(run / part, max_new_tokens)


def _parts(run: Path, only: list[str] | None) -> list[str]:
    """The finished parts of cot-experiment directory `run` to extend (all, or the `only` ones)."""
    if not (run / "summary.json").exists() or not (run / "config.json").exists():
        raise RHeadsError(f"{run} is not a `rheads cot-experiment` directory (no summary.json)")
    config = CotConfig.from_dict(json.loads((run / "config.json").read_text())["config"])
    parts = runs_of(config)
    check_only(only, [r.name for _, r in parts])
    have = finished(run, [r for _, r in parts])
    return [r.name for _, r in parts if r.name in have and (only is None or r.name in only)]


def extend_run(model, tokenizer, run: str | Path, max_new_tokens: int, out: str | Path, *,
               batch_size: int | None = None, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Rerun the cut answers of eval run `run` with `max_new_tokens` into out/rerun/; returns the merged summary
    (also out/summary.json). `overwrite` starts the rerun over. Everything is checked before `out` is written."""
    run, out = Path(run), Path(out)
    plan = _plan(model, tokenizer, run, max_new_tokens, batch_size)
    config, cut, old = plan.config, plan.cut, EvalConfig.from_dict(plan.meta["config"]).max_new_tokens
    rerun: dict[str, dict] = {}
    if cut:
        run_eval(model, tokenizer, replace(config, only_ids=cut), out / "rerun", batch_size=batch_size,
                 progress=progress, overwrite=overwrite)
        rerun = {r["id"]: r for r in of_type(read_jsonl(out / "rerun" / "items.jsonl"), "item")}
    merged = [rerun.get(r["id"], r) for r in plan.records]
    summary = summarize_eval(merged, config, plan.heads, None, model, batch_size)
    summary["extended"] = {"from": str(run), "from_max_new_tokens": old, "max_new_tokens": max_new_tokens,
                           "n_rerun": len(cut), "n_rerun_ended": sum(not rerun[i]["cut_off"] for i in cut),
                           "n_rerun_correct": sum(rerun[i]["correct"] for i in cut)}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "summary.json", summary)
    return summary


def extend_experiment(model, tokenizer, run: str | Path, max_new_tokens: int, out: str | Path, *,
                      only: list[str] | None = None, batch_size: int | None = None,
                      progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """`extend_run` for every finished run of the cot-experiment directory `run` (or its `only` parts) into
    out/<part>/; returns the cot-experiment summary of the extended runs (also out/summary.json). Every part is
    checked before `out` is claimed."""
    run = Path(run)
    todo = _parts(run, only)
    for part in todo:
        _plan(model, tokenizer, run / part, max_new_tokens, batch_size)
    base = json.loads((run / "summary.json").read_text())
    config = CotConfig.from_dict(json.loads((run / "config.json").read_text())["config"])
    parts = runs_of(config)
    have = finished(run, [r for _, r in parts])
    ext = ExtendConfig(run=str(run), max_new_tokens=max_new_tokens)
    out = claim_run_dir(out, {"version": FORMAT_VERSION, "toolkit": __version__, "config": ext.to_dict()},
                        overwrite=overwrite)
    run_parts([(f"{name}: {have[name].get('n_cut_off', 0)} cut answers",
                lambda name=name: extend_run(model, tokenizer, run / name, max_new_tokens, out / name,
                                             batch_size=batch_size, progress=progress)) for name in todo], progress)
    done = finished(out, [r for _, r in parts])
    summary = summarize_cot(config, parts, done, base["n_retrieval_heads"], base["n_heads"])
    summary["extend_config"] = ext.to_dict()
    summary["extended"] = {name: done[name]["extended"] for name in summary["runs"]}
    atomic_write_json(out / "summary.json", summary)
    if summary["results"]:
        drop_plot(summary["results"], config.modes, out / "drop.png", f"{model_name(model)}: accuracy drop with heads "
                  f"masked ({config.ablation}), cut answers rerun with {max_new_tokens} new tokens")
    return summary


def format_extended(summary: dict) -> str:
    """Per extended run: cut answers rerun, how many now end, how many are now right."""
    lines = [f"{'run':<28}{'rerun':>6}{'ended':>7}{'right':>7}"]
    for name, e in summary["extended"].items():
        lines.append(f"{name:<28}{e['n_rerun']:>6}{e['n_rerun_ended']:>7}{e['n_rerun_correct']:>7}")
    return "\n".join(lines)
