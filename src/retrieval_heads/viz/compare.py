"""The head-by-head scatter of two score sets (symlog axes, the diagonal, threshold lines).

Left out on purpose: the comparison's numbers (`analysis/compare.py`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..heads.scores import HeadScores
from .common import pyplot, save_figure


def _mean(x: HeadScores | np.ndarray) -> np.ndarray:
    return x.mean() if isinstance(x, HeadScores) else np.asarray(x, dtype=float)


def scatter_plot(a: HeadScores | np.ndarray, b: HeadScores | np.ndarray, path: str | Path, label_a: str, label_b: str,
                 threshold: float = 0.1, title: str | None = None) -> Path:
    """Head scores of b against a (symlog axes, diagonal, threshold lines); colour = retrieval in which."""
    plt = pyplot()
    ma, mb = _mean(a).ravel(), _mean(b).ravel()
    ina, inb = ma > threshold, mb > threshold
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    groups = [(~ina & ~inb, "neither", "#bdbdbd"), (ina & ~inb, f"only {label_a}", "#1f78b4"),
              (~ina & inb, f"only {label_b}", "#ff7f00"), (ina & inb, "both", "#d7301f")]
    for sel, lab, col in groups:
        if sel.any():
            ax.scatter(ma[sel], mb[sel], s=14, c=col, alpha=0.8, label=f"{lab} ({int(sel.sum())})", edgecolors="none")
    hi = max(1e-3, float(max(ma.max(initial=0), mb.max(initial=0)))) * 1.2
    lin = 1e-2
    ax.plot([0, hi], [0, hi], color="black", lw=0.8, ls="-", label="y = x")
    ax.axvline(threshold, color="grey", lw=0.8, ls="--")
    ax.axhline(threshold, color="grey", lw=0.8, ls="--")
    ax.set_xscale("symlog", linthresh=lin)
    ax.set_yscale("symlog", linthresh=lin)
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_xlabel(f"score: {label_a}")
    ax.set_ylabel(f"score: {label_b}")
    ax.set_title(title or f"head scores ({len(ma)} heads; dashed: threshold {threshold:g})", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, frameon=False)
    ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=110)
