"""Markdown tables of a benchmark summary (evaluation.py): one table per main subset with every signal, and a
per-length table of the monitor against the main baselines.

Left out on purpose: computing anything; this only formats summary.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..signals import is_supervised
from .metrics import MIN_PER_CLASS

MAIN = ("all", "niah", "counterfactual", "answerable", "strict", "all+degenerate")
PER_LENGTH = ("retrieval:combined", "retrieval:copy", "all:combined", "random-s0:combined", "mean_logprob",
              "min_logprob", "max_entropy", "rauq", "length")


def _ci(row: dict | None, key: str = "auroc", ci: str = "auroc_ci") -> str:
    if not row or row.get(key) is None:
        return "-"
    lo, hi = row[ci] or (None, None)
    return f"{row[key]:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None else f"{row[key]:.3f}"


def _kind(name: str) -> str:
    return "SUPERVISED" if is_supervised(name) else "unsupervised"


def subset_table(rows: dict[str, dict]) -> list[str]:
    out = ["| signal | type | n (wrong) | AUROC [95% CI] | monitor - this [95% CI] | P@R80 | token AUROC [95% CI] "
           "(tokens) |", "|---|---|---:|---|---|---:|---|"]
    for name, r in rows.items():
        d = r.get("monitor_minus")
        diff = "-" if not d or d.get("diff") is None else f"{d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"
        tok = r.get("token")
        tcell = "-" if not tok or tok.get("auroc") is None else f"{_ci(tok)} ({tok['n_tokens']})"
        p = "-" if r.get("p_at_r80") is None else f"{r['p_at_r80']:.3f}"
        out.append(f"| `{name}` | {_kind(name)} | {r['n']} ({r['positives']}) | {_ci(r)} | {diff} | {p} | {tcell} |")
    return out


def write_tables(path: str | Path, summary: dict[str, Any]) -> Path:
    model = (summary.get("model") or {}).get("spec") or "?"
    c = summary["counts"]
    lines = [f"# Monitor benchmark: {model}", "",
             f"{summary['answers']} answers, {summary['labelled']} labelled (right/wrong); classes {c['classes']}; "
             f"wrong share {c['wrong_share']}; counterfactual wrong answers that give the real-world answer: "
             f"{c['counterfactual_wrong_parametric']} of {c['counterfactual_wrong']}.", "",
             *([f"Unanswerable items: {c['unanswerable']}.", ""] if c.get("unanswerable") else []),
             "By kind: " + "; ".join(f"{k} {v}" for k, v in c["by_kind"].items()), "",
             "By length: " + "; ".join(f"{k} {v}" for k, v in c["by_length"].items()), ""]
    goals = summary.get("goals") or {}
    if goals:
        lines += ["## Goals", "", "| subset | monitor AUROC [95% CI] | closest unsupervised baseline: monitor - it "
                  "[95% CI] | monitor - Lookback Lens (SUPERVISED) [95% CI] |", "|---|---|---|---|"]
        for sub, g in goals.items():
            c = g["closest_unsupervised"]
            cc = "-" if not c else f"`{c['name']}` {c['diff']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]"
            lk = "; ".join(f"`{k}` {v['diff']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]"
                           for k, v in g["minus_lookback"].items() if v.get("diff") is not None) or "-"
            lines.append(f"| {sub} | {g['auroc']:.3f} [{g['auroc_ci'][0]:.3f}, {g['auroc_ci'][1]:.3f}] | {cc} | {lk} |")
        lines.append("")
    for sub in MAIN:
        rows = summary["subsets"].get(sub)
        if not rows:
            continue
        first = next(iter(rows.values()))  # the monitor's row (evaluate sorts it first)
        if first["auroc"] is None:  # too few answers of a class (metrics.MIN_PER_CLASS): no table to show
            lines += [f"## {sub}", "", f"{first['n']} answers, {first['positives']} wrong: under {MIN_PER_CLASS} "
                      "of a class, no AUROC.", ""]
        else:
            lines += [f"## {sub}", ""] + subset_table(rows) + [""]
    lengths = [k for k in summary["subsets"] if k.startswith("length=")]
    if lengths:
        lines += ["## AUROC by length", "", "| signal | " + " | ".join(k.split("=")[1] for k in lengths) + " |",
                  "|---|" + "---|" * len(lengths)]
        for name in PER_LENGTH:
            cells = [_ci(summary["subsets"][k].get(name)) for k in lengths]
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
        lines.append("")
    f = summary.get("flags")
    if f:
        lines += ["## The unsupported flag and the verdict", "",
                  f"Token flag (no retrieval head copied it from the context) against the token labels: precision "
                  f"{f['token_precision']}, recall {f['token_recall']} (tp {f['tp']}, fp {f['fp']}, fn {f['fn']}).", "",
                  "| verdict | right | wrong | unlabelled |", "|---|---:|---:|---:|"]
        for v, c in f["verdicts"].items():
            lines.append(f"| {v} | {c.get('right', 0)} | {c.get('wrong', 0)} | {c.get('unlabelled', 0)} |")
        lines.append("")
    if summary.get("overhead"):
        lines += ["## Overhead", "", "```", str(summary["overhead"]), "```", ""]
    path = Path(path)
    path.write_text("\n".join(lines))
    return path
