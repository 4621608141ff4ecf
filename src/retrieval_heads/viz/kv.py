"""KV-cache figures: the budget sweep (NIAH mean against the share of KV bytes kept, one curve per policy), the
NIAH heatmaps of every arm side by side, and the suite sweep (score against budget per family and on the task
mean, one curve per policy: `suite_budget_plot`).

Left out on purpose: timing and memory plots (bench/bench_kv.py writes tables), and significance marks; the
bootstrap intervals are drawn, the reader judges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import pyplot, save_figure
from .niah import score_grid

POLICY_STYLE = {"retrieval": ("o-", "#d73027", "retrieval heads full, others sink + recent"),
                "random": ("s--", "#4575b4", "as many random KV heads full"),
                "streaming": ("^:", "#1a9850", "streaming: every head sink + recent"),
                "streaming-matched": ("v-.", "#762a83", "streaming at the retrieval cache's budget")}


LABEL_OFFSET = {"retrieval": (4, 5), "random": (5, -10), "streaming": (-24, -10), "streaming-matched": (-24, 5)}
OTHER_STYLES = [("D-", "#e08214"), ("P--", "#8c510a"), ("X:", "#01665e"), ("h-.", "#c51b7d")]  # other policies


def policy_styles(rows: list[dict]) -> list[tuple[str, tuple[str, str, str]]]:
    """(policy, (marker style, colour, label)) for every windowed policy in `rows`: the known ones first, then any
    other (a policy registered by user code), labelled by its name."""
    others = sorted({r["policy"] for r in rows if r.get("recent") is not None} - set(POLICY_STYLE))
    return list(POLICY_STYLE.items()) + [(p, (*OTHER_STYLES[i % len(OTHER_STYLES)], p)) for i, p in enumerate(others)]


def budget_styles(rows: list[dict]) -> list[tuple[str, tuple[str, str, str]]]:
    """(policy, (style, colour, label)) for every policy run at budgets (`budget` set), solid lines."""
    names = sorted({r["policy"] for r in rows if r.get("budget") is not None})
    colors = dict((k, v[1]) for k, v in POLICY_STYLE.items())
    return [(p, ("o-", colors.get(p, OTHER_STYLES[i % len(OTHER_STYLES)][1]), f"{p} at a budget"))
            for i, p in enumerate(names)]


def budget_plot(rows: list[dict], path: str | Path, title: str) -> Path:
    """rows: kv-sweep summary arms (policy, recent, budget, kv_share, mean_score, ci95). The full cache is a dashed
    line at share 1 (an arm with neither window nor budget); each other policy is a curve over its windows,
    labelled by recent, and each policy run at budgets a solid curve over them, labelled by budget."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    for r in rows:
        if r.get("recent") is None and r.get("budget") is None:
            ax.axhline(r["mean_score"], color="black", ls="--", lw=1,
                       label=f"{r['policy']} cache ({r['mean_score']:.1f})")
            ax.plot([100.0], [r["mean_score"]], "k*", ms=9)
    curves = [(p, st, "recent", "r") for p, st in policy_styles(rows)] + \
        [(p, st, "budget", "b") for p, st in budget_styles(rows)]
    for policy, (style, color, label), key, tag in curves:
        pts = sorted((100 * r["kv_share"], r["mean_score"], r["ci95"], r[key]) for r in rows
                     if r["policy"] == policy and r["kv_share"] is not None and r.get(key) is not None)
        if not pts:
            continue
        x, y, ci, rec = zip(*pts)
        err = np.array([[m - c[0] if c else 0 for m, c in zip(y, ci)], [c[1] - m if c else 0 for m, c in zip(y, ci)]])
        ax.errorbar(x, y, yerr=err, fmt=style, color=color, capsize=3, label=label)
        for xi, yi, ri in zip(x, y, rec):
            ax.annotate(f"{tag}{ri:g}", (xi, yi), textcoords="offset points", xytext=LABEL_OFFSET.get(policy, (4, 4)),
                        fontsize=7, color=color)
    ax.set_xscale("log")
    ticks = [t for t in (1, 2, 5, 10, 15, 20, 30, 40, 50, 60, 80, 100) if t >= 0.8 * min(
        (100 * r["kv_share"] for r in rows if r.get("kv_share")), default=1)]
    ax.set_xticks(ticks, [f"{t:g}%" for t in ticks])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel("KV bytes kept (% of the full cache, mean over samples)")
    ax.set_ylabel("mean NIAH score (0-100)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title + "\nerror bars: bootstrap 95% intervals; r: recent window (matched: the retrieval arm's); "
                 "b: budget",
                 fontsize=8)
    return save_figure(fig, path)


def arm_heatmaps(arms: list[tuple[str, list[dict]]], path: str | Path, title: str) -> Path:
    """One depth x length NIAH heatmap per arm (title, sample records), side by side on one colour scale."""
    plt = pyplot()
    lengths = sorted({r["length"] for _, recs in arms for r in recs})
    depths = sorted({r["depth"] for _, recs in arms for r in recs})
    cols = min(4, len(arms))
    rows = (len(arms) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 0.35 * len(depths) * rows + 1.6 * rows), squeeze=False)
    im = None
    for ax, (name, recs) in zip(axes.flat, arms):
        grid = score_grid(recs, lengths, depths)  # [depths, lengths]
        im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
        for i in range(len(depths)):
            for j in range(len(lengths)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=7)
        mean = np.mean([r["score"] for r in recs]) if recs else float("nan")
        ax.set_title(f"{name}\nmean {mean:.1f}", fontsize=8)
        ax.set_xticks(range(len(lengths)), [str(n) for n in lengths], fontsize=7)
        ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths], fontsize=7)
    for ax in list(axes.flat)[len(arms):]:
        ax.axis("off")
    fig.subplots_adjust(hspace=0.6)  # room for each panel's two-line title
    fig.suptitle(title + " (x: tokens, y: depth %)", fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=list(axes.flat), shrink=0.8, label="score")
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
    return Path(path)


