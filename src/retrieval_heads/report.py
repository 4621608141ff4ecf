"""One offline report over several runs: the paper's properties of retrieval heads, each with figure and table.

`build_report(paths, out)` loads each run (`properties.load_run`), measures it (`properties.measure`) and
writes to `out`:
- `index.html`: one self-contained static page, every figure embedded as a base64 PNG data URI (no
  network, no script, no external URL), sections Universal, Sparse, Dynamic activation, Intrinsic, and
  Runs (each run's config.json in a collapsible block), with the toolkit version and generation time;
  figures are laid out two to a row and fit a 1280-pixel window;
- `summary.md`: the same numbers in Markdown, linking the PNGs;
- `figures/*.png`: every figure, also as files;
- `report.json`: the measurements (versioned, with the config).

What a run cannot show (a bare score file has no samples; a model without sliding-window layers has no
window analysis) is stated in the page instead of a figure.

Left out on purpose: interactive plots, JavaScript, and styling options; the page is plain HTML and CSS.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import __version__
from .compare import compare, scatter_plot
from .errors import RHeadsError
from .plots import head_heatmap, pyplot
from .properties import PropertiesConfig, Run, length_split, load_run, measure
from .results import FORMAT_VERSION, atomic_write_json

DPI = 110


# -------------------------------------------------------------------------------------------- figures


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)
    return path


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
    return _save(fig, path)


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
    return _save(fig, path)


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
    return _save(fig, path)


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
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------- html

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; margin: 0 auto;
       max-width: 1200px; padding: 16px 24px; line-height: 1.45; font-size: 15px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 1.8em; }
h3 { margin-bottom: 0.3em; } .meta { color: #555; font-size: 0.92em; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.figs { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 16px; margin: 8px 0; }
figure { margin: 0; } figure.tall { grid-row: span 2; }
figure img { width: 100%; height: auto; display: block; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; margin-top: 2px; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 4px 10px; margin: 6px 0; font-size: 0.92em; }
.heads { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.85em; word-break: break-word; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 0.8em; max-height: 420px; }
details { margin: 6px 0; } summary { cursor: pointer; font-weight: 600; }
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(x: Any, fmt: str = "{:.3f}") -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return fmt.format(x)
    return str(x)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for r in rows:
        cells = []
        for c in r:
            cls = ' class="num"' if isinstance(c, (int, float)) or (isinstance(c, str) and _looks_numeric(c)) else ""
            cells.append(f"<td{cls}>{_e(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _looks_numeric(s: str) -> bool:
    try:
        float(s.rstrip("%"))
        return True
    except ValueError:
        return False


def _img(path: Path, alt: str, caption: str, tall: bool = False) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    cls = ' class="tall"' if tall else ""
    return (f'<figure{cls}><img src="data:image/png;base64,{data}" alt="{_e(alt)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _heads(heads: list[str], limit: int = 40) -> str:
    if not heads:
        return "none"
    more = f" ... (+{len(heads) - limit})" if len(heads) > limit else ""
    return ", ".join(heads[:limit]) + more


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- report


@dataclass
class _RunFigs:
    histogram: Path
    layers: Path
    heatmap: Path
    activation: Path | None = None
    split: Path | None = None


def _unique_names(runs_paths: Sequence[str | Path]) -> list[str]:
    names, seen = [], {}
    for p in runs_paths:
        p = Path(p)
        base = p.stem if p.is_file() and p.name != "scores.json" else (p.parent.name if p.is_file() else p.name)
        base = base or "run"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def build_report(run_paths: Sequence[str | Path], out_dir: str | Path, config: PropertiesConfig | None = None,
                 num_kv_heads: int | None = None) -> Path:
    """Write index.html, summary.md, report.json and figures/ to `out_dir`; returns the path of index.html.

    `num_kv_heads` applies to bare score files only (run directories know their model's KV heads)."""
    if not run_paths:
        raise RHeadsError("rheads report needs at least one run directory or score file")
    cfg = config or PropertiesConfig()
    out = Path(out_dir)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    runs: list[Run] = []
    for p, name in zip(run_paths, _unique_names(run_paths)):
        run = load_run(p, name=name)
        if num_kv_heads is not None and run.num_kv_heads is None:
            run = load_run(p, name=name, num_kv_heads=num_kv_heads)
        runs.append(run)
    measured = [measure(r, cfg) for r in runs]

    figs: list[_RunFigs] = []
    for run, m in zip(runs, measured):
        s = _safe(run.name)
        mean = run.scores.mean()
        thr = m["threshold"]
        hm = figdir / f"{s}_heatmap.png"
        if (Path(run.source) / "heatmap.png").is_file():  # the run's own, as `rheads detect` drew it
            shutil.copyfile(Path(run.source) / "heatmap.png", hm)
        else:
            head_heatmap(mean, hm, f"{run.name}: retrieval scores", thr)
        f = _RunFigs(
            histogram=score_histogram(mean, figdir / f"{s}_histogram.png", thr, f"{run.name}: score distribution"),
            layers=layer_counts(m, figdir / f"{s}_layers.png", f"{run.name}: retrieval heads per layer",
                                run.sliding_layers()),
            heatmap=hm,
        )
        if m["activation"] is not None:
            freq = np.zeros_like(mean)
            for k, v in m["activation"]["frequency"].items():
                l, h = (int(x) for x in k.split("-"))
                freq[l, h] = v
            f.activation = activation_scatter(mean, freq, figdir / f"{s}_activation.png", thr, cfg.always_on,
                                              f"{run.name}: activation frequency vs score")
        if m["length_split"] is not None:
            ls = length_split(run, cfg.split_length, thr, tuple(cfg.ks))
            f.split = scatter_plot(ls.short, ls.long, figdir / f"{s}_short_long.png",
                                   f"short (<= {ls.boundary:g})", f"long (> {ls.boundary:g})", thr,
                                   f"{run.name}: short vs long contexts ({ls.n_short} / {ls.n_long} samples)")
        figs.append(f)

    pairs = []
    for (i, a), (j, b) in itertools.combinations(enumerate(runs), 2):
        if (a.scores.num_layers, a.scores.num_heads) != (b.scores.num_layers, b.scores.num_heads):
            continue
        thr = measured[i]["threshold"]
        res = compare(a.scores, b.scores, ks=cfg.ks, threshold=thr)
        png = scatter_plot(a.scores, b.scores, figdir / f"pair_{_safe(a.name)}_vs_{_safe(b.name)}.png",
                           a.name, b.name, thr, f"{a.name} vs {b.name}")
        pairs.append({"a": a.name, "b": b.name, "figure": png, **res})

    uni = universal_bars(measured, figdir / "universal.png")
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    doc = {"version": FORMAT_VERSION, "toolkit": __version__, "generated": generated, "config": cfg.to_dict(),
           "runs": measured, "pairs": [{k: v for k, v in p.items() if k != "figure"} for p in pairs],
           "seconds": round(time.time() - t0, 2)}
    atomic_write_json(out / "report.json", doc)
    page = _html(runs, measured, figs, pairs, uni, cfg, generated)
    (out / "index.html").write_text(page, encoding="utf-8")
    (out / "summary.md").write_text(_markdown(runs, measured, figs, pairs, uni, cfg, generated, out), encoding="utf-8")
    return out / "index.html"


def _universal_rows(measured: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for m in measured:
        sp = m["sparsity"]
        rows.append([m["name"], m["model"], m["family"], f"{m['num_layers']} x {m['num_heads']}", sp["n_heads"],
                     sp["n_retrieval"], _pct(sp["fraction"]),
                     "n/a" if sp["n_kv_heads"] is None else f"{sp['n_kv_retrieval']} / {sp['n_kv_heads']}",
                     _pct(sp["kv_fraction"]), f"{m['top_head']} ({m['top_score']:.3f})", m["n_counted"]])
    return rows


UNIVERSAL_HEADER = ["run", "model", "family", "layers x heads", "heads", "retrieval heads", "fraction",
                    "KV heads with one", "KV fraction", "strongest head (score)", "counted samples"]


def _sparse_rows(m: dict[str, Any]) -> list[list[Any]]:
    sp = m["sparsity"]
    rows = [["query heads", sp["n_heads"], sp["n_retrieval"], _pct(sp["fraction"]),
             _heads([str(l) for l in sp["layers"]], 64)]]
    if sp["n_kv_heads"] is not None:
        kv_layers = [str(l) for l, n in enumerate(sp["per_layer_kv"]) if n]
        rows.append(["KV heads", sp["n_kv_heads"], sp["n_kv_retrieval"], _pct(sp["kv_fraction"]),
                     _heads(kv_layers, 64)])
    return rows


SPARSE_HEADER = ["level", "heads", "retrieval", "fraction", "layers holding one"]


def _split_rows(ls: dict[str, Any]) -> list[list[Any]]:
    """One metric a row (the table sits beside its figure)."""
    rows = [["boundary (length, tokens)", f"{ls['boundary']:g} ({ls['rule']})"],
            ["counted samples: short / long", f"{ls['n_short']} / {ls['n_long']}"],
            ["retrieval heads: short / long / both", f"{ls['n_above_a']} / {ls['n_above_b']} / {ls['n_above_both']}"],
            ["Pearson", _num(ls["pearson"])], ["Spearman", _num(ls["spearman"])], ["Jaccard", _num(ls["jaccard"])]]
    return rows + [[f"top-{k} overlap", _num(v)] for k, v in ls["topk_overlap"].items()]


def _pair_rows(pairs: list[dict[str, Any]]) -> list[list[Any]]:
    return [[p["a"], p["b"], p["n_above_a"], p["n_above_b"], _num(p["pearson"]), _num(p["spearman"]),
             _num(p["jaccard"]), ", ".join(f"top-{k}: {v:.2f}" for k, v in p["topk_overlap"].items())] for p in pairs]


PAIR_HEADER = ["run A", "run B", "retrieval (A)", "retrieval (B)", "Pearson", "Spearman", "Jaccard", "top-k overlap"]


def _html(runs: list[Run], measured: list[dict], figs: list[_RunFigs], pairs: list[dict], uni: Path,
          cfg: PropertiesConfig, generated: str) -> str:
    P: list[str] = []
    a = P.append
    thr = "each run's own (detect's --threshold)" if cfg.threshold is None else f"{cfg.threshold:g}"
    a("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      f"<title>Retrieval heads: {_e(', '.join(r.name for r in runs))}</title><style>{CSS}</style></head><body>")
    a("<h1>Retrieval heads report</h1>")
    a(f'<p class="meta">retrieval-heads {_e(__version__)} &middot; generated {_e(generated)} &middot; '
      f"{len(runs)} run(s) &middot; threshold: {_e(thr)}"
      f" &middot; always on: activation &ge; {cfg.always_on:g}</p>")
    a("<p>Four properties of retrieval heads (Wu et al., 2024): they are <b>universal</b> (every model has them), "
      "<b>sparse</b> (a few percent of heads), <b>intrinsic</b> (the same heads across contexts and checkpoints) and "
      "<b>dynamically activated</b> (some always copy, others only in some contexts). A head's score is the mean over "
      "counted samples of copies / answer length; a head scoring above the threshold is a retrieval head; a KV head "
      "counts when any of its query heads does.</p>")

    a("<h2 id=\"universal\">1. Universal</h2>")
    a(_table(UNIVERSAL_HEADER, _universal_rows(measured)))
    a('<div class="figs">' + _img(uni, "fraction of retrieval heads per run",
                                 "Share of retrieval heads per run, query and KV level.") + "</div>")

    a("<h2 id=\"sparse\">2. Sparse</h2>")
    for run, m, f in zip(runs, measured, figs):
        a(f"<h3>{_e(run.name)} <span class=\"meta\">({_e(m['model'])})</span></h3>")
        a(_table(SPARSE_HEADER, _sparse_rows(m)))
        if "kv_level" in m["unavailable"]:
            a(f'<p class="note">KV level: {_e(m["unavailable"]["kv_level"])}</p>')
        a(f'<p>Retrieval heads, best first: <span class="heads">{_e(_heads(m["sparsity"]["heads"]))}</span></p>')
        a('<div class="figs">'
          + _img(f.heatmap, f"{run.name} heatmap", "Layer x head scores; retrieval heads outlined.", tall=True)
          + _img(f.histogram, f"{run.name} score histogram", "Scores of all heads, log-spaced bins; dashed: threshold.")
          + _img(f.layers, f"{run.name} retrieval heads per layer", "Retrieval heads per layer at both levels"
                 + (" (shaded: sliding-window layers)." if run.sliding_layers() else ".")) + "</div>")

    a("<h2 id=\"dynamic\">3. Dynamic activation</h2>")
    for run, m, f in zip(runs, measured, figs):
        a(f"<h3>{_e(run.name)}</h3>")
        act = m["activation"]
        if act is None:
            a(f'<p class="note">Unavailable: {_e(m["unavailable"]["activation"])}</p>')
            continue
        side = (_table(["counted samples", "retrieval heads", f"always on (>= {act['always_on']:g})",
                        "context-dependent"],
                       [[act["n_counted"], act["n_retrieval"], act["n_always_on"], act["n_context_dependent"]]])
                + f'<p>Always on: <span class="heads">{_e(_heads(act["always_on_heads"]))}</span></p>'
                f'<p>Context-dependent: <span class="heads">{_e(_heads(act["context_dependent_heads"]))}</span></p>')
        fig = _img(f.activation, f"{run.name} activation vs score", "Share of counted samples in which each head "
                   "copied at least one token; dotted: always-on line, dashed: threshold.") if f.activation else ""
        a(f'<div class="figs">{fig}<div>{side}</div></div>')

    a("<h2 id=\"intrinsic\">4. Intrinsic</h2>")
    a("<h3>Short vs long contexts, within each run</h3>")
    for run, m, f in zip(runs, measured, figs):
        ls = m["length_split"]
        if ls is None:
            a(f'<p class="note">{_e(run.name)}: unavailable: {_e(m["unavailable"]["length_split"])}</p>')
            continue
        side = (f"<p><b>{_e(run.name)}</b>: head scores recomputed on the counted samples on each side of the "
                "length boundary.</p>" + _table(["", "value"], _split_rows(ls)))
        fig = _img(f.split, f"{run.name} short vs long", "Head scores on short against long contexts; dashed: "
                   "threshold.") if f.split else ""
        a(f'<div class="figs">{fig}<div>{side}</div></div>')
    a("<h3>Across runs of the same architecture</h3>")
    if pairs:
        a(_table(PAIR_HEADER, _pair_rows(pairs)))
        a('<div class="figs">' + "".join(_img(p["figure"], f"{p['a']} vs {p['b']}",
                                              f"Head scores: {p['a']} vs {p['b']}.") for p in pairs) + "</div>")
    else:
        a('<p class="note">No two runs share an architecture (layers x heads), so none is compared head by head.</p>')
    a("<h3>Retrieval beyond the sliding window</h3>")
    plain = [r.name for r, m in zip(runs, measured) if r.sliding_layers() is None]
    if plain:
        a(f'<p class="note">No sliding-window layers (every head sees the whole context): {_e(", ".join(plain))}</p>')
    for run, m in zip(runs, measured):
        w = m["beyond_window"]
        if run.sliding_layers() is None:
            continue
        if w is None:
            a(f'<p class="note">{_e(run.name)}: unavailable: {_e(m["unavailable"].get("beyond_window"))}</p>')
            continue
        a(f"<p><b>{_e(run.name)}</b>: window {w['sliding_window']} tokens; {len(w['sliding_layers'])} sliding and "
          f"{len(w['full_layers'])} full-attention layers. A far sample has its whole answer at least a window before "
          "the end of the prompt, where no sliding-window head can see it.</p>")
        a(_table(["retrieval heads in full layers", "in sliding layers", "far samples (of counted)",
                  "heads copying in far samples: full", "sliding (0 by construction)"],
                 [[len(w["retrieval_full"]), len(w["retrieval_sliding"]), f"{w['n_far']} / {w['n_counted']}",
                   w["n_heads_copying_far_full"], w["n_heads_copying_far_sliding"]]]))
        a(f'<p>Retrieval heads that retrieved beyond the window: <span class="heads">'
          f'{_e(_heads(w["retrieval_full_copying_far"]))}</span><br>Retrieval heads in sliding layers: '
          f'<span class="heads">{_e(_heads(w["retrieval_sliding"]))}</span></p>')

    a("<h2 id=\"runs\">5. Runs</h2>")
    for run in runs:
        cfg_json = json.dumps({"source": run.source, "toolkit": run.toolkit, "model": run.model,
                               "config": run.config}, indent=1)
        a(f"<details><summary>{_e(run.name)}: {_e(run.source)}</summary><pre>{_e(cfg_json)}</pre></details>")
    a(f'<details><summary>report config</summary><pre>{_e(json.dumps(cfg.to_dict(), indent=1))}</pre></details>')
    a(f'<p class="meta">Generated by retrieval-heads {_e(__version__)} on {_e(generated)}.</p></body></html>')
    return "\n".join(P)


def _markdown(runs: list[Run], measured: list[dict], figs: list[_RunFigs], pairs: list[dict], uni: Path,
              cfg: PropertiesConfig, generated: str, out: Path) -> str:
    def rel(p: Path) -> str:
        try:
            return str(p.resolve().relative_to(out.resolve()))
        except ValueError:
            return str(p)

    L = ["# Retrieval heads report", "", f"retrieval-heads {__version__}, generated {generated}; full report: "
         "`index.html` (self-contained).", "", "## Universal", "",
         _md_table(UNIVERSAL_HEADER, _universal_rows(measured)),
         "", f"![universal]({rel(uni)})", ""]
    for run, m, f in zip(runs, measured, figs):
        sp = m["sparsity"]
        L += [f"## {run.name}", "", f"- model: {m['model']} ({m['family']}), {m['num_layers']} layers x "
              f"{m['num_heads']} heads, source `{run.source}`",
              f"- sparse: {sp['n_retrieval']} of {sp['n_heads']} query heads ({_pct(sp['fraction'])}) in "
              f"{len(sp['layers'])} layers"
              + ("" if sp["n_kv_heads"] is None else
                 f"; {sp['n_kv_retrieval']} of {sp['n_kv_heads']} KV heads ({_pct(sp['kv_fraction'])})")]
        act = m["activation"]
        L.append(f"- dynamic: unavailable ({m['unavailable']['activation']})" if act is None else
                 f"- dynamic: {act['n_always_on']} always on (>= {act['always_on']:g}), {act['n_context_dependent']} "
                 f"context-dependent, over {act['n_counted']} counted samples")
        ls = m["length_split"]
        L.append(f"- intrinsic (short vs long): unavailable ({m['unavailable']['length_split']})" if ls is None else
                 f"- intrinsic (short <= {ls['boundary']:g} < long, {ls['n_short']} / {ls['n_long']} samples): "
                 f"Pearson {_num(ls['pearson'])}, Spearman {_num(ls['spearman'])}, Jaccard {_num(ls['jaccard'])}, "
                 + ", ".join(f"top-{k} {v:.2f}" for k, v in ls["topk_overlap"].items()))
        w = m["beyond_window"]
        if w is not None:
            L.append(f"- beyond the window ({w['sliding_window']}): "
                     f"{len(w['retrieval_full_copying_far'])} retrieval heads "
                     f"(all in full-attention layers) copied in {w['n_far']} far samples; sliding-layer heads copying "
                     f"there: {w['n_heads_copying_far_sliding']}")
        L += ["", " ".join(f"![{k}]({rel(p)})" for k, p in
                           (("histogram", f.histogram), ("layers", f.layers), ("heatmap", f.heatmap),
                            ("activation", f.activation), ("short vs long", f.split)) if p is not None), ""]
    if pairs:
        L += ["## Across runs", "", _md_table(PAIR_HEADER, _pair_rows(pairs)), ""]
    return "\n".join(L) + "\n"
