"""Chain-of-thought vs closed-book knowledge with retrieval heads masked.

The claim tested (Wu et al. 2024): retrieval heads matter for chain-of-thought, where the model keeps
referring back to the question and to its own earlier steps, and much less when it answers from its own
knowledge. `run_cot_experiment(model, tokenizer, config, out)` runs, on one loaded model:

1. accuracy for the modes in `config.modes`: `cot` and `direct` on a reasoning task (gsm8k by default, or
   the generated vartrack / wordproblems) and `closedbook` on closedbook-facts; each as a sweep (`sweep.py`):
   unmasked (K=0), the top-K retrieval heads masked, and each control (`random`, `random-layer`) over
   `random_seeds` draws. Every run is an `evaluate.run_eval` directory (`<mode>/k0-baseline`,
   `<mode>/top-k<K>`, `<mode>/random-k<K>-seed<s>`, ...), each resumable, so the whole experiment resumes.
   `only` runs a subset of them, so that processes sharing `out` can split the runs (one per core or GPU);
   a part another live process is writing is skipped (its directory is locked, `io.rundir`).
2. the copy analysis (`copyshare.py`) over the first `copy_items` CoT items, unmasked.

Outputs in `out`: config.json; summary.json (`results`: [{task, mode, mask, k, accuracy, ci95, n,
relative_drop, cut_off_share, ...}] where mask is none, top or a control, a control's accuracy being the mean
over seeds and its interval bootstrapped over seeds then items; `relative_drop` = (base - acc) / base, null
when the baseline is 0; `cut_off_share`: answers stopped by the token limit, not by EOS or the answer line;
`accuracy_uncut` and `accuracy_cut_right`: accuracy on the answers not cut, and with every cut answer counted
right (an upper bound on what a longer limit could give), each the mean over seeds; `top_minus` (controls):
the top-K accuracy minus the control's, {diff, ci95} paired over items (`sweep.aggregate`);
runs not finished yet are listed under `missing`); drop.png; copy_share.{jsonl,json,png}.

`shard` ("i/n") gives every part the i-th of n parts of its items, balanced by prompt length: each run of a mode
the same shard of that mode's items, the copy analysis the same shard of its `copy_items` (`out/shard.json`), so a
shard's folder is a whole experiment over part of the items; `rheads merge` combines them (`unfinished` names
the parts a shard still lacks, the copy analysis included).

Left out on purpose: significance tests, other head-selection baselines, and masking during the copy pass
(the copy analysis describes the unmasked model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..analysis.stats import format_diff
from ..cluster.shard import parse_shard
from ..config import ModelConfig
from ..errors import ParamError, RHeadsError
from ..io.jsonl import atomic_write_json
from ..io.rundir import claim_run_dir
from ..models.info import model_dims, model_name
from ..capture.attention import check_model
from ..version import FORMAT_VERSION, __version__
from ..viz.cot import drop_plot
from .copyshare import copy_share
from ..evals.taskeval import EvalConfig, check_eval, prepare_run, run_eval, select_shard
from .sweep import SweepConfig, aggregate, check_only, check_sweep, finished, plan, run_parts
from ..evals.tasks.registry import get_task

MODES = ("cot", "direct", "closedbook")


@dataclass
class CotConfig(SweepConfig):
    model: ModelConfig = field(default_factory=ModelConfig)
    ks: list[int] = field(default_factory=lambda: [0, 10, 20, 50])
    controls: list[str] = field(default_factory=lambda: ["random"])
    modes: list[str] = field(default_factory=lambda: list(MODES))  # which of cot, direct, closedbook to run
    task: str = "gsm8k"  # the reasoning task, run in cot and direct modes
    data: str | None = None  # its data (None: the task's default source)
    limit: int | None = 200  # its first N items
    shots: int | None = None  # its few-shot exemplars (None: the task's default)
    fewshot_file: str | None = None
    steps: int = 3  # generated reasoning tasks
    seed: int = 0  # generated reasoning tasks
    closedbook_task: str = "closedbook-facts"
    closedbook_data: str | None = None
    closedbook_limit: int | None = None
    closedbook_shots: int | None = None
    chat: bool | None = None
    max_new_tokens_cot: int | None = None  # None: the task's defaults
    max_new_tokens_direct: int | None = None
    max_new_tokens_closedbook: int | None = None
    stop_at_answer: bool = False  # cot: stop once the answer line is complete (see evaluate.EvalConfig)
    mean_ref_prompts: int = 8  # ablation mean: see EvalConfig
    copy_items: int = 20  # items of the unmasked CoT capture pass (0: skip the copy analysis)
    shard: str | None = None  # "i/n": every part runs the i-th of n parts of its items (prompt-length balanced)

    def eval_config(self, mode: str, mask: str = "none", seed: int = 0) -> EvalConfig:
        """The evaluate config of one run of the experiment."""
        common = dict(model=self.model, mode=mode, chat=self.chat, mask=mask, scores=self.scores or None,
                      ablation=self.ablation, threshold=self.threshold, mask_seed=seed,
                      mean_ref_prompts=self.mean_ref_prompts, shard=self.shard)
        if mode == "closedbook":
            return EvalConfig(task=self.closedbook_task, data=self.closedbook_data, limit=self.closedbook_limit,
                              shots=self.closedbook_shots, max_new_tokens=self.max_new_tokens_closedbook, **common)
        return EvalConfig(task=self.task, data=self.data, limit=self.limit, shots=self.shots,
                          fewshot_file=self.fewshot_file, steps=self.steps, seed=self.seed,
                          max_new_tokens=self.max_new_tokens_cot if mode == "cot" else self.max_new_tokens_direct,
                          stop_at_answer=self.stop_at_answer and mode == "cot", **common)


def copy_config(config: CotConfig) -> EvalConfig:
    """The eval config of the copy analysis's items, as `copyshare.copy_share` resolves it (the first
    `copy_items` CoT items)."""
    ecfg = config.eval_config("cot").resolved()
    ecfg.limit = min(config.copy_items, ecfg.limit) if ecfg.limit else config.copy_items
    return ecfg


def copy_planned(config: CotConfig) -> bool:
    return config.copy_items > 0 and "cot" in config.modes


def unfinished(config: CotConfig, summary: dict, out: str | Path) -> list[str]:
    """The parts of the experiment in `out` not finished yet: the summary's `missing` runs, and `copy` while
    the copy analysis has not written copy_share.json."""
    copy = ["copy"] if copy_planned(config) and not (Path(out) / "copy_share.json").exists() else []
    return [*summary.get("missing", []), *copy]


def runs_of(config: CotConfig) -> list[tuple[str, Any]]:
    """(mode, sweep run) for every run of the experiment, in order."""
    return [(mode, r) for mode in config.modes for r in plan(config, prefix=f"{mode}/")]


def _validate(config: CotConfig, num_layers: int, num_heads: int):
    """Fail before running anything: scores of the model's shape, drawable K, tasks with the needed modes."""
    bad = [m for m in config.modes if m not in MODES]
    if bad or not config.modes:
        raise ParamError("modes", ",".join(config.modes), f"use some of {','.join(MODES)}")
    scores = check_sweep(config, num_layers, num_heads, "rheads cot-experiment")
    task, cb = get_task(config.task), get_task(config.closedbook_task)
    need = {m for m in config.modes if m != "closedbook"}
    if not need <= set(task.modes):
        raise RHeadsError(f"task {config.task!r} has modes {', '.join(task.modes)}: the reasoning task needs "
                          f"{' and '.join(sorted(need))} (gsm8k, vartrack, wordproblems)")
    if "closedbook" in config.modes and "closedbook" not in cb.modes:
        raise RHeadsError(f"task {config.closedbook_task!r} has no closedbook mode: use closedbook-facts or qa")
    return scores