def suite_budget_plot(summary: dict, path: str | Path) -> Path:
    """`kv-sweep --suite` summary: one panel per family and one for the task mean (over lengths); x the budget, y the
    score, one curve per policy with its bootstrap intervals (families); the full cache a dashed line."""
    plt = pyplot()
    fams = list(dict.fromkeys(r["family"] for r in summary["families"]))
    panels = fams + ["task mean"]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.4), squeeze=False)
    policies = list(dict.fromkeys(r["policy"] for r in summary["rows"] if r["budget"] is not None))
    colors = {p: POLICY_STYLE.get(p, OTHER_STYLES[i % len(OTHER_STYLES)])[1] for i, p in enumerate(policies)}
    for ax, panel in zip(axes[0], panels):
        if panel == "task mean":
            rows: dict[str, list[float]] = {}
            for r in summary["rows"]:
                if r["task"] == "mean":
                    rows.setdefault(r["arm"], []).append(r["score"])
            pts = [(r["policy"], r["budget"], float(np.mean(rows[r["arm"]])), None) for r in
                   {r["arm"]: r for r in summary["rows"] if r["task"] == "mean"}.values()]
        else:
            pts = [(r["policy"], r["budget"], r["score"], r["ci"]) for r in summary["families"] if r["family"] == panel]
        for p, b, y, ci in pts:
            if b is None:
                ax.axhline(y, color="black", ls="--", lw=1, label=f"full ({y:.1f})")
        for p in policies:
            mine = sorted((b, y, ci) for q, b, y, ci in pts if q == p and b is not None)
            if not mine:
                continue
            x, y, ci = zip(*mine)
            err = np.array([[m - c[0] if c else 0 for m, c in zip(y, ci)], [c[1] - m if c else 0 for m, c in zip(y, ci)]])
            ax.errorbar(x, y, yerr=err, fmt="o-", color=colors[p], capsize=3, label=p, ms=4)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("budget (share of the prompt's KV bytes)", fontsize=8)
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("score (0-100)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    cfg = summary["config"]["suite"]
    fig.suptitle(f"{cfg['model']['model']}: suite score against KV budget ({cfg['samples']} samples per task and "
                 "length; error bars: bootstrap 95% intervals)", fontsize=9)
    return save_figure(fig, path)
