"""The report's Markdown twin (summary.md): the same numbers, linking the PNG files.

Left out on purpose: embedding figures (the HTML page does).
"""

from __future__ import annotations

from pathlib import Path

from ...analysis.properties import PropertiesConfig
from ...analysis.runs import Run
from ...version import __version__
from .experiments import COT_HEADER, Sweep, causal_note, causal_table, cot_note, cot_table
from .tables import PAIR_HEADER, UNIVERSAL_HEADER, md_table, num, pair_rows, pct, universal_rows

def render_markdown(runs: list[Run], measured: list[dict], figs: list, pairs: list[dict], uni: Path | None,
                    cfg: PropertiesConfig, generated: str, out: Path, causal: list[Sweep] = (),
                    cot: list[Sweep] = ()) -> str:
    def rel(p: Path) -> str:
        try:
            return str(p.resolve().relative_to(out.resolve()))
        except ValueError:
            return str(p)

    L = ["# Retrieval heads report", "", f"retrieval-heads {__version__}, generated {generated}; full report: "
         "`index.html` (self-contained).", "", "## Universal", "",
         md_table(UNIVERSAL_HEADER, universal_rows(measured)),
         "", f"![universal]({rel(uni)})" if uni else "", ""]
    for run, m, f in zip(runs, measured, figs):
        sp = m["sparsity"]
        L += [f"## {run.name}", "", f"- model: {m['model']} ({m['family']}), {m['num_layers']} layers x "
              f"{m['num_heads']} heads, source `{run.source}`",
              f"- sparse: {sp['n_retrieval']} of {sp['n_heads']} query heads ({pct(sp['fraction'])}) in "
              f"{len(sp['layers'])} layers"
              + ("" if sp["n_kv_heads"] is None else
                 f"; {sp['n_kv_retrieval']} of {sp['n_kv_heads']} KV heads ({pct(sp['kv_fraction'])})")]
        act = m["activation"]
        L.append(f"- dynamic: unavailable ({m['unavailable']['activation']})" if act is None else
                 f"- dynamic: {act['n_always_on']} always on (>= {act['always_on']:g}), {act['n_context_dependent']} "
                 f"context-dependent, over {act['n_counted']} counted samples")
        ls = m["length_split"]
        L.append(f"- intrinsic (short vs long): unavailable ({m['unavailable']['length_split']})" if ls is None else
                 f"- intrinsic (short <= {ls['boundary']:g} < long, {ls['n_short']} / {ls['n_long']} samples): "
                 f"Pearson {num(ls['pearson'])}, Spearman {num(ls['spearman'])}, Jaccard {num(ls['jaccard'])}, "
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
        L += ["## Across runs", "", md_table(PAIR_HEADER, pair_rows(pairs)), ""]
    for s in causal:
        header, rows = causal_table(s)
        L += [f"## Causal: {s.name}", "", causal_note(s), "", md_table(header, rows), ""]
        L += [f"![curve]({rel(s.figure)})", ""] if s.figure else []
    for s in cot:
        L += [f"## Chain-of-thought: {s.name}", "", cot_note(s), "", md_table(COT_HEADER, cot_table(s)), ""]
        L += [f"![drop]({rel(s.figure)})", ""] if s.figure else []
    return "\n".join(L) + "\n"
