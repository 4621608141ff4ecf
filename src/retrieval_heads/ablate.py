"""The ablation experiment: NIAH score against K, masking the top-K retrieval heads vs K random other heads.

`run_ablate(model, tokenizer, config, out)` runs, on one loaded model, for each K in `config.ks`:
- `top-k{K}/`: NIAH with the K highest-scoring heads masked;
- `random-k{K}-seed{s}/`, one per seed: NIAH with K heads drawn from the model's real layers x heads that
  are NOT retrieval heads (score <= threshold), seeds `mask_seed .. mask_seed + random_seeds - 1`;
- K = 0 is the unmasked baseline, run once into `k0-baseline/` and shared by both curves.
Each run is a `niah.run_niah` directory (resumable on its own), so the whole experiment resumes.

Outputs in `out`: config.json, summary.json (`results`: [{k, top_mean, random_mean, random_std,
top_classes, random_classes, ...}]; random_std is the sample std over seeds, 0 with one seed),
curve.png (mean score vs K, top vs random with std error bars) and classes.png (response-class mix per K).

Left out on purpose: other head-selection baselines (bottom-K, per-layer), parallel runs, and
significance tests; per-seed means are in summary.json for whoever wants them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .attention import AttentionController, check_model
from .config import ModelConfig, ProbeConfig, RunConfig
from .errors import RHeadsError
from .masks import load_sweep_scores
from .niah import (RESPONSE_CLASSES, MeanReference, NiahConfig, _niah_probe, mean_reference, model_dims,
                   run_niah, stacked_classes)
from .plots import pyplot, save_figure
from .results import FORMAT_VERSION, HeadScores, atomic_write_json, claim_run_dir


@dataclass
class AblateConfig(RunConfig):
    model: ModelConfig = field(default_factory=ModelConfig)
    probe: ProbeConfig = field(default_factory=_niah_probe)
    scores: str = ""  # score file (this tool's scores.json or the paper's); required
    ks: list[int] = field(default_factory=lambda: [0, 5, 10, 20, 50, 100])
    random_seeds: int = 3  # random-K draws per K
    mask_seed: int = 0  # first seed of the random draws
    ablation: str = "zero"
    threshold: float = 0.1  # retrieval set = heads scoring above it
    max_new_tokens: int = 32
    mean_ref_prompts: int = 4  # mode mean: see NiahConfig
    mean_ref_length: int = 1000


    def seeds(self) -> list[int]:
        return [self.mask_seed + i for i in range(self.random_seeds)]

    def niah(self, mask: str, seed: int = 0) -> NiahConfig:
        """The NIAH config of one run of the experiment."""
        return NiahConfig(model=self.model, probe=self.probe, mask=mask, scores=self.scores, ablation=self.ablation,
                          threshold=self.threshold, mask_seed=seed, max_new_tokens=self.max_new_tokens,
                          mean_ref_prompts=self.mean_ref_prompts, mean_ref_length=self.mean_ref_length)


def plan(config: AblateConfig) -> list[tuple[int, str, str, int]]:
    """The runs, in order: (k, subdir, mask spec, mask seed)."""
    runs = [(0, "k0-baseline", "none", 0)]
    for k in sorted(set(config.ks)):
        if k == 0:
            continue
        runs.append((k, f"top-k{k}", f"top:{k}", 0))
        runs += [(k, f"random-k{k}-seed{s}", f"random:{k}", s) for s in config.seeds()]
    return runs


def _validate(config: AblateConfig, num_layers: int, num_heads: int) -> HeadScores:
    """Fail before running anything: scores present and of the model's shape, every K drawable, valid mode."""
    if not config.scores:
        raise RHeadsError("rheads ablate needs --scores: a scores.json from `rheads detect` or a paper score file")
    if any(k < 0 for k in config.ks) or not config.ks:
        raise RHeadsError(f"bad --k {config.ks}: give K values >= 0, e.g. 0,5,10,20,50,100")
    if config.random_seeds < 1:
        raise RHeadsError("--random-seeds must be at least 1")
    AttentionController(mode=config.ablation)  # unknown mode -> one-line error
    return load_sweep_scores(config.scores, config.ks, num_layers, num_heads, threshold=config.threshold)


