"""One offline report over several runs: the paper's properties of retrieval heads, each with figure and table.

`build_report(paths, out)` loads each run (`analysis.runs.load_run`), measures it (`analysis.properties.measure`) and
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

import itertools
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ...analysis.compare import compare
from ...analysis.properties import PropertiesConfig, length_split, measure
from ...analysis.runs import Run, load_run
from ...errors import RHeadsError
from ...io.jsonl import atomic_write_json
from ...version import FORMAT_VERSION, __version__
from ..compare import scatter_plot
from ..heads import head_heatmap
from .experiments import load_sweep
from .figures import activation_scatter, layer_counts, score_histogram, universal_bars
from .html import render_html
from .markdown import render_markdown


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
                 num_kv_heads: int | None = None, ablate_paths: Sequence[str | Path] = (),
                 cot_paths: Sequence[str | Path] = ()) -> Path:
    """Write index.html, summary.md, report.json and figures/ to `out_dir`; returns the path of index.html.

    `num_kv_heads` applies to bare score files only (run directories know their model's KV heads)."""
    if not run_paths and not ablate_paths and not cot_paths:
        raise RHeadsError("rheads report needs at least one run directory or score file (or --ablate / --cot)")
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

    causal = [load_sweep(p, "ablate", figdir) for p in ablate_paths]
    cot = [load_sweep(p, "cot", figdir) for p in cot_paths]
    uni = universal_bars(measured, figdir / "universal.png") if measured else None
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    doc = {"version": FORMAT_VERSION, "toolkit": __version__, "generated": generated, "config": cfg.to_dict(),
           "runs": measured, "pairs": [{k: v for k, v in p.items() if k != "figure"} for p in pairs],
           "causal": [{"source": c.source, "results": c.summary["results"]} for c in causal],
           "cot": [{"source": c.source, "results": c.summary["results"]} for c in cot],
           "seconds": round(time.time() - t0, 2)}
    atomic_write_json(out / "report.json", doc)
    page = render_html(runs, measured, figs, pairs, uni, cfg, generated, causal, cot)
    (out / "index.html").write_text(page, encoding="utf-8")
    md = render_markdown(runs, measured, figs, pairs, uni, cfg, generated, out, causal, cot)
    (out / "summary.md").write_text(md, encoding="utf-8")
    return out / "index.html"
