"""The ablation experiment: NIAH score against K, masking the top-K retrieval heads vs K control heads.

`run_ablate(model, tokenizer, config, out)` runs, on one loaded model, the sweep of `sweep.plan`: for each K
in `config.ks` the top-K heads masked (`top-k{K}/`) and each control (`random-k{K}-seed{s}/`: K heads drawn
from the model's non-retrieval heads; `random-layer-k{K}-seed{s}/`: K non-retrieval heads from the top-K's
own layers), K = 0 being the unmasked baseline (`k0-baseline/`). Each run is a `niah.run_niah` directory,
resumable on its own, so the whole experiment resumes; `only` runs some of them, so processes sharing
`out` can split the work (give each different parts; a part another live process is writing is skipped).

Outputs in `out`: config.json, summary.json (`results`: one row per K with `top_mean`, `random_mean`,
`random_std`, `random_layer_mean`, ..., each with a bootstrap 95% interval (`*_ci95`: over cells for one
run, over seeds then cells for a control), `top_minus_random` ... (the top-K mean minus the control's, with an
interval paired over cells) and the response classes; runs not finished yet are listed
under `missing`), curve.png (mean score vs K per kind, with the intervals) and classes.png.

`shard` ("i/n") gives every run of the sweep the i-th of n cost-balanced parts of the grid's samples, so a
shard's folder is a whole sweep over part of the grid; `rheads merge` combines them.

Everything (scores, K, seeds, controls, the grid against the model's context, the data) is checked before
`out` is claimed.

Left out on purpose: other head-selection baselines (bottom-K) and significance tests.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..analysis.stats import format_diff
from ..cluster.shard import select
from ..config import ModelConfig, ProbeConfig
from ..io.jsonl import atomic_write_json
from ..io.rundir import claim_run_dir
from ..models.info import model_dims, model_name
from ..capture.attention import check_model
from ..scoring.judge import RESPONSE_CLASSES
from ..version import FORMAT_VERSION, __version__
from ..viz.sweeps import classes_plot, curve_plot
from .means import MeanReference, mean_reference, mean_reference_info
from ..evals.grid import prepare
from ..evals.niah import NiahConfig, niah_probe, run_niah
from .sweep import SweepConfig, SweepRun, aggregate, check_only, check_sweep, finished, plan, row, run_parts

KIND_KEYS = {"top": "top", "random": "random", "random-layer": "random_layer"}  # summary key prefix per kind


@dataclass
class AblateConfig(SweepConfig):
    model: ModelConfig = field(default_factory=ModelConfig)
    probe: ProbeConfig = field(default_factory=niah_probe)
    max_new_tokens: int = 32
    stop: list[str] | None = None  # see NiahConfig
    mean_ref_prompts: int = 4  # mode mean: see NiahConfig
    mean_ref_length: int = 1000
    shard: str | None = None  # "i/n": every run of the sweep does the i-th of n parts of the grid's samples

    def niah(self, mask: str, seed: int = 0) -> NiahConfig:
        """The NIAH config of one run of the experiment."""
        return NiahConfig(model=self.model, probe=self.probe, mask=mask, scores=self.scores, ablation=self.ablation,
                          threshold=self.threshold, mask_seed=seed, max_new_tokens=self.max_new_tokens, stop=self.stop,
                          mean_ref_prompts=self.mean_ref_prompts, mean_ref_length=self.mean_ref_length,
                          shard=self.shard)


def run_ablate(model, tokenizer, config: AblateConfig, out: str | Path, progress: bool = True,
               only: list[str] | None = None, overwrite: bool = False, batch_size: int = 1) -> dict[str, Any]:
    """Run the experiment (or the `only` parts of it) on a loaded model into `out`; returns the summary of
    what has finished (also out/summary.json)."""
    check_model(model)
    L, H, max_ctx = model_dims(model)
    scores = check_sweep(config, L, H, "rheads ablate")
    runs = plan(config)
    check_only(only, [r.name for r in runs])
    g = prepare(model, tokenizer, config.probe, config.max_new_tokens, config.stop, batch_size)  # grid, context, data
    select(g.samples, config.shard, cost=lambda s: s.length, key=lambda s: s.id)  # a bad shard before out is touched
    out = claim_run_dir(out, {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict()},
                        defaults={"config": config.defaults()}, overwrite=overwrite)

    means: MeanReference | None = None
    todo = [r for r in runs if only is None or r.name in only]
    if config.ablation == "mean" and any(r.k > 0 for r in todo):
        windows, info = mean_reference_info(tokenizer, config.probe.haystack, config.mean_ref_prompts,
                                            config.mean_ref_length, max_ctx)
        means = mean_reference(model, windows, info)
    run_parts([(r.name, lambda r=r: run_niah(model, tokenizer, config.niah(r.mask, r.seed), out / r.name,
                                             progress=progress, means=means, batch_size=batch_size))
               for r in todo], progress)

    summary = ablate_summary(config, runs, finished(out, runs), len(scores.above(config.threshold)), L * H)
    atomic_write_json(out / "summary.json", summary)
    if summary["results"]:
        name = model_name(model)
        curve_plot(summary["results"], config.controls, out / "curve.png",
                   f"{name}: NIAH with heads masked ({config.ablation}), {summary['n_cells']} cells")
        classes_plot(summary["results"], config.controls, out / "classes.png",
                     f"{name}: response classes ({config.ablation})")
    return summary


def ablate_summary(config: AblateConfig, runs: list[SweepRun], done: dict[str, dict], n_retrieval: int,
              n_heads: int) -> dict[str, Any]:
    """summary.json of the sweep: one row per K over the finished runs (see the module docstring)."""
    rows = aggregate(runs, done, "mean_score", "sample_scores")
    base = done.get(runs[0].name)
    results = []
    for k in sorted(set(config.ks)):
        kinds = ["none"] if k == 0 else ["top", *config.controls]
        entry: dict[str, Any] = {"k": k}
        for kind in ("top", *config.controls):
            key = KIND_KEYS[kind]
            if k == 0:
                r, members = row(rows, 0, "none"), [runs[0].name]
            else:
                r, members = row(rows, k, kind), [x.name for x in runs if x.k == k and x.kind == kind]
            classes: Counter = Counter()
            for m in members:
                if m in done:
                    classes.update(done[m]["classes"])
            entry.update({f"{key}_mean": r["mean"], f"{key}_ci95": r["ci95"], f"{key}_classes":
                          {c: classes.get(c, 0) for c in RESPONSE_CLASSES}})
            if kind != "top":
                entry.update({f"{key}_std": r["std"], f"{key}_means": r["values"]})
                if k:
                    entry[f"top_minus_{key}"] = r["top_minus"]  # {diff, ci95} paired over cells, or None
        top_run = done.get(f"top-k{k}") if k else base
        entry["top_heads"] = top_run["masked_heads"] if top_run else None
        entry["missing"] = sorted({m for kind in kinds for m in (row(rows, k, kind) or {}).get("missing", [])})
        if entry["top_mean"] is not None or any(entry[f"{KIND_KEYS[c]}_mean"] is not None for c in config.controls):
            results.append(entry)
    return {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
            "n_heads": n_heads, "n_retrieval_heads": n_retrieval, "threshold": config.threshold,
            "baseline_mean": base["mean_score"] if base else None,
            "n_cells": next((d["n_cells"] for d in done.values() if d.get("n_cells")), None),
            "results": results, "runs": sorted(done), "missing": [r.name for r in runs if r.name not in done]}


def _fmt(mean: float | None, ci: list[float] | None, std: float | None = None) -> str:
    if mean is None:
        return "-"
    s = f"{mean:.1f}" + (f" +- {std:.1f}" if std else "")
    return s + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")


def format_table(summary: dict) -> str:
    """K | top-K | each control (mean +- std over seeds [bootstrap 95% CI]) | top-K minus each control, paired
    over cells [95% CI] | class mixes."""
    controls = summary["config"].get("controls", ["random"])
    abbrev = "/".join(c[0] for c in RESPONSE_CLASSES)
    head = (f"{'K':>5}  {'top-K':>20}" + "".join(f"  {c + '-K':>28}" for c in controls)
            + "".join(f"  {'top minus ' + c:>26}" for c in controls) + f"  top classes {abbrev}")
    lines = [f"retrieval heads (score > {summary['threshold']}): {summary['n_retrieval_heads']} of "
             f"{summary['n_heads']}; {summary['n_cells']} cells; [bootstrap 95% CI]", "", head]
    for r in summary["results"]:
        cols = "".join(f"  {_fmt(r[KIND_KEYS[c] + '_mean'], r[KIND_KEYS[c] + '_ci95'], r[KIND_KEYS[c] + '_std']):>28}"
                       for c in controls)
        diffs = "".join(f"  {format_diff(r.get('top_minus_' + KIND_KEYS[c])):>26}" for c in controls)
        tc = "/".join(str(r["top_classes"].get(c, 0)) for c in RESPONSE_CLASSES)
        lines.append(f"{r['k']:>5}  {_fmt(r['top_mean'], r['top_ci95']):>20}{cols}{diffs}  {tc}")
    if summary["missing"]:
        lines.append(f"\nnot finished yet: {len(summary['missing'])} runs ({', '.join(summary['missing'][:6])}"
                     f"{', ...' if len(summary['missing']) > 6 else ''})")
    return "\n".join(lines)