def run_ablate(model, tokenizer, config: AblateConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Run the whole experiment on a loaded model into `out`; returns the summary (also out/summary.json)."""
    check_model(model)
    L, H, _ = model_dims(model)
    scores = _validate(config, L, H)
    out = claim_run_dir(out, {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict()})

    means: MeanReference | None = None
    if config.ablation == "mean" and any(k > 0 for k in config.ks):
        means = mean_reference(model, tokenizer, config.niah("top:1"))
    runs: dict[str, dict] = {}
    todo = plan(config)
    for i, (k, sub, mask, seed) in enumerate(todo, 1):
        if progress:
            print(f"[{i}/{len(todo)}] {sub}", flush=True)
        runs[sub] = run_niah(model, tokenizer, config.niah(mask, seed), out / sub, progress=progress, means=means)

    summary = summarize(config, runs, len(scores.above(config.threshold)), L * H)
    atomic_write_json(out / "summary.json", summary)
    curve_plot(summary["results"], out / "curve.png", f"{config.model.model}: NIAH with heads masked ({config.ablation})")
    classes_plot(summary["results"], out / "classes.png", f"{config.model.model}: response classes ({config.ablation})")
    return summary


def summarize(config: AblateConfig, runs: dict[str, dict], n_retrieval: int, n_heads: int) -> dict[str, Any]:
    base = runs["k0-baseline"]
    results = []
    for k in sorted(set(config.ks)):
        if k == 0:
            top, rand = base, [base]
        else:
            top = runs[f"top-k{k}"]
            rand = [runs[f"random-k{k}-seed{s}"] for s in config.seeds()]
        rmeans = [r["mean_score"] for r in rand]
        rclasses: Counter = Counter()
        for r in rand:
            rclasses.update(r["classes"])
        results.append({
            "k": k,
            "top_mean": top["mean_score"],
            "random_mean": round(float(np.mean(rmeans)), 4),
            "random_std": round(float(np.std(rmeans, ddof=1)), 4) if len(rmeans) > 1 else 0.0,
            "random_means": rmeans,
            "top_classes": dict(top["classes"]),
            "random_classes": {c: rclasses.get(c, 0) for c in RESPONSE_CLASSES},
            "top_heads": top["masked_heads"],
        })
    return {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
            "n_heads": n_heads, "n_retrieval_heads": n_retrieval, "threshold": config.threshold,
            "baseline_mean": base["mean_score"], "results": results,
            "runs": sorted(runs)}


def format_table(summary: dict) -> str:
    """K | top-K mean | random-K mean +- std | class mixes (correct/partial/hallucinated/refusal/degenerate)."""
    abbrev = "/".join(c[0] for c in RESPONSE_CLASSES)
    lines = [f"retrieval heads (score > {summary['threshold']}): {summary['n_retrieval_heads']} of {summary['n_heads']}",
             "", f"{'K':>5}  {'top-K':>7}  {'random-K':>14}  {'top classes ' + abbrev:>26}  {'random classes ' + abbrev:>28}"]
    for r in summary["results"]:
        tc = "/".join(str(r["top_classes"].get(c, 0)) for c in RESPONSE_CLASSES)
        rc = "/".join(str(r["random_classes"].get(c, 0)) for c in RESPONSE_CLASSES)
        rnd = f"{r['random_mean']:.1f} +- {r['random_std']:.1f}"
        lines.append(f"{r['k']:>5}  {r['top_mean']:>7.1f}  {rnd:>14}  {tc:>26}  {rc:>28}")
    return "\n".join(lines)


def curve_plot(results: list[dict], path: str | Path, title: str) -> Path:
    """Mean NIAH score against K: top-K masked vs random-K masked (error bars: std over seeds)."""
    plt = pyplot()
    ks = [r["k"] for r in results]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ks, [r["top_mean"] for r in results], "o-", color="#d73027", label="top-K retrieval heads masked")
    ax.errorbar(ks, [r["random_mean"] for r in results], yerr=[r["random_std"] for r in results], fmt="s--",
                color="#4575b4", capsize=3, label="K random non-retrieval heads masked")
    ax.set_xlabel("K (heads masked)")
    ax.set_ylabel("mean NIAH score (0-100)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def classes_plot(results: list[dict], path: str | Path, title: str) -> Path:
    """Stacked response-class fractions per K: a top-K bar and a random-K bar (all seeds pooled)."""
    plt = pyplot()
    labels, counts = [], []
    for r in results:
        if r["k"] == 0:
            labels.append("0\nbase")
            counts.append(r["top_classes"])
            continue
        labels += [f"{r['k']}\ntop", f"{r['k']}\nrand"]
        counts += [r["top_classes"], r["random_classes"]]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(labels) + 3), 4))
    stacked_classes(ax, labels, counts)
    ax.set_xlabel("K heads masked")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return save_figure(fig, path)
