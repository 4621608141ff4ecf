"""NIAH figures: the depth x length score heatmap and the response-class mix.

Left out on purpose: interactive plots.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..scoring.judge import RESPONSE_CLASSES
from .common import pyplot, save_figure

CLASS_COLORS = {"correct": "#1a9850", "partial": "#fee08b", "hallucinated": "#d73027", "refusal": "#74add1",
                "degenerate": "#8c8c8c"}


def score_grid(records: list[dict], lengths: list[int], depths: list[float]) -> np.ndarray:
    """[depths, lengths] mean score of the records in each cell (NaN where a cell has none)."""
    grid = np.full((len(depths), len(lengths)), np.nan)  # [depths, lengths]
    for i, d in enumerate(depths):
        for j, n in enumerate(lengths):
            v = [r["score"] for r in records if r["length"] == n and r["depth"] == d]
            if v:
                grid[i, j] = float(np.mean(v))
    return grid


def niah_heatmap(records: list[dict], path: str | Path, title: str) -> Path:
    """The classic NIAH plot: x = context length, y = depth percent (0 at top), score 0-100 red to green."""
    plt = pyplot()
    lengths = sorted({r["length"] for r in records})
    depths = sorted({r["depth"] for r in records})
    grid = score_grid(records, lengths, depths)  # [depths, lengths]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(lengths) + 3), max(3.5, 0.4 * len(depths) + 2)))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    if grid.size <= 400:
        for i in range(len(depths)):
            for j in range(len(lengths)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(lengths)), [str(l) for l in lengths], rotation=45 if len(lengths) > 8 else 0)
    ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("depth percent")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="score (ROUGE-1 recall x100)")
    return save_figure(fig, path)


def stacked_classes(ax, labels: list[str], counts: list[dict[str, int]]) -> None:
    """Stacked bars of response-class fractions, one bar per label."""
    x = np.arange(len(labels))
    bottom = np.zeros(len(labels))
    totals = np.array([max(1, sum(c.values())) for c in counts], dtype=float)
    for cls in RESPONSE_CLASSES:
        frac = np.array([c.get(cls, 0) for c in counts]) / totals
        ax.bar(x, frac, bottom=bottom, color=CLASS_COLORS[cls], label=cls, edgecolor="white", lw=0.5)
        bottom += frac
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of responses")


def class_mix_plot(records: list[dict], path: str | Path, title: str) -> Path:
    """Response-class mix per context length, and over all samples."""
    plt = pyplot()
    lengths = sorted({r["length"] for r in records})
    labels = [str(l) for l in lengths] + ["all"]
    counts = [Counter(r["class"] for r in records if r["length"] == l) for l in lengths]
    counts.append(Counter(r["class"] for r in records))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(labels) + 3), 3.8))
    stacked_classes(ax, labels, [dict(c) for c in counts])
    ax.set_xlabel("context length (tokens)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return save_figure(fig, path)
