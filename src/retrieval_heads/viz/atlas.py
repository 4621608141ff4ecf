"""The atlas figure: how sparse retrieval heads are across model sizes, from 135M to 47B parameters.

Three panels over the given entries (our detection runs solid, the paper's published scores dashed):
- score distribution: the share of heads whose mean retrieval score exceeds x (a survival curve, log scale);
- layer profile: the share of heads above the threshold in each tenth of the depth (layers binned by
  layer / layers), so models of 18 to 40 layers and 4 to 40 heads a layer share one axis;
- the share of heads above the threshold per model, ordered by parameter count, with its head count.

Left out on purpose: per-head identities (each entry's heatmap is `viz.heads`) and any claim the data do not
show: the two sources ran different probes (lengths, needles, counting rules), each entry says which.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import pyplot, save_figure


def _label(entry) -> str:
    p = entry.model.get("params_b")
    size = "" if p is None else (f" ({p * 1000:.0f}M)" if p < 1 else f" ({p:g}B)")
    return f"{entry.model.get('name', entry.name)}{size}"


def _order(entries) -> list:
    return sorted(entries, key=lambda e: (e.model.get("params_b") is None, e.model.get("params_b") or 0, e.name))


def atlas_figure(entries, path: str | Path, threshold: float = 0.1, title: str | None = None) -> Path:
    """Write the three-panel atlas figure of `entries` (AtlasEntry objects) as a PNG; see the module docstring."""
    plt = pyplot()
    entries = _order(entries)
    if not entries:
        raise ValueError("atlas_figure needs at least one entry")
    tab10, tab20 = plt.get_cmap("tab10"), plt.get_cmap("tab20")
    colors = {e.name: tab10(i) if i < 10 else tab20((2 * (i - 10) + 1) % 20) for i, e in enumerate(entries)}
    fig, (ax_d, ax_l, ax_b) = plt.subplots(1, 3, figsize=(17, 5.6), gridspec_kw={"width_ratios": [1, 1, 1.1]})
    xs = np.linspace(0, 1, 201)
    bins = 10
    centers = (np.arange(bins) + 0.5) / bins
    for e in entries:
        style = "-" if e.kind == "run" else "--"
        m = e.mean.reshape(-1)  # [L*H]
        share = [(m > x).mean() for x in xs]
        ax_d.plot(xs, np.maximum(share, 1e-4), style, color=colors[e.name], lw=1.6, label=_label(e))
        above = e.mean > threshold  # [L, H]
        tenth = np.minimum((np.arange(e.num_layers) / e.num_layers * bins).astype(int), bins - 1)  # [L] -> bin
        profile = [above[tenth == b].mean() if (tenth == b).any() else np.nan for b in range(bins)]
        ax_l.plot(centers, profile, style, color=colors[e.name], lw=1.5, marker="o" if e.kind == "run" else None,
                  ms=3)
    ax_d.set_yscale("log")
    ax_d.set_ylim(4e-4, 1.05)
    ax_d.axvline(threshold, color="grey", lw=0.8, ls=":")
    ax_d.set_xlabel("mean retrieval score x")
    ax_d.set_ylabel("share of heads scoring above x")
    ax_d.set_title("score distribution", fontsize=10)
    ax_d.legend(fontsize=7, loc="upper right", title="solid: our runs, dashed: paper", title_fontsize=7)
    ax_l.set_xlabel("relative depth (tenths of the layers)")
    ax_l.set_ylabel(f"share of heads above {threshold:g} in that tenth")
    ax_l.set_xlim(0, 1)
    ax_l.set_title("layer profile", fontsize=10)
    shares = [float((e.mean > threshold).mean()) for e in entries]
    bars = ax_b.bar(range(len(entries)), shares, color=[colors[e.name] for e in entries],
                    hatch=None, edgecolor="black", lw=0.5)
    for bar, e, s in zip(bars, entries, shares):
        if e.kind != "run":
            bar.set_hatch("//")
        n = int((e.mean > threshold).sum())
        ax_b.text(bar.get_x() + bar.get_width() / 2, s, f"{n}/{e.mean.size}", ha="center", va="bottom", fontsize=7)
    ax_b.set_xticks(range(len(entries)))
    ax_b.set_xticklabels([_label(e) for e in entries], rotation=40, ha="right", fontsize=7)
    ax_b.set_ylabel(f"share of heads above {threshold:g}")
    ax_b.set_title("retrieval heads per model, by size (hatched: paper)", fontsize=10)
    fig.suptitle(title or "Head atlas: retrieval heads from 135M to 47B parameters (per-head mean scores)",
                 fontsize=11)
    fig.text(0.5, 0.005, "our runs and the paper's ran different probes (context lengths, needles, samples): "
             "`rheads atlas list` shows each entry's", ha="center", fontsize=7, color="dimgrey")
    return save_figure(fig, path)
