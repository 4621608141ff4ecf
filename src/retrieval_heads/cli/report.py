"""The `rheads compare` and `rheads report` subcommands.

`rheads compare A B` compares two score sets of one architecture (run directories or score files);
`rheads compare A --split-length [N]` compares the heads found on short against long contexts within run A
(split at N tokens, default the median length). Both write compare.json and scatter.png to `--out`.
`rheads report RUN... --out DIR` writes the offline report (see report.py).
`rheads scale RUN... --out DIR` writes the scale table of runs of one family at several sizes (analysis/scale.py):
scale.json and the Markdown table, with bootstrap intervals of the shares and of each share minus the first's.

Left out on purpose: anything the library does not do; no model is loaded, everything comes from run files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import RHeadsError
from .common import parse_ks

_DEFAULT_KS = "5,10,20,50"

def _split_arg(v: str) -> float | str:
    if v == "median":
        return v
    try:
        return float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v!r} is not a length in tokens or 'median'") from None


def cmd_compare(a) -> None:
    from ..analysis.compare import CompareConfig, compare, format_table, run_source, write_compare
    from ..analysis.properties import length_split
    from ..analysis.runs import load_run
    from ..viz.compare import scatter_plot

    if len(a.runs) > 2:
        raise RHeadsError("rheads compare takes two runs (or one with --split-length); for more, use rheads report")
    if len(a.runs) == 2 and a.split_length is not None:
        raise RHeadsError("--split-length compares short vs long within one run: pass a single run with it")
    if len(a.runs) == 1 and a.split_length is None:
        raise RHeadsError("give two runs to compare, or one run with --split-length to compare short vs long contexts")
    ks = parse_ks(a.k, _DEFAULT_KS, minimum=1)
    out = Path(a.out)
    runs = [load_run(p) for p in a.runs]
    if len(runs) == 2 and runs[0].name == runs[1].name:
        runs[1].name += "-2"
    threshold = runs[0].threshold if a.threshold is None else a.threshold
    config = CompareConfig(ks=ks, threshold=threshold, split_length=a.split_length)
    extra: dict = {}
    if len(runs) == 1:
        run = runs[0]
        boundary = None if a.split_length == "median" else float(a.split_length)
        ls = length_split(run, boundary, threshold, tuple(ks))
        sa, sb = ls.short, ls.long
        la, lb = f"short (<= {ls.boundary:g})", f"long (> {ls.boundary:g})"
        src_a = {**run_source(run, ls.n_short), "name": f"{run.name} short", "subset": la}
        src_b = {**run_source(run, ls.n_long), "name": f"{run.name} long", "subset": lb}
        extra["split"] = {"boundary": ls.boundary, "rule": ls.rule, "n_short": ls.n_short, "n_long": ls.n_long}
        result = ls.comparison
        title = f"{run.name}: short vs long contexts ({ls.n_short} / {ls.n_long} samples)"
    else:
        ra, rb = runs
        sa, sb, la, lb = ra.scores, rb.scores, ra.name, rb.name
        result = compare(sa, sb, ks=ks, threshold=threshold)
        src_a, src_b = run_source(ra), run_source(rb)
        if ra.family != rb.family and "unknown" not in (ra.family, rb.family):
            extra["note"] = f"families differ ({ra.family} vs {rb.family}) though the shapes match"
        title = f"{la} vs {lb}"
    write_compare(out, result, src_a, src_b, config, extra)
    scatter_plot(sa, sb, out / "scatter.png", la, lb, threshold, title)
    print(format_table(result, la, lb))
    if "note" in extra:
        print(f"note: {extra['note']}")
    print(f"\nresults in {out}/ (compare.json, scatter.png)")


def cmd_scale(a) -> None:
    import json

    from ..analysis.runs import load_run
    from ..analysis.scale import format_scale_table, scale_row, scale_table, share_ci, share_diff_ci

    if len(a.runs) < 2:
        raise RHeadsError("rheads scale compares sizes: give two or more runs (the first is the reference)")
    runs = [load_run(p) for p in a.runs]
    for r in runs:
        if r.scores.counts is not None:
            raise RHeadsError(f"{r.name}: per-head means only (an atlas entry); rheads scale needs a run's samples")
    rows = scale_table([scale_row(r.name, r.scores) for r in runs])
    for r, run in zip(rows, runs):
        r["share_above_0.1_ci"] = share_ci(run.scores)
        r["minus_first"] = None if run is runs[0] else share_diff_ci(runs[0].scores, run.scores)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps({"runs": list(a.runs), "rows": rows}, indent=1))
    print(format_scale_table(rows))
    for r in rows:
        lo, hi = r["share_above_0.1_ci"]
        d = r["minus_first"]
        tail = "" if d is None else (f"; minus {rows[0]['model']}: {100 * d['diff']:+.1f} points "
                                     f"[{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]")
        print(f"{r['model']}: above 0.1 {100 * r['share_above_0.1']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]{tail}")
    print(f"\nresults in {out}/scale.json")


def cmd_report(a) -> None:
    from ..analysis.properties import PropertiesConfig
    from ..viz.report.build import build_report

    cfg = PropertiesConfig(threshold=a.threshold, always_on=a.always_on, split_length=a.split_length,
                           ks=parse_ks(a.k, _DEFAULT_KS, minimum=1))
    if not 0 < cfg.always_on <= 1:
        raise RHeadsError(f"--always-on {cfg.always_on} is not a share of samples: give a number in (0, 1]")
    path = build_report(a.runs, a.out, cfg, num_kv_heads=a.kv_heads, ablate_paths=a.ablate or (), cot_paths=a.cot or ())
    out = path.parent
    print(f"report: {path} (self-contained; open it in a browser)\nsummary: {out / 'summary.md'}; "
          f"numbers: {out / 'report.json'}; figures: {out / 'figures'}/")


def add_parsers(sub) -> None:
    """Add `compare` and `report` to an argparse subparsers object."""
    p = sub.add_parser("compare", help="compare two score sets head by head, or short vs long contexts in one run",
                       description="Pearson and Spearman correlation of head scores, top-k overlap and Jaccard of "
                       "the retrieval sets, for two runs of one architecture (run directories or score files), or, "
                       "with --split-length, for the short and long samples of one run.")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run directory or scores.json (two, or one with --split-length)")
    p.add_argument("--out", default="runs/compare", help="where compare.json and scatter.png go (default: %(default)s)")
    p.add_argument("--k", default=_DEFAULT_KS, help="top-k sizes for the overlap (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=None,
                   help="retrieval heads score above it (default: the first run's detect threshold, 0.1)")
    p.add_argument("--split-length", type=_split_arg, nargs="?", const="median", default=None, metavar="N",
                   help="one run: short = length <= N tokens, long = the rest (no N: the median length)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("scale", help="the scale table: runs of one family at several sizes, side by side",
                       description="Share of heads above 0.1 and 0.05 (with bootstrap intervals over each run's "
                       "counted samples), score quantiles, the depth of the top-20 heads and the per-layer profile "
                       "on a common relative-depth grid, for detection runs of models of different sizes.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories of `rheads detect` (the first is the "
                   "reference)")
    p.add_argument("--out", default="runs/scale", help="where scale.json goes (default: %(default)s)")
    p.set_defaults(func=cmd_scale)

    p = sub.add_parser("report", help="one offline HTML report (and summary.md) of the properties over several runs",
                       description="Sparse, universal, intrinsic and dynamic properties of the retrieval heads of "
                       "each run, with figures, in one self-contained index.html, plus summary.md and report.json.")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run directories of `rheads detect` or score files")
    p.add_argument("--ablate", nargs="+", metavar="DIR", help="`rheads ablate` directories: the causal section")
    p.add_argument("--cot", nargs="+", metavar="DIR", help="`rheads cot-experiment` directories: the CoT section")
    p.add_argument("--out", default="report", help="output directory (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=None,
                   help="retrieval heads score above it (default: each run's detect threshold, 0.1)")
    p.add_argument("--always-on", type=float, default=0.9,
                   help="heads copying in at least this share of counted samples are always on (default: %(default)s)")
    p.add_argument("--split-length", type=float, default=None, metavar="N",
                   help="short vs long boundary in tokens (default: each run's median length)")
    p.add_argument("--k", default=_DEFAULT_KS, help="top-k sizes for overlaps (default: %(default)s)")
    p.add_argument("--kv-heads", type=int, default=None,
                   help="KV heads per layer for bare score files (run directories know theirs)")
    p.set_defaults(func=cmd_report)
