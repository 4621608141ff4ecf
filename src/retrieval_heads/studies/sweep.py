"""Top-K against control sweeps, shared by `ablate` (NIAH score) and `cot` (task accuracy).

A sweep runs, for each K in `ks`: the top-K retrieval heads masked, and each control in `controls`
(`random`: K non-retrieval heads from anywhere; `random-layer`: K non-retrieval heads from the top-K's own
layers, see `heads.masks`), one run per seed `mask_seed ..`; K = 0 is the unmasked baseline, run once.
`plan` names the runs (`k0-baseline`, `top-k5`, `random-k5-seed0`, `random-layer-k5-seed0`, under a
prefix); `aggregate` turns the finished runs' summaries into one row per (K, kind) with the mean over
seeds, their std, and a bootstrap 95% interval (over samples for one run, over seeds then samples for a
control). Runs not finished yet are listed as missing, so a partial sweep still summarizes.

Left out on purpose: running anything (the experiments do), and significance tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import Config
from ..errors import ParamError, RHeadsError
from ..heads.masks import KINDS, load_sweep_scores
from ..heads.scores import HeadScores
from ..io.rundir import RunBusy
from ..capture.ablation import ABLATION_MODES
from ..analysis.stats import bootstrap_ci, bootstrap_ci_seeds, paired_diff_ci

CONTROLS = ("random", "random-layer")


@dataclass(frozen=True)
class SweepRun:
    k: int
    kind: str  # "none" (the baseline), "top", or a control
    seed: int
    name: str  # its subdirectory

    @property
    def mask(self) -> str:
        return "none" if self.kind == "none" else f"{self.kind}:{self.k}"


@dataclass
class SweepConfig(Config):
    """What every sweep shares (a base for the experiments' configs)."""

    scores: str = ""  # score file (this tool's scores.json or the paper's); required
    ks: list[int] = field(default_factory=lambda: [0, 5, 10, 20, 50, 100])
    random_seeds: int = 3  # draws per control and K
    mask_seed: int = 0  # first seed of the draws
    ablation: str = "zero"  # a mode of runtime.ablation.ABLATION_MODES
    threshold: float = 0.1  # retrieval set = heads scoring above it
    controls: list[str] = field(default_factory=lambda: list(CONTROLS))

    def seeds(self) -> list[int]:
        return [self.mask_seed + i for i in range(self.random_seeds)]


def plan(config: SweepConfig, prefix: str = "") -> list[SweepRun]:
    """The runs, in order: baseline, then per K the top-K run and each control's seeds."""
    runs = [SweepRun(0, "none", 0, f"{prefix}k0-baseline")]
    for k in sorted(set(config.ks) - {0}):
        runs.append(SweepRun(k, "top", 0, f"{prefix}top-k{k}"))
        for c in config.controls:
            runs += [SweepRun(k, c, s, f"{prefix}{c}-k{k}-seed{s}") for s in config.seeds()]
    return runs


def check_sweep(config: SweepConfig, num_layers: int, num_heads: int, what: str) -> HeadScores:
    """Fail before running anything: scores of the model's shape, valid K, seeds, controls and mode."""
    if not config.scores:
        raise RHeadsError(f"{what} needs scores: a scores.json from `rheads detect` or a paper score file")
    if not config.ks or any(k < 0 for k in config.ks):
        raise ParamError("ks", ",".join(map(str, config.ks)), "give K values >= 0, e.g. 0,5,10,20,50")
    if config.random_seeds < 1:
        raise ParamError("random_seeds", config.random_seeds, "must be at least 1")
    bad = [c for c in config.controls if c not in CONTROLS]
    if bad:
        raise ParamError("controls", ",".join(config.controls), f"unknown control {', '.join(bad)}: use "
                         f"{' and/or '.join(CONTROLS)}")
    if config.ablation not in ABLATION_MODES:
        raise ParamError("ablation", config.ablation, f"unknown ablation mode: use one of {', '.join(ABLATION_MODES)}")
    kinds = ("top", *config.controls)
    assert all(k in KINDS for k in kinds)
    return load_sweep_scores(config.scores, config.ks, num_layers, num_heads, threshold=config.threshold,
                             kinds=kinds)


def aggregate(runs: list[SweepRun], done: dict[str, dict], value: str, samples: str) -> list[dict[str, Any]]:
    """One row per (K, kind) over the finished runs: {k, kind, mean, std, values, ci95, n_seeds, missing,
    top_minus}; `top_minus` (controls only, once the top-K run is done): the top-K mean minus the control's,
    {diff, ci95}, the interval bootstrapped over the paired samples (each sample's control value is its mean
    over the seeds, so the interval leaves out which heads the seeds drew).

    `value` is the summary key of a run's mean (e.g. "mean_score"), `samples` the key of its per-sample values.
    """
    groups: dict[tuple[int, str], list[SweepRun]] = {}
    for r in runs:
        groups.setdefault((r.k, r.kind), []).append(r)
    rows = []
    for (k, kind), members in groups.items():
        have = [done[r.name] for r in members if r.name in done]
        vals = [h[value] for h in have]
        per_sample = [h.get(samples) or [] for h in have]
        ci = bootstrap_ci(per_sample[0]) if len(have) == 1 else bootstrap_ci_seeds(per_sample)
        rows.append({"k": k, "kind": kind, "mean": round(float(np.mean(vals)), 4) if vals else None,
                     "std": round(float(np.std(vals, ddof=1)), 4) if len(vals) > 1 else 0.0 if vals else None,
                     "values": vals, "ci95": ci, "n_seeds": len(have),
                     "missing": [r.name for r in members if r.name not in done], "per_sample": per_sample})
    for r in rows:  # each control against the top-K on the same samples
        top = row(rows, r["k"], "top")
        r["top_minus"] = None
        if r["kind"] not in ("none", "top") and top and top["per_sample"] and r["per_sample"]:
            t, c = np.asarray(top["per_sample"][0], float), np.asarray(r["per_sample"], float)  # [n], [seeds, n]
            if t.size and c.ndim == 2 and c.shape[1] == t.size:  # runs written before per-sample values: none
                r["top_minus"] = {"diff": round(float(t.mean() - c.mean()), 4),
                                  "ci95": paired_diff_ci(t, c.mean(axis=0))}
    for r in rows:
        del r["per_sample"]
    return rows


def row(rows: list[dict], k: int, kind: str) -> dict | None:
    return next((r for r in rows if r["k"] == k and r["kind"] == kind), None)


def check_only(only: list[str] | None, names: list[str]) -> None:
    """One-line errors for an `only` list that is empty or names no part."""
    if only is None:
        return
    if not only:
        raise ParamError("only", "", f"names no part; the parts are {','.join(names)}")
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise ParamError("only", ",".join(unknown), f"not a part of this experiment; the parts are {','.join(names)}")


def run_parts(parts: list[tuple[str, Callable[[], Any]]], progress: bool = True) -> None:
    """Run each (name, call) in order, printing "[i/n] name"; a part whose directory another live process is
    writing (`RunBusy`) is skipped with a line saying so, so processes sharing one directory can overlap."""
    for i, (name, call) in enumerate(parts, 1):
        if progress:
            print(f"[{i}/{len(parts)}] {name}", flush=True)
        try:
            call()
        except RunBusy as e:
            print(f"skipped {name}: {e.what}", flush=True)


def finished(out: Path, runs: list[SweepRun]) -> dict[str, dict]:
    """The summaries of the runs that have finished (each writes summary.json at its end)."""
    done = {}
    for r in runs:
        path = out / r.name / "summary.json"
        if path.exists():
            done[r.name] = json.loads(path.read_text())
    return done
