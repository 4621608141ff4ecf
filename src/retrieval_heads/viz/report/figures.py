"""The report's per-run figures: score histogram, retrieval heads per layer, activation against score, and the
fraction of retrieval heads per run.

Left out on purpose: figures shared with the commands (`viz/heads.py`, `viz/compare.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..common import pyplot, save_figure

DPI = 110


def score_histogram(mean: np.ndarray, path: Path, threshold: float, title: str) -> Path:
    """Histogram of all heads' scores on log-spaced bins (log counts); heads scoring 0 are counted in the title."""
    plt = pyplot()
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    x = np.asarray(mean, float).ravel()
    pos = x[x > 0]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    if pos.size:
        lo = 10 ** np.floor(np.log10(pos.min()))
        hi = max(1.0, float(pos.max()))
        bins = np.geomspace(lo, hi, max(10, int(4 * np.log10(hi / lo)) + 1))
        lo_, hi_ = pos[pos <= threshold], pos[pos > threshold]
        ax.hist(lo_, bins=bins, color="#9e9e9e", label=f"<= {threshold:g} ({lo_.size})")
        ax.hist(hi_, bins=bins, color="#d7301f", label=f"> {threshold:g} ({hi_.size})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.7)
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.axvline(threshold, color="black", ls="--", lw=0.9)
        ax.legend(fontsize=9)
    else:
        ax.text(0.5, 0.5, "every head scores 0", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("retrieval score (log)")
    ax.set_ylabel("heads (log)")
    ax.set_title(f"{title}\n{x.size} heads, {int((x == 0).sum())} score exactly 0 (not shown)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path, dpi=DPI)


def layer_counts(m: dict[str, Any], path: Path, title: str, sliding: list[bool] | None) -> Path:
    """Retrieval heads per layer: query heads and (when known) KV heads; sliding-window layers shaded."""
    plt = pyplot()
    sp = m["sparsity"]
    L = sp["num_layers"]
    xs = np.arange(L)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    if sliding:
        for l, s in enumerate(sliding[:L]):
            if s:
                ax.axvspan(l - 0.5, l + 0.5, color="#deebf7", lw=0)
    w = 0.4 if sp["per_layer_kv"] is not None else 0.8
    ax.bar(xs - (w / 2 if sp["per_layer_kv"] is not None else 0), sp["per_layer"], width=w, color="#d7301f",
           label=f"query heads (of {sp['num_heads']})")
    if sp["per_layer_kv"] is not None:
        ax.bar(xs + w / 2, sp["per_layer_kv"], width=w, color="#3182bd", label=f"KV heads (of {sp['num_kv_heads']})")
    if sliding:
        ax.bar([0], [0], color="#deebf7", label="sliding-window layer")
    ax.set_xlabel("layer")
    ax.set_ylabel("retrieval heads")
    ax.set_xlim(-0.7, L - 0.3)
    ax.set_xticks(range(0, L, max(1, -(-L // 15))))
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path, dpi=DPI)


def activation_scatter(mean: np.ndarray, freq: np.ndarray, path: Path, threshold: float, always_on: float,
                       title: str) -> Path:
    """Activation frequency against score, every head; retrieval heads coloured always-on / context-dependent."""
    plt = pyplot()
    x, y = np.asarray(mean).ravel(), np.asarray(freq).ravel()
    ret = x > threshold
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for sel, lab, col in ((~ret, "not retrieval", "#bdbdbd"), (ret & (y >= always_on), "always on", "#d7301f"),
                          (ret & (y < always_on), "context-dependent", "#3182bd")):
        if sel.any():
            ax.scatter(x[sel], y[sel], s=14, c=col, alpha=0.8, edgecolors="none", label=f"{lab} ({int(sel.sum())})")
    ax.axhline(always_on, color="black", ls=":", lw=0.9)
    ax.axvline(threshold, color="black", ls="--", lw=0.9)
    ax.set_xscale("symlog", linthresh=1e-2)
    ax.set_xlim(0, max(1e-3, float(x.max(initial=0))) * 1.2)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("retrieval score")
    ax.set_ylabel("share of counted samples with a copy")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=DPI)


def universal_bars(rows: list[dict[str, Any]], path: Path) -> Path:
    """Fraction of retrieval heads per run, query and KV level."""
    plt = pyplot()
    names = [r["name"] for r in rows]
    q = [100 * r["sparsity"]["fraction"] for r in rows]
    kv = [100 * (r["sparsity"]["kv_fraction"] or 0.0) for r in rows]
    xs = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.bar(xs - 0.2, q, width=0.4, color="#d7301f", label="query heads")
    ax.bar(xs + 0.2, kv, width=0.4, color="#3182bd", label="KV heads (0 where unknown)")
    ax.set_xticks(xs)
    tilt = len(rows) > 3
    ax.set_xticklabels(names, rotation=20 if tilt else 0, ha="right" if tilt else "center", fontsize=9)
    ax.set_ylabel("% retrieval heads")
    ax.set_title("retrieval heads in every model", fontsize=10)
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path, dpi=DPI)
