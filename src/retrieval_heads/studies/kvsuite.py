"""The KV sweep over the long-context suite (`rheads kv-sweep --suite TASKS`): every policy at every budget on the
same suite samples, one `suite run` folder per arm, and a summary of score against budget per task and family.

`run_kv_suite(model, tokenizer, config, out)`:
- arms: `full/` (the reference, when listed) and `{policy}-b{B}/` for every other listed policy and budget
  (every listed policy but `full` must run at a budget: snapkv, headkv, hybrid, retrieval, random, streaming);
  each is an `evals.suite.run_suite` folder, with the same tasks, lengths, samples and seed, so the arms score the
  same prompts, and each resumes on its own;
- everything is checked before `out` is written: the suite config, every arm's KV settings, the scores;
- `summary.json`: `rows`, one per arm, task (and `mean`, the arm's mean over the task cells) and length:
  {"policy", "budget", "task", "family", "length", "score", "n", "ci", "kv_bytes", "kv_bytes_full"}; `families`
  the same per family; `paired`: at each budget, each policy against snapkv and against full on the task mean,
  paired over the samples both ran (same task, length and index: a sample's score averaged per task cell first,
  the cells then averaged, as the mean is), with a bootstrap 95% interval over the samples; `missing` the arms not
  finished; `budgets.png`: score against budget, one curve per policy, one panel per family and the task mean
  (`viz/kv.py`).

Prefill: by default each batch is prefilled once and every arm's cache is derived from it (`kvshared.py`; the
same answers as one prefill per arm, which `shared_prefill=False` runs, one `suite run` after another).

Left out on purpose: window arms (`kv-sweep` without `--suite` runs those on NIAH).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.stats import bootstrap_ci
from ..config import Config
from ..errors import ParamError
from ..evals.suite.registry import FAMILIES, get_task
from ..evals.suite.run import SuiteConfig, check_config, run_suite
from ..io.jsonl import atomic_write_json, read_jsonl
from ..io.rundir import claim_run_dir
from ..kvcache.budget import check_budget
from ..kvcache.config import KVConfig
from ..kvcache.registry import get_policy_class, policy_names
from ..version import FORMAT_VERSION, __version__

BASELINE = "snapkv"  # the literature's policy each other is paired against


@dataclass
class KVSuiteConfig(Config):
    suite: SuiteConfig = field(default_factory=SuiteConfig)  # tasks, lengths, samples, seed, model; its kv is unused
    policies: list[str] = field(default_factory=lambda: ["full", "streaming", "snapkv", "headkv", "retrieval",
                                                         "hybrid"])
    budgets: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.5])
    kv: KVConfig = field(default_factory=KVConfig)  # the arms' shared KV settings (sink, threshold, top, seed)
    shared_prefill: bool = True  # prefill each batch once for every arm (`kvshared.py`); False: one per arm

    def arms(self) -> list[tuple[str, str, float | None]]:
        """(folder, policy, budget) of every arm, the reference first."""
        out = [("full", "full", None)] if "full" in self.policies else []
        for b in self.budgets:
            out += [(f"{p}-b{b:g}", p, b) for p in self.policies if p != "full"]
        return out

    def arm_suite(self, policy: str, budget: float | None) -> SuiteConfig:
        kv = KVConfig(policy="full") if budget is None else dataclasses.replace(self.kv, policy=policy, budget=budget)
        return dataclasses.replace(self.suite, kv=kv)

    def validate(self) -> "KVSuiteConfig":
        names = policy_names()
        if not self.policies:
            raise ParamError("policies", self.policies, f"pick some of {', '.join(names)}")
        for p in self.policies:
            if p not in names:
                raise ParamError("policies", p, f"unknown KV policy: use some of {', '.join(names)}")
            if p != "full" and get_policy_class(p).uses_budget == "never":
                raise ParamError("policies", p, "the suite sweep runs policies at budgets: this one takes none "
                                 "(run it with `rheads suite run --kv`)")
        if not self.budgets:
            raise ParamError("budgets", self.budgets, "give one budget or more, e.g. 0.1,0.2,0.3,0.5")
        for b in self.budgets:
            check_budget(b, "budgets")
        check_config(self.suite)
        for _, p, b in self.arms():
            self.arm_suite(p, b).kv.validate(self.suite.scores)
        return self


def run_kv_suite(model, tokenizer, config: KVSuiteConfig, out: str | Path, progress: bool = True,
                 overwrite: bool = False, batch_size: int = 1) -> dict[str, Any]:
    """Run every arm (resuming) into `out`; returns the summary of what has finished."""
    from ..kvcache.factory import kv_factory

    config.validate()
    for _, p, b in config.arms():  # every arm's cache against the model, before anything is written
        kv_factory(config.arm_suite(p, b).kv, model, config.suite.scores)
    out = Path(out)
    meta = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
            "arms": [a for a, _, _ in config.arms()]}
    claim_run_dir(out, meta, keys=("config",), defaults={"config": config.defaults()}, overwrite=overwrite)
    if not config.shared_prefill:
        for name, p, b in config.arms():
            if progress:
                print(f"kv-sweep --suite: {name}")
            run_suite(model, tokenizer, config.arm_suite(p, b), out / name, progress=progress, batch_size=batch_size)
        return summarize_kv_suite(config, out)
    from ..evals.suite.run import finish_suite, open_suite
    from .kvshared import decode_shared

    runs = []
    try:
        for name, p, b in config.arms():
            runs.append(open_suite(model, tokenizer, config.arm_suite(p, b), out / name, progress=not runs and progress,
                                   batch_size=batch_size, prepared=runs[0].prepared if runs else None))
        decode_shared(model, tokenizer, runs, batch_size=batch_size, progress=progress)
    finally:
        for run in runs:
            if run.writer:
                run.writer.close()
                run.writer = None
    for run in runs:
        finish_suite(model, run)
    return summarize_kv_suite(config, out)


def _predictions(path: Path) -> list[dict] | None:
    if not (path / "summary.json").exists():
        return None
    return [r for r in read_jsonl(path / "predictions.jsonl") if r.get("type") == "prediction"]


def _mean_over_cells(recs: list[dict], keep: set[str] | None = None) -> float | None:
    cells: dict[tuple[str, int], list[float]] = {}
    for r in recs:
        if keep is None or r["id"] in keep:
            cells.setdefault((r["task"], r["length"]), []).append(r["score"])
    return float(np.mean([np.mean(v) for v in cells.values()])) if cells else None


def paired_mean_diff(a: list[dict], b: list[dict], n_boot: int = 2000, seed: int = 0) -> dict[str, Any] | None:
    """The task mean of arm a minus arm b over the samples both ran, with a bootstrap 95% interval (samples
    resampled with their cell kept, the cells averaged as the mean is)."""
    sb = {r["id"]: r for r in b}
    both = [(r, sb[r["id"]]) for r in a if r["id"] in sb]
    if not both:
        return None
    diff = _mean_over_cells([x for x, _ in both]) - _mean_over_cells([y for _, y in both])
    rng = np.random.default_rng(seed)
    by_cell: dict[tuple[str, int], list[float]] = {}
    for x, y in both:
        by_cell.setdefault((x["task"], x["length"]), []).append(x["score"] - y["score"])
    cells = [np.asarray(v) for v in by_cell.values()]
    boots = [np.mean([c[rng.integers(0, len(c), len(c))].mean() for c in cells]) for _ in range(n_boot)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"diff": round(float(diff), 2), "ci95": [round(float(lo), 2), round(float(hi), 2)], "n": len(both)}


def summarize_kv_suite(config: KVSuiteConfig, out: Path) -> dict[str, Any]:
    from ..viz.kv import suite_budget_plot

    found = {name: _predictions(out / name) for name, _, _ in config.arms()}
    rows, fam_rows = [], []
    for name, p, b in config.arms():
        recs = found[name]
        if recs is None:
            continue
        held = max((r.get("kv_bytes", 0) for r in recs), default=None)
        full = max((r.get("kv_bytes_full", 0) for r in recs), default=None)
        base = {"arm": name, "policy": p, "budget": b, "kv_bytes": held, "kv_bytes_full": full}
        cells: dict[tuple[str, int], list[float]] = {}
        for r in recs:
            cells.setdefault((r["task"], r["length"]), []).append(r["score"])
        for (task, n), v in sorted(cells.items()):
            rows.append({**base, "task": task, "family": get_task(task).family, "length": n,
                         "score": round(float(np.mean(v)), 2), "n": len(v), "ci": bootstrap_ci(v)})
        for n in sorted({n for _, n in cells}):
            mine = [np.mean(v) for (t, m), v in cells.items() if m == n]
            rows.append({**base, "task": "mean", "family": "all", "length": n,
                         "score": round(float(np.mean(mine)), 2), "n": sum(len(v) for (t, m), v in cells.items()
                                                                          if m == n), "ci": None})
        for fam in FAMILIES:
            scores = [s for (t, _), v in cells.items() if get_task(t).family == fam for s in v]
            if scores:
                fam_rows.append({**base, "family": fam, "score": round(float(np.mean(scores)), 2),
                                 "n": len(scores), "ci": bootstrap_ci(scores)})
    paired: list[dict] = []
    for b in config.budgets:
        for p in config.policies:
            a = found.get(f"{p}-b{b:g}")
            if p == "full" or a is None:
                continue
            for ref in (f"{BASELINE}-b{b:g}", "full"):
                if ref != f"{p}-b{b:g}" and found.get(ref) is not None:
                    d = paired_mean_diff(a, found[ref])
                    if d is not None:
                        paired.append({"policy": p, "budget": b, "against": ref, **d})
    summary = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(), "rows": rows,
               "families": fam_rows, "paired": paired,
               "missing": [name for name, _, _ in config.arms() if found[name] is None]}
    atomic_write_json(out / "summary.json", summary)
    if rows:
        suite_budget_plot(summary, out / "budgets.png")
    return summary


def format_table(summary: dict) -> str:
    """Task means per arm and length, then the paired differences."""
    mean = [r for r in summary["rows"] if r["task"] == "mean"]
    lengths = sorted({r["length"] for r in mean})
    lines = [f"{'arm':<20}" + "".join(f"{n:>10}" for n in lengths) + "   KV kept", "-" * (32 + 10 * len(lengths))]
    for arm in dict.fromkeys(r["arm"] for r in mean):
        mine = {r["length"]: r for r in mean if r["arm"] == arm}
        any_row = next(iter(mine.values()))
        share = (f"{100 * any_row['kv_bytes'] / any_row['kv_bytes_full']:.1f}%"
                 if any_row.get("kv_bytes_full") else "-")
        lines.append(f"{arm:<20}" + "".join(f"{mine[n]['score'] if n in mine else float('nan'):>10.1f}"
                                            for n in lengths) + f"   {share}")
    if summary["paired"]:
        lines += ["", "task mean, paired over samples [bootstrap 95% CI]:"]
        for d in summary["paired"]:
            lines.append(f"  {d['policy']}-b{d['budget']:g} - {d['against']}: {d['diff']:+.1f} "
                         f"[{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}] (n {d['n']})")
    if summary["missing"]:
        lines.append(f"not finished: {', '.join(summary['missing'])}")
    return "\n".join(lines)
