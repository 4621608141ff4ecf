"""Causal masking per task family (`rheads ablate --suite TASKS`): the suite's score with the top-K retrieval heads
masked against K control heads (uniform random, layer-matched random), per family. Which kinds of long-context work
depend on the retrieval heads, and which do not?

`run_suite_ablate(model, tokenizer, config, out)` runs the sweep of `sweep.plan` (`k0-baseline/`, `top-k{K}/`,
`{control}-k{K}-seed{s}/`), each a `suite run` folder (`evals/suite/run.py`) on the same generated samples with its
mask, resumable on its own. `summary.json`: per family (and `all`), one row per (K, kind) from `sweep.aggregate`:
the mean score, the per-seed values with a bootstrap 95% interval (over seeds, then samples, for a control), and
`top_minus` (the top-K mean minus the control's, paired over the same samples, each sample's control value its
mean over the seeds); `missing` the runs not finished. `families.png`: score against K per family, one line per
kind. Everything is checked before `out` is written.

Left out on purpose: KV policies (`kv-sweep --suite`) and RULER files (`--data`: run `suite run --mask` on them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..evals.suite.registry import get_task
from ..evals.suite.run import SuiteConfig, check_config, run_suite
from ..io.jsonl import atomic_write_json, read_jsonl
from ..io.rundir import claim_run_dir
from ..version import FORMAT_VERSION, __version__
from .sweep import SweepConfig, SweepRun, aggregate, check_sweep, plan


@dataclass
class SuiteAblateConfig(SweepConfig):
    suite: SuiteConfig = field(default_factory=SuiteConfig)  # tasks, lengths, samples, seed, model; mask set per run
    ks: list[int] = field(default_factory=lambda: [0, 20, 50])
    random_seeds: int = 2

    def run_suite_config(self, run: SweepRun) -> SuiteConfig:
        return dataclasses.replace(self.suite, mask=run.mask, scores=self.scores, ablation=self.ablation,
                                   threshold=self.threshold, mask_seed=run.seed)


def run_suite_ablate(model, tokenizer, config: SuiteAblateConfig, out: str | Path,
                     progress: bool = True, overwrite: bool = False, batch_size: int = 1) -> dict[str, Any]:
    """Run every mask of the sweep on the suite (resuming); returns the summary of what has finished."""
    from ..models.info import model_dims

    L, H, _ = model_dims(model)
    check_sweep(config, L, H, "rheads ablate --suite")
    check_config(config.suite)
    runs = plan(config)
    for r in runs:
        check_config(config.run_suite_config(r))
    out = Path(out)
    meta = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
            "runs": [r.name for r in runs]}
    claim_run_dir(out, meta, keys=("config",), defaults={"config": config.defaults()}, overwrite=overwrite)
    for i, r in enumerate(runs, 1):
        if progress:
            print(f"[{i}/{len(runs)}] {r.name}", flush=True)
        run_suite(model, tokenizer, config.run_suite_config(r), out / r.name, progress=progress,
                  batch_size=batch_size)
    return summarize_suite_ablate(config, runs, out)


def _done(out: Path, runs: list[SweepRun]) -> dict[str, list[dict]]:
    got = {}
    for r in runs:
        if (out / r.name / "summary.json").exists():
            recs = [x for x in read_jsonl(out / r.name / "predictions.jsonl") if x.get("type") == "prediction"]
            got[r.name] = sorted(recs, key=lambda x: x["id"])  # the same order in every run: paired by position
    return got


def summarize_suite_ablate(config: SuiteAblateConfig, runs: list[SweepRun], out: Path) -> dict[str, Any]:
    from ..viz.suite import family_ablation_plot

    done = _done(out, runs)
    families = list(dict.fromkeys(get_task(x["task"]).family for recs in done.values() for x in recs)) + ["all"]
    results = {}
    for fam in families:
        per = {}
        for name, recs in done.items():
            mine = [x["score"] for x in recs if fam == "all" or get_task(x["task"]).family == fam]
            per[name] = {"mean": round(float(np.mean(mine)), 4) if mine else None, "scores": mine}
        results[fam] = aggregate(runs, per, "mean", "scores")
    summary = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(), "results": results,
               "missing": [r.name for r in runs if r.name not in done]}
    atomic_write_json(out / "summary.json", summary)
    if done:
        family_ablation_plot(results, config.controls, out / "families.png",
                             f"{config.suite.model.model}: suite score vs heads masked ({config.ablation} ablation, "
                             f"{config.suite.samples} samples per task and length)")
    return summary


def format_table(summary: dict) -> str:
    """Per family: the top-K and control means per K, and top minus each control [95% CI]."""
    controls = summary["config"]["controls"]
    lines = []
    for fam, rows in summary["results"].items():
        lines.append(f"{fam}:")
        for k in sorted({r["k"] for r in rows}):
            cells = []
            for kind in (["none"] if k == 0 else ["top", *controls]):
                r = next((x for x in rows if x["k"] == k and x["kind"] == kind), None)
                if r is None or r["mean"] is None:
                    continue
                d = r.get("top_minus")
                diff = f" (top minus: {d['diff']:+.1f} [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}])" \
                    if d and d.get("ci95") else ""
                cells.append(f"{kind} {r['mean']:.1f}{diff}")
            lines.append(f"  K={k}: " + "; ".join(cells))
    if summary["missing"]:
        lines.append(f"not finished: {', '.join(summary['missing'])}")
    return "\n".join(lines)
