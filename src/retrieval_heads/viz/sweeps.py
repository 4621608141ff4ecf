"""Sweep figures: NIAH score against K (top-K against the controls), the response-class mix per K, and the
chain-of-thought accuracy drop against K.

Left out on purpose: significance marks; the bootstrap intervals are drawn, the reader judges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import pyplot, save_figure
from .niah import stacked_classes

KIND_STYLE = {"top": ("o-", "#d73027", "top-K retrieval heads masked"),
              "random": ("s--", "#4575b4", "K random non-retrieval heads"),
              "random-layer": ("^:", "#1a9850", "K non-retrieval heads from the top-K's layers")}
KIND_KEYS = {"top": "top", "random": "random", "random-layer": "random_layer"}


def _errs(means: list, cis: list) -> np.ndarray:
    """[2, n] distances from each mean to its interval ends (0 where there is none)."""
    lo = [m - c[0] if c and m is not None else 0.0 for m, c in zip(means, cis)]
    hi = [c[1] - m if c and m is not None else 0.0 for m, c in zip(means, cis)]
    return np.array([lo, hi])


def curve_plot(results: list[dict], controls: list[str], path: str | Path, title: str) -> Path:
    """Mean NIAH score against K for top-K and each control; error bars are bootstrap 95% intervals."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, kind in enumerate(("top", *controls)):
        key = KIND_KEYS[kind]
        pts = [(r["k"], r[f"{key}_mean"], r[f"{key}_ci95"]) for r in results if r.get(f"{key}_mean") is not None]
        if not pts:
            continue
        ks, means, cis = zip(*pts)
        style, color, label = KIND_STYLE[kind]
        x = np.array(ks, float) * (1 + 0.02 * (i - 1))  # a small offset so the error bars do not overlap
        ax.errorbar(x, means, yerr=_errs(list(means), list(cis)), fmt=style, color=color, capsize=3, label=label)
    ax.set_xscale("symlog", linthresh=5)
    ax.set_xlabel("K (heads masked)")
    ax.set_ylabel("mean NIAH score (0-100)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title + "\nerror bars: bootstrap 95% intervals", fontsize=9)
    return save_figure(fig, path)


def classes_plot(results: list[dict], controls: list[str], path: str | Path, title: str) -> Path:
    """Stacked response-class fractions per K: one bar for top-K and one per control (seeds pooled)."""
    plt = pyplot()
    short = {"top": "top", "random": "rand", "random-layer": "layer"}
    labels, counts = [], []
    for r in results:
        if r["k"] == 0:
            labels.append("0\nbase")
            counts.append(r["top_classes"])
            continue
        for kind in ("top", *controls):
            labels.append(f"{r['k']}\n{short[kind]}")
            counts.append(r[f"{KIND_KEYS[kind]}_classes"])
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(labels) + 3), 4))
    stacked_classes(ax, labels, counts)
    ax.set_xlabel("K heads masked")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return save_figure(fig, path)


