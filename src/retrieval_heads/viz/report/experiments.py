"""The report's experiment sections: the causal test (`rheads ablate` sweeps) and chain-of-thought against
closed-book (`rheads cot-experiment`), as tables with bootstrap 95% intervals, from the sweeps' summary.json.

Left out on purpose: re-running or re-aggregating anything; the sweeps' own summaries are the source.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...analysis.stats import format_diff
from ...errors import RHeadsError

KINDS = (("top", "top-K"), ("random", "random-K"), ("random_layer", "layer-matched random-K"))


@dataclass
class Sweep:
    name: str
    source: str
    summary: dict[str, Any]
    figure: Path | None  # curve.png or drop.png, copied into the report's figures/


def load_sweep(path: str | Path, kind: str, figdir: Path) -> Sweep:
    """An ablate (kind "ablate") or cot-experiment (kind "cot") directory; its figure is copied to `figdir`."""
    path = Path(path)
    s = path / "summary.json"
    if not s.is_file():
        raise RHeadsError(f"{path} has no summary.json: pass a finished `rheads {'ablate' if kind == 'ablate' else 'cot-experiment'}` "
                          "directory")
    summary = json.loads(s.read_text())
    if ("baseline_mean" in summary) != (kind == "ablate"):
        raise RHeadsError(f"{path} is not a `rheads {'ablate' if kind == 'ablate' else 'cot-experiment'}` directory")
    fig = path / ("curve.png" if kind == "ablate" else "drop.png")
    dest = None
    if fig.is_file():
        dest = figdir / f"{kind}_{path.name}_{fig.name}"
        shutil.copyfile(fig, dest)
    return Sweep(path.name, str(path), summary, dest)


def _cell(mean, ci, std=None, scale=1.0, fmt="{:.1f}") -> str:
    if mean is None:
        return "-"
    out = fmt.format(mean * scale) + (f" ± {fmt.format(std * scale)}" if std else "")
    return out + (f" [{fmt.format(ci[0] * scale)}, {fmt.format(ci[1] * scale)}]" if ci else "")


def causal_table(s: Sweep) -> tuple[list[str], list[list[Any]]]:
    controls = [k for k, _ in KINDS[1:] if any(r.get(f"{k}_mean") is not None for r in s.summary["results"])]
    labels = dict(KINDS)
    header = (["K"] + [label for k, label in KINDS if k == "top" or k in controls]
              + [f"top-K minus {labels[k]} (paired over cells)" for k in controls])
    rows = []
    for r in s.summary["results"]:
        row = [r["k"], _cell(r["top_mean"], r.get("top_ci95"))]
        row += [_cell(r.get(f"{k}_mean"), r.get(f"{k}_ci95"), r.get(f"{k}_std")) for k in controls]
        row += [format_diff(r.get(f"top_minus_{k}")) for k in controls]
        rows.append(row)
    return header, rows


def causal_note(s: Sweep) -> str:
    c = s.summary["config"]
    return (f"{c['model']['model']}, ablation {c['ablation']}, {s.summary.get('n_cells')} NIAH cells, "
            f"{s.summary['n_retrieval_heads']} retrieval heads of {s.summary['n_heads']}, {c['random_seeds']} seeds "
            "per control (mean ± std over seeds [bootstrap 95% interval over seeds and cells]); "
            + (f"not finished: {len(s.summary['missing'])} runs" if s.summary.get("missing") else "complete"))


COT_HEADER = ["mode", "K", "mask", "accuracy [95% CI]", "relative drop",
              "top-K minus this control (paired over items)", "cut off by the token limit",
              "accuracy of the uncut answers", "accuracy if every cut answer were right", "n"]


def cot_table(s: Sweep) -> list[list[Any]]:
    rows = []
    for r in s.summary["results"]:
        drop = "" if r["mask"] == "none" else ("-" if r["relative_drop"] is None else f"{100 * r['relative_drop']:.0f}%")
        cut = "-" if r.get("cut_off_share") is None else f"{100 * r['cut_off_share']:.0f}%"
        bounds = ["-" if r.get(k) is None else f"{r[k]:.3f}" for k in ("accuracy_uncut", "accuracy_cut_right")]
        diff = format_diff(r.get("top_minus"), "{:+.3f}") if r["mask"] not in ("none", "top") else ""
        rows.append([r["mode"], r["k"], r["mask"], _cell(r["accuracy"], r.get("ci95"), r.get("accuracy_std"),
                                                          fmt="{:.3f}"), drop, diff, cut, *bounds, r["n"]])
    return rows


def cot_note(s: Sweep) -> str:
    c = s.summary["config"]
    return (f"{c['model']['model']}, task {c['task']} (limit {c['limit']}), closed-book {c['closedbook_task']}, "
            f"ablation {c['ablation']}, {s.summary['n_retrieval_heads']} retrieval heads; "
            + (f"cut answers rerun with {s.summary['extend_config']['max_new_tokens']} new tokens "
               f"(rheads extend-cut {s.summary['extend_config']['run']}); " if s.summary.get("extend_config") else "")
            + (f"not finished: {len(s.summary['missing'])} runs" if s.summary.get("missing") else "complete"))
