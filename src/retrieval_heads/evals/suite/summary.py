"""The suite's `summary.json` and its text table.

`suite_summary(records, config, heads, model, cache)`: `tasks` {task: {length: {score, n, ci}}} (score 0-100,
the mean of the samples' RULER scores; ci the bootstrap 95% interval, `analysis/stats.py`), `families`
{family: {score, n, ci, tasks}} (over the family's samples), `lengths` {length: mean over the tasks},
`mean_score` (the mean of the task x length cells), the mask, and the KV keys of `kvcache.factory.kv_summary`
(`kv_policy`, `kv_bytes`, `kv_bytes_full`, ...). `format_table(summary)` prints tasks by lengths.

Left out on purpose: RULER's weighted averages (wAvg); figures (`viz/suite.py`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...analysis.stats import bootstrap_ci
from ...version import FORMAT_VERSION, __version__
from .registry import FAMILIES, get_task


def _cell(scores: list[float]) -> dict[str, Any]:
    return {"score": round(float(np.mean(scores)), 2), "n": len(scores), "ci": bootstrap_ci(scores)}


def suite_summary(records: list[dict], config, heads: list[tuple[int, int]], model=None, cache=None) -> dict:
    from ...heads.masks import format_heads
    from ...kvcache.factory import kv_summary
    from ...models.info import model_meta

    by_cell: dict[str, dict[int, list[float]]] = {}
    for r in records:
        by_cell.setdefault(r["task"], {}).setdefault(r["length"], []).append(r["score"])
    tasks = {t: {str(n): _cell(v) for n, v in sorted(cells.items())} for t, cells in by_cell.items()}
    families = {}
    for fam in FAMILIES:
        names = [t for t in by_cell if get_task(t).family == fam]
        if names:
            scores = [s for t in names for v in by_cell[t].values() for s in v]
            families[fam] = {**_cell(scores), "tasks": names}
    lengths = sorted({n for cells in by_cell.values() for n in cells})
    per_length = {str(n): round(float(np.mean([np.mean(c[n]) for c in by_cell.values() if n in c])), 2)
                  for n in lengths}
    cells = [np.mean(v) for c in by_cell.values() for v in c.values()]
    return {
        "version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
        "model": model_meta(model) if model is not None else None,
        "tasks": tasks, "families": families, "lengths": per_length,
        "mean_score": round(float(np.mean(cells)), 2) if cells else 0.0, "n_samples": len(records),
        "mask": config.mask, "ablation": config.ablation if heads else None, "masked_heads": format_heads(heads),
        "n_masked": len(heads), "seconds": round(sum(r.get("seconds", 0.0) for r in records), 1),
        **kv_summary(records, config.kv, model, cache),
    }


def format_table(summary: dict) -> str:
    """Tasks (rows) by lengths (columns): score and n; then family means and the overall mean."""
    lengths = list(summary["lengths"])
    lines = [f"{'task':<18}{'family':<13}" + "".join(f"{n:>14}" for n in lengths)]
    for t, cells in summary["tasks"].items():
        row = "".join(f"{cells[n]['score']:>9.1f} n={cells[n]['n']:<2}" if n in cells else f"{'-':>14}"
                      for n in lengths)
        lines.append(f"{t:<18}{get_task(t).family:<13}{row}")
    lines.append(f"{'mean':<31}" + "".join(f"{summary['lengths'][n]:>9.1f}     " for n in lengths))
    lines.append("")
    lines.append("families: " + ", ".join(f"{f} {d['score']:.1f} [{d['ci'][0]:.1f}, {d['ci'][1]:.1f}] (n={d['n']})"
                                         for f, d in summary["families"].items()))
    lines.append(f"mean score {summary['mean_score']:.1f} over {sum(len(c) for c in summary['tasks'].values())} "
                 f"task x length cells, {summary['n_samples']} samples")
    return "\n".join(lines)
