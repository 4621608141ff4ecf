"""The suite's figure: a task x length heatmap of RULER scores (0-100, red to green), each cell with its score
and number of samples.

Left out on purpose: interactive plots and per-family panels (the family means are in summary.json).
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
