"""The suite's figures: a task x length heatmap of RULER scores (0-100, red to green), each cell with its score
and number of samples; and, for `ablate --suite`, the score against the heads masked per family
(`family_ablation_plot`).

Left out on purpose: interactive plots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import pyplot, save_figure


def suite_heatmap(summary: dict, path: str | Path, title: str) -> Path:
    """Rows: the summary's tasks; columns: its lengths; cells: score and n (blank where a cell has none)."""
    plt = pyplot()
    tasks, lengths = list(summary["tasks"]), list(summary["lengths"])
    grid = np.full((len(tasks), len(lengths)), np.nan)  # [tasks, lengths]
    for i, t in enumerate(tasks):
        for j, n in enumerate(lengths):
            cell = summary["tasks"][t].get(n)
            if cell:
                grid[i, j] = cell["score"]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(lengths) + 3), max(3.0, 0.45 * len(tasks) + 1.8)))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    for i, t in enumerate(tasks):
        for j, n in enumerate(lengths):
            cell = summary["tasks"][t].get(n)
            if cell:
                ax.text(j, i, f"{cell['score']:.0f}\nn={cell['n']}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(lengths)), lengths)
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xlabel("prompt length (tokens)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="RULER score (0-100)")
    return save_figure(fig, path)


def family_ablation_plot(results: dict[str, list[dict]], controls: list[str], path: str | Path, title: str) -> Path:
    """`ablate --suite`: one panel per family (and `all`), the mean score against K for the top-K heads masked and
    each control (its seed mean, error bars its bootstrap interval); K = 0 is the unmasked baseline of every line."""
    plt = pyplot()
    fams = list(results)
    fig, axes = plt.subplots(1, len(fams), figsize=(3.2 * len(fams), 3.3), squeeze=False)
    styles = {"top": ("o-", "#d73027"), "random": ("s--", "#4575b4"), "random-layer": ("^:", "#1a9850")}
    for ax, fam in zip(axes[0], fams):
        rows = results[fam]
        base = next((r for r in rows if r["kind"] == "none" and r["mean"] is not None), None)
        for kind in ("top", *controls):
            pts = sorted((r["k"], r["mean"], r["ci95"]) for r in rows if r["kind"] == kind and r["mean"] is not None)
            if base is not None:
                pts = [(0, base["mean"], base["ci95"])] + pts
            if not pts:
                continue
            x, y, ci = zip(*pts)
            err = [[m - c[0] if c else 0 for m, c in zip(y, ci)], [c[1] - m if c else 0 for m, c in zip(y, ci)]]
            style, color = styles.get(kind, ("D-", "#8c510a"))
            ax.errorbar(x, y, yerr=err, fmt=style, color=color, capsize=3, ms=4, label=kind)
        ax.set_title(fam, fontsize=9)
        ax.set_xlabel("heads masked (K)", fontsize=8)
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("score (0-100)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