def run_cot_experiment(model, tokenizer, config: CotConfig, out: str | Path, *, batch_size: int | None = None,
                       progress: bool = True, only: list[str] | None = None,
                       overwrite: bool = False) -> dict[str, Any]:
    """Run the experiment (or its `only` parts: names from `runs_of`, e.g. "cot/top-k50", or "copy") on a
    loaded model into `out`; returns the summary of what has finished (also out/summary.json)."""
    check_model(model)
    L, H, _ = model_dims(model)
    scores = _validate(config, L, H)
    parts = runs_of(config)
    check_only(only, [r.name for _, r in parts] + ["copy"])
    for mode in config.modes:  # data, prompt, context and shard problems surface before `out` is claimed
        check_eval(model, tokenizer, config.eval_config(mode), batch_size)
    copy_units = None
    if config.shard is not None and copy_planned(config) and (only is None or "copy" in only):
        copy_units = prepare_run(tokenizer, replace(copy_config(config), shard=None))[3]  # all of its items
        if len(copy_units) < parse_shard(config.shard).count:
            raise ParamError("shard", config.shard, f"the copy analysis has {len(copy_units)} items: use at most "
                             f"{len(copy_units)} shards, or more {{copy_items}}")
    out = claim_run_dir(out, {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict()},
                        defaults={"config": config.defaults()}, overwrite=overwrite)

    todo = [(mode, r) for mode, r in parts if only is None or r.name in only]
    run_parts([(r.name, lambda mode=mode, r=r: run_eval(model, tokenizer, config.eval_config(mode, r.mask, r.seed),
                                                        out / r.name, batch_size=batch_size, progress=progress))
               for mode, r in todo], progress)
    if copy_planned(config) and (only is None or "copy" in only):
        if copy_units is not None:
            select_shard(copy_units, config.shard, out, jsonl="copy_share.jsonl")  # the manifest `rheads merge` reads
        copy_share(model, tokenizer, config.eval_config("cot"), scores, out, n_items=config.copy_items,
                   seeds=config.seeds(), threshold=config.threshold, progress=progress,
                   title=f"{model_name(model)}: who copies during CoT ({config.task})")

    summary = cot_summary(config, parts, finished(out, [r for _, r in parts]), len(scores.above(config.threshold)),
                        L * H)
    share_path = out / "copy_share.json"
    if share_path.exists():
        share = json.loads(share_path.read_text())
        summary["copy_share"] = {k: share[k] for k in ("n_items", "n_repeat", "n_retrieval_heads", "retrieval",
                                                       "random_matched", "all_other")}
    atomic_write_json(out / "summary.json", summary)
    if summary["results"]:
        drop_plot(summary["results"], config.modes, out / "drop.png",
                  f"{model_name(model)}: accuracy drop with heads masked ({config.ablation})")
    return summary


