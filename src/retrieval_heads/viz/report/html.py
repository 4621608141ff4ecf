"""The report as one self-contained static HTML page: figures embedded as base64 PNG data URIs, no script.

Left out on purpose: JavaScript and external resources.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from ...analysis.properties import PropertiesConfig
from ...analysis.runs import Run
from ...version import __version__
from .experiments import COT_HEADER, Sweep, causal_note, causal_table, cot_note, cot_table
from .tables import (PAIR_HEADER, SPARSE_HEADER, UNIVERSAL_HEADER, esc, heads_list, html_table, pair_rows,
                     sparse_rows, split_rows, universal_rows)

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


def img(path: Path, alt: str, caption: str, tall: bool = False) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    cls = ' class="tall"' if tall else ""
    return (f'<figure{cls}><img src="data:image/png;base64,{data}" alt="{esc(alt)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def render_html(runs: list[Run], measured: list[dict], figs: list, pairs: list[dict], uni: Path | None,
                cfg: PropertiesConfig, generated: str, causal: list[Sweep] = (), cot: list[Sweep] = ()) -> str:
    P: list[str] = []
    a = P.append
    thr = "each run's own (detect's --threshold)" if cfg.threshold is None else f"{cfg.threshold:g}"
    a("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      f"<title>Retrieval heads: {esc(', '.join(r.name for r in runs))}</title><style>{CSS}</style></head><body>")
    a("<h1>Retrieval heads report</h1>")
    a(f'<p class="meta">retrieval-heads {esc(__version__)} &middot; generated {esc(generated)} &middot; '
      f"{len(runs)} run(s) &middot; threshold: {esc(thr)}"
      f" &middot; always on: activation &ge; {cfg.always_on:g}</p>")
    a("<p>Four properties of retrieval heads (Wu et al., 2024): they are <b>universal</b> (every model has them), "
      "<b>sparse</b> (a few percent of heads), <b>intrinsic</b> (the same heads across contexts and checkpoints) and "
      "<b>dynamically activated</b> (some always copy, others only in some contexts). A head's score is the mean over "
      "counted samples of copies / answer length; a head scoring above the threshold is a retrieval head; a KV head "
      "counts when any of its query heads does.</p>")

    a("<h2 id=\"universal\">1. Universal</h2>")
    a(html_table(UNIVERSAL_HEADER, universal_rows(measured)))
    if uni is not None:
        a('<div class="figs">' + img(uni, "fraction of retrieval heads per run",
                                     "Share of retrieval heads per run, query and KV level.") + "</div>")

    a("<h2 id=\"sparse\">2. Sparse</h2>")
    for run, m, f in zip(runs, measured, figs):
        a(f"<h3>{esc(run.name)} <span class=\"meta\">({esc(m['model'])})</span></h3>")
        a(html_table(SPARSE_HEADER, sparse_rows(m)))
        if "kv_level" in m["unavailable"]:
            a(f'<p class="note">KV level: {esc(m["unavailable"]["kv_level"])}</p>')
        a(f'<p>Retrieval heads, best first: <span class="heads">{esc(heads_list(m["sparsity"]["heads"]))}</span></p>')
        a('<div class="figs">'
          + img(f.heatmap, f"{run.name} heatmap", "Layer x head scores; retrieval heads outlined.", tall=True)
          + img(f.histogram, f"{run.name} score histogram", "Scores of all heads, log-spaced bins; dashed: threshold.")
          + img(f.layers, f"{run.name} retrieval heads per layer", "Retrieval heads per layer at both levels"
                 + (" (shaded: sliding-window layers)." if run.sliding_layers() else ".")) + "</div>")

    a("<h2 id=\"dynamic\">3. Dynamic activation</h2>")
    for run, m, f in zip(runs, measured, figs):
        a(f"<h3>{esc(run.name)}</h3>")
        act = m["activation"]
        if act is None:
            a(f'<p class="note">Unavailable: {esc(m["unavailable"]["activation"])}</p>')
            continue
        side = (html_table(["counted samples", "retrieval heads", f"always on (>= {act['always_on']:g})",
                        "context-dependent"],
                       [[act["n_counted"], act["n_retrieval"], act["n_always_on"], act["n_context_dependent"]]])
                + f'<p>Always on: <span class="heads">{esc(heads_list(act["always_on_heads"]))}</span></p>'
                f'<p>Context-dependent: <span class="heads">{esc(heads_list(act["context_dependent_heads"]))}</span></p>')
        fig = img(f.activation, f"{run.name} activation vs score", "Share of counted samples in which each head "
                   "copied at least one token; dotted: always-on line, dashed: threshold.") if f.activation else ""
        a(f'<div class="figs">{fig}<div>{side}</div></div>')

    a("<h2 id=\"intrinsic\">4. Intrinsic</h2>")
    a("<h3>Short vs long contexts, within each run</h3>")
    for run, m, f in zip(runs, measured, figs):
        ls = m["length_split"]
        if ls is None:
            a(f'<p class="note">{esc(run.name)}: unavailable: {esc(m["unavailable"]["length_split"])}</p>')
            continue
        side = (f"<p><b>{esc(run.name)}</b>: head scores recomputed on the counted samples on each side of the "
                "length boundary.</p>" + html_table(["", "value"], split_rows(ls)))
        fig = img(f.split, f"{run.name} short vs long", "Head scores on short against long contexts; dashed: "
                   "threshold.") if f.split else ""
        a(f'<div class="figs">{fig}<div>{side}</div></div>')
    a("<h3>Across runs of the same architecture</h3>")
    if pairs:
        a(html_table(PAIR_HEADER, pair_rows(pairs)))
        a('<div class="figs">' + "".join(img(p["figure"], f"{p['a']} vs {p['b']}",
                                              f"Head scores: {p['a']} vs {p['b']}.") for p in pairs) + "</div>")
    else:
        a('<p class="note">No two runs share an architecture (layers x heads), so none is compared head by head.</p>')
    a("<h3>Retrieval beyond the sliding window</h3>")
    plain = [r.name for r, m in zip(runs, measured) if r.sliding_layers() is None]
    if plain:
        a(f'<p class="note">No sliding-window layers (every head sees the whole context): {esc(", ".join(plain))}</p>')
    for run, m in zip(runs, measured):
        w = m["beyond_window"]
        if run.sliding_layers() is None:
            continue
        if w is None:
            a(f'<p class="note">{esc(run.name)}: unavailable: {esc(m["unavailable"].get("beyond_window"))}</p>')
            continue
        a(f"<p><b>{esc(run.name)}</b>: window {w['sliding_window']} tokens; {len(w['sliding_layers'])} sliding and "
          f"{len(w['full_layers'])} full-attention layers. A far sample has its whole answer at least a window before "
          "the end of the prompt, where no sliding-window head can see it.</p>")
        a(html_table(["retrieval heads in full layers", "in sliding layers", "far samples (of counted)",
                  "heads copying in far samples: full", "sliding (nonzero flags a bug)"],
                 [[len(w["retrieval_full"]), len(w["retrieval_sliding"]), f"{w['n_far']} / {w['n_counted']}",
                   w["n_heads_copying_far_full"], w["n_heads_copying_far_sliding"]]]))
        a(f'<p>Retrieval heads that retrieved beyond the window: <span class="heads">'
          f'{esc(heads_list(w["retrieval_full_copying_far"]))}</span><br>Retrieval heads in sliding layers: '
          f'<span class="heads">{esc(heads_list(w["retrieval_sliding"]))}</span></p>')

    experiment_sections(a, causal, cot)
    a("<h2 id=\"runs\">7. Runs</h2>")
    for run in runs:
        cfg_json = json.dumps({"source": run.source, "toolkit": run.toolkit, "model": run.model,
                               "config": run.config}, indent=1)
        a(f"<details><summary>{esc(run.name)}: {esc(run.source)}</summary><pre>{esc(cfg_json)}</pre></details>")
    a(f'<details><summary>report config</summary><pre>{esc(json.dumps(cfg.to_dict(), indent=1))}</pre></details>')
    a(f'<p class="meta">Generated by retrieval-heads {esc(__version__)} on {esc(generated)}.</p></body></html>')
    return "\n".join(P)


def experiment_sections(a, causal: list[Sweep], cot: list[Sweep]) -> None:
    """5. the causal test and 6. chain-of-thought against closed-book, when the report has such runs."""
    a("<h2 id=\"causal\">5. Causal: NIAH with heads masked</h2>")
    if not causal:
        a('<p class="note">No `rheads ablate` run given (--ablate DIR).</p>')
    for s in causal:
        header, rows = causal_table(s)
        side = f"<p><b>{esc(s.name)}</b>: {esc(causal_note(s))}</p>" + html_table(header, rows)
        fig = img(s.figure, f"{s.name} curve", "Mean NIAH score against K: top-K retrieval heads masked, and the "
                  "controls; error bars: bootstrap 95% intervals.") if s.figure else ""
        a(f'<div class="figs">{fig}<div>{side}</div></div>')
    a("<h2 id=\"cot\">6. Chain-of-thought against closed-book</h2>")
    if not cot:
        a('<p class="note">No `rheads cot-experiment` run given (--cot DIR).</p>')
    for s in cot:
        side = f"<p><b>{esc(s.name)}</b>: {esc(cot_note(s))}</p>" + html_table(COT_HEADER, cot_table(s))
        fig = img(s.figure, f"{s.name} drop", "Relative accuracy drop against K per mode; error bars: bootstrap "
                  "95% intervals.") if s.figure else ""
        a(f'<div class="figs">{fig}<div>{side}</div></div>')
