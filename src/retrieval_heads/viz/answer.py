"""The answer benchmark's figure: greedy's selective accuracy against coverage when the monitor's hallucination
score picks which answers to keep (lowest first), one curve per family.

Left out on purpose: the other methods' curves (their accuracies are in tables.md) and intervals per point.
"""

from __future__ import annotations

from pathlib import Path

from .common import pyplot, save_figure


def risk_coverage_plot(curves: dict[str, list[dict]], path: str | Path, title: str) -> Path:
    """curves: family -> [{"coverage", "n", "selective_accuracy"}] (evaluate.risk_coverage)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for fam, pts in curves.items():
        xs = [p["coverage"] for p in pts if p["selective_accuracy"] is not None]
        ys = [p["selective_accuracy"] for p in pts if p["selective_accuracy"] is not None]
        n = max((p["n"] for p in pts), default=0)
        ax.plot(xs, ys, "o-" if fam != "all" else "k--", ms=4, label=f"{fam} (n={n})")
    ax.set_xlabel("coverage (share of answers kept, lowest monitor score first)")
    ax.set_ylabel("accuracy of the kept answers")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
