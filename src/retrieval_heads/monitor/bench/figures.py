"""The benchmark's figures: answer-level ROC curves of the monitor against the main baselines, and AUROC with its
bootstrap 95% interval for every detector, per subset, each labelled with its number of answers.

Left out on purpose: computing metrics (evaluation.py / metrics.py) and interactive plots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from ...viz.common import pyplot, save_figure
from ..signals import MONITOR, is_supervised

ROC_SIGNALS = (MONITOR, "retrieval:copy", "all:combined", "random-s0:combined", "mean_logprob",
               "max_entropy", "rauq", "lookback[in-domain]")


def roc_figure(y: np.ndarray, sigs: list[dict[str, float]], path: str | Path, title: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    for name in ROC_SIGNALS:
        s = np.array([x.get(name, np.nan) for x in sigs], dtype=float)
        keep = np.isfinite(s)
        if keep.sum() < 2 or len(set(y[keep])) < 2:
            continue
        fpr, tpr, _ = roc_curve(y[keep], s[keep])
        auc = np.trapezoid(tpr, fpr)
        style = dict(lw=2.4, color="C3") if name == MONITOR else dict(lw=1.2)
        sup = " (SUPERVISED)" if is_supervised(name) else ""
        ax.plot(fpr, tpr, label=f"{name}{sup}: {auc:.3f} (n={int(keep.sum())})", **style)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    ax.set_xlabel("false positive rate (right answers flagged)")
    ax.set_ylabel("true positive rate (wrong answers flagged)")
    ax.set_title(title, fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def auroc_figure(subsets: dict[str, dict[str, dict]], path: str | Path, title: str) -> Path:
    """Horizontal bars: AUROC and 95% interval of every detector, one panel per main subset."""
    plt = pyplot()
    names = [n for n in ("all", "niah", "counterfactual") if n in subsets]
    rows = [k for k in subsets[names[0]]]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 0.28 * len(rows) + 1.6), sharey=True,
                             squeeze=False)
    for ax, sub in zip(axes[0], names):
        table = subsets[sub]
        for i, name in enumerate(rows):
            r = table.get(name)
            if not r or r.get("auroc") is None:
                continue
            lo, hi = r["auroc_ci"]
            color = "C3" if name == MONITOR else ("C2" if is_supervised(name) else "C0")
            ax.errorbar(r["auroc"], i, xerr=[[r["auroc"] - lo], [hi - r["auroc"]]], fmt="o", color=color, ms=4,
                        capsize=2)
        ax.axvline(0.5, ls=":", color="grey", lw=1)
        n = table[rows[0]]["n"] if rows and rows[0] in table else 0
        ax.set_title(f"{sub} (n={n})", fontsize=10)
        ax.set_xlim(0.3, 1.0)
        ax.set_xlabel("AUROC, bootstrap 95% CI")
    axes[0][0].set_yticks(range(len(rows)))
    axes[0][0].set_yticklabels(rows, fontsize=7)
    axes[0][0].invert_yaxis()
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
