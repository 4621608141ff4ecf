"""Chain-of-thought figures: the relative accuracy drop against K per mode, and who copies during CoT.

Left out on purpose: per-item views (items.jsonl has them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .common import pyplot, save_figure

MODE_COLORS = {"cot": "#d73027", "direct": "#4575b4", "closedbook": "#1a9850"}
KIND_STYLE = {"top": "o-", "random": "s--", "random-layer": "^:"}
KIND_LABEL = {"top": "top-K retrieval heads", "random": "K random other heads",
              "random-layer": "K other heads, top-K layers"}


def drop_plot(results: list[dict], modes: list[str], path: str | Path, title: str) -> Path:
    """Relative accuracy drop against K: one colour per mode, one line style per kind (top-K, controls);
    error bars: the bootstrap 95% interval of the accuracy, relative to the baseline."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    zero = []
    for mode in modes:
        rows = [r for r in results if r["mode"] == mode and r["accuracy"] is not None]
        base = next((r for r in rows if r["mask"] == "none"), None)
        if base is None:
            continue
        if not base["accuracy"]:
            zero.append(mode)  # a zero baseline has no relative drop
            continue
        b = base["accuracy"]
        for kind in KIND_STYLE:
            pts = sorted((r["k"], r["relative_drop"], r.get("ci95")) for r in rows if r["mask"] == kind)
            if not pts:
                continue
            ks, drops, cis = zip(*([(0, 0.0, None)] + pts))
            err = np.array([[d - (b - c[1]) / b if c else 0.0 for d, c in zip(drops, cis)],
                            [(b - c[0]) / b - d if c else 0.0 for d, c in zip(drops, cis)]])
            ax.errorbar(ks, drops, yerr=err, fmt=KIND_STYLE[kind], color=MODE_COLORS.get(mode, "k"), capsize=3,
                        label=f"{mode}: {KIND_LABEL[kind]}", alpha=1.0 if kind == "top" else 0.7)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("K (heads masked)")
    ax.set_ylabel("relative accuracy drop (base - acc) / base")
    ax.grid(alpha=0.3)
    if zero:
        ax.text(0.02, 0.02, f"baseline accuracy 0 (no relative drop): {', '.join(zero)}", transform=ax.transAxes,
                fontsize=8, color="#555555")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.set_title(title + "\nerror bars: bootstrap 95% intervals", fontsize=9)
    return save_figure(fig, path)


def copy_share_plot(share: dict[str, Any], path: str | Path, title: str) -> Path:
    """Left: share of repeated tokens copied by retrieval vs matched random vs all other heads, by source.
    Right: each head's copy rate against its retrieval score."""
    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    groups = [("all repeats", {**share, "n": share["n_repeat"]}), ("from question", share["by_source"]["question"]),
              ("from earlier steps", share["by_source"]["earlier_steps"])]
    sets = [("retrieval", f"retrieval heads ({share['n_retrieval_heads']})", "#d73027"),
            ("random_matched", f"{share['n_retrieval_heads']} random other heads", "#4575b4"),
            ("all_other", "all other heads", "#8c8c8c")]
    x = np.arange(len(groups))
    w = 0.27
    for j, (key, label, color) in enumerate(sets):
        vals = [g[key] if g[key] is not None else np.nan for _, g in groups]
        err = [g.get("random_matched_std", 0.0) if key == "random_matched" else 0.0 for _, g in groups]
        ax.bar(x + (j - 1) * w, vals, w, yerr=err, capsize=3, color=color, label=label)
    ax.set_xticks(x, [f"{n}\n(n={g['n']})" for n, g in groups])
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of repeated tokens copied")
    ax.legend(fontsize=8)
    ax.set_title("repeated CoT tokens copied by top-1 attention", fontsize=9)
    rates = share["head_copy_rate"]
    xs = [share["head_score"][h] for h in rates]
    ax2.set_title("per head: CoT copy rate vs retrieval score", fontsize=9)
    ax2.scatter(xs, list(rates.values()), s=10, c=["#d73027" if v > share["threshold"] else "#4575b4" for v in xs])
    ax2.axvline(share["threshold"], color="k", lw=0.6, ls=":")
    ax2.set_xlabel("retrieval score")
    ax2.set_ylabel("copy rate (copies / repeats)")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