def cot_summary(config: CotConfig, parts: list, done: dict[str, dict], n_retrieval: int,
              n_heads: int) -> dict[str, Any]:
    results = []
    for mode in config.modes:
        runs = [r for m, r in parts if m == mode]
        rows = aggregate(runs, done, "accuracy", "item_correct")
        base = done.get(runs[0].name)
        b = base["accuracy"] if base else None
        for r in rows:
            members = [done[x.name] for x in runs if x.k == r["k"] and x.kind == r["kind"] and x.name in done]
            if not members:
                continue
            acc = r["mean"]
            cut = [m.get("cut_off_share") for m in members if m.get("cut_off_share") is not None]
            bounds = {key: _mean([m.get(key) for m in members]) for key in ("accuracy_uncut", "accuracy_cut_right")}
            entry = {"task": members[0]["task"], "mode": mode, "mask": r["kind"], "k": r["k"], "accuracy": acc,
                     "ci95": r["ci95"], "n": members[0]["n"],
                     "relative_drop": round((b - acc) / b, 6) if b else None,
                     "cut_off_share": round(sum(cut) / len(cut), 4) if cut else None,
                     "cut_off_shares": cut, **bounds}
            if r["kind"] == "top":
                entry["masked_heads"] = members[0]["masked_heads"]
            elif r["kind"] != "none":
                entry.update({"accuracy_seeds": r["values"], "accuracy_std": r["std"], "n_seeds": r["n_seeds"],
                              "top_minus": r["top_minus"]})
            results.append(entry)
    return {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(), "n_heads": n_heads,
            "n_retrieval_heads": n_retrieval, "threshold": config.threshold, "results": results,
            "runs": sorted(done), "missing": [r.name for _, r in parts if r.name not in done]}


def _mean(values: list) -> float | None:
    """Mean over seeds of a per-run figure; None when a run lacks it (written before it existed)."""
    return None if not values or any(v is None for v in values) else round(sum(values) / len(values), 6)


def format_table(summary: dict) -> str:
    """Per mode, K and kind: accuracy [bootstrap 95% CI], relative drop, share cut off by the token limit, and
    accuracy on the uncut answers and with every cut answer right."""
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.0f}%"

    def acc(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    lines = [f"retrieval heads (score > {summary['threshold']}): {summary['n_retrieval_heads']} of {summary['n_heads']}",
             "", f"{'mode':<11}{'K':>4}  {'mask':<13}{'accuracy':>9}  {'95% CI':>15}  {'drop':>6}  {'cut off':>7}  "
             f"{'uncut':>6}  {'cut=right':>9}  {'top minus it [95% CI]':>24}   n"]
    for r in summary["results"]:
        ci = f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]" if r["ci95"] else "-"
        std = f" +- {r['accuracy_std']:.3f}" if r.get("accuracy_std") else ""
        lines.append(f"{r['mode']:<11}{r['k']:>4}  {r['mask']:<13}{r['accuracy']:>9.3f}  {ci:>15}  "
                     f"{pct(r['relative_drop']) if r['mask'] != 'none' else '':>6}  {pct(r['cut_off_share']):>7}  "
                     f"{acc(r.get('accuracy_uncut')):>6}  {acc(r.get('accuracy_cut_right')):>9}  "
                     f"{format_diff(r.get('top_minus'), '{:+.3f}') if r['mask'] not in ('none', 'top') else '':>24}   "
                     f"{r['n']}{std}")
    if "copy_share" in summary:
        c = summary["copy_share"]
        fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
        lines += ["", f"CoT copy share ({c['n_repeat']} repeated tokens in {c['n_items']} items): retrieval heads "
                  f"{fmt(c['retrieval'])}, {c['n_retrieval_heads']} random non-retrieval heads "
                  f"{fmt(c['random_matched'])}, all non-retrieval heads {fmt(c['all_other'])}"]
    if summary["missing"]:
        lines.append(f"\nnot finished yet: {len(summary['missing'])} runs ({', '.join(summary['missing'][:6])}"
                     f"{', ...' if len(summary['missing']) > 6 else ''})")
    return "\n".join(lines)
