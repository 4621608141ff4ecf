"""The report's tables and cell formatting, shared by the HTML page and the Markdown summary.

Left out on purpose: markup (`html.py`, `markdown.py`).
"""

from __future__ import annotations

import html
from typing import Any, Sequence


def esc(x: Any) -> str:
    return html.escape(str(x))


def num(x: Any, fmt: str = "{:.3f}") -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return fmt.format(x)
    return str(x)


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for r in rows:
        cells = []
        for c in r:
            cls = ' class="num"' if isinstance(c, (int, float)) or (isinstance(c, str) and _looks_numeric(c)) else ""
            cells.append(f"<td{cls}>{esc(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _looks_numeric(s: str) -> bool:
    try:
        float(s.rstrip("%"))
        return True
    except ValueError:
        return False


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def universal_rows(measured: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for m in measured:
        sp = m["sparsity"]
        rows.append([m["name"], m["model"], m["family"], f"{m['num_layers']} x {m['num_heads']}", sp["n_heads"],
                     sp["n_retrieval"], pct(sp["fraction"]),
                     "n/a" if sp["n_kv_heads"] is None else f"{sp['n_kv_retrieval']} / {sp['n_kv_heads']}",
                     pct(sp["kv_fraction"]), f"{m['top_head']} ({m['top_score']:.3f})", m["n_counted"]])
    return rows


UNIVERSAL_HEADER = ["run", "model", "family", "layers x heads", "heads", "retrieval heads", "fraction",
                    "KV heads with one", "KV fraction", "strongest head (score)", "counted samples"]


def sparse_rows(m: dict[str, Any]) -> list[list[Any]]:
    sp = m["sparsity"]
    rows = [["query heads", sp["n_heads"], sp["n_retrieval"], pct(sp["fraction"]),
             heads_list([str(l) for l in sp["layers"]], 64)]]
    if sp["n_kv_heads"] is not None:
        kv_layers = [str(l) for l, n in enumerate(sp["per_layer_kv"]) if n]
        rows.append(["KV heads", sp["n_kv_heads"], sp["n_kv_retrieval"], pct(sp["kv_fraction"]),
                     heads_list(kv_layers, 64)])
    return rows


SPARSE_HEADER = ["level", "heads", "retrieval", "fraction", "layers holding one"]


def split_rows(ls: dict[str, Any]) -> list[list[Any]]:
    """One metric a row (the table sits beside its figure)."""
    rows = [["boundary (length, tokens)", f"{ls['boundary']:g} ({ls['rule']})"],
            ["counted samples: short / long", f"{ls['n_short']} / {ls['n_long']}"],
            ["retrieval heads: short / long / both", f"{ls['n_above_a']} / {ls['n_above_b']} / {ls['n_above_both']}"],
            ["Pearson", num(ls["pearson"])], ["Spearman", num(ls["spearman"])], ["Jaccard", num(ls["jaccard"])]]
    return rows + [[f"top-{k} overlap", num(v)] for k, v in ls["topk_overlap"].items()]


def pair_rows(pairs: list[dict[str, Any]]) -> list[list[Any]]:
    return [[p["a"], p["b"], p["n_above_a"], p["n_above_b"], num(p["pearson"]), num(p["spearman"]),
             num(p["jaccard"]), ", ".join(f"top-{k}: {v:.2f}" for k, v in p["topk_overlap"].items())] for p in pairs]


PAIR_HEADER = ["run A", "run B", "retrieval (A)", "retrieval (B)", "Pearson", "Spearman", "Jaccard", "top-k overlap"]


def heads_list(heads: list[str], limit: int = 40) -> str:
    if not heads:
        return "none"
    more = f" ... (+{len(heads) - limit})" if len(heads) > limit else ""
    return ", ".join(heads[:limit]) + more
