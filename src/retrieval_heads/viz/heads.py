"""The layer x head retrieval-score heatmap.

Left out on purpose: per-sample views (the report has those).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import pyplot, save_figure


def head_heatmap(scores: np.ndarray, path: str | Path, title: str, threshold: float = 0.1) -> Path:
    """Heatmap of [L, H] retrieval scores, layers down, heads across; retrieval heads are outlined."""
    plt = pyplot()
    L, H = scores.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * H + 2.5), max(4.0, 0.22 * L + 1.5)))
    im = ax.imshow(scores, aspect="auto", cmap="viridis", vmin=0, vmax=max(1e-6, float(scores.max())))
    for l, h in zip(*np.nonzero(scores > threshold)):
        ax.add_patch(plt.Rectangle((h - 0.5, l - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.2))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(0, H, max(1, H // 16)))
    ax.set_yticks(range(0, L, max(1, L // 16)))
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="retrieval score")
    return save_figure(fig, path)
