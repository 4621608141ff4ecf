"""The `rheads atlas` subcommands: list, show, add and draw the head atlas (`--scores atlas:NAME` elsewhere).

  rheads atlas list [--json]                    every entry: model, weights file and sha256, dtype, probe,
                                                counted samples, tool version and source
  rheads atlas show NAME [--top 10]             one entry and its best heads
  rheads atlas add RUN_DIR [--name N] [--overwrite]   register a `rheads detect` run in the user's atlas folder
  rheads atlas figure [--out atlas.png] [--names a,b]  score distribution and layer profile per model

Left out on purpose: deleting entries (delete the file `rheads atlas list` names) and anything that loads a model.
"""

from __future__ import annotations

import json

from ..errors import ParamError, RHeadsError

_FLAGS = {"name": "--name", "overwrite": "--overwrite"}


def _probe_line(probe) -> str:
    if not probe:
        return "unknown"
    if probe.get("recorded") is False:
        return f"not recorded ({probe.get('script', '')}): {probe.get('note', '')}"
    return ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in probe.items())


def _where(entry) -> str:
    from ..atlas import SHIPPED_DIR

    return "shipped" if entry.path is not None and entry.path.parent == SHIPPED_DIR else f"user: {entry.path}"


def _block(e) -> str:
    m = e.model
    shape = f"{e.num_layers} layers x {e.num_heads} heads" + (f", {m['num_kv_heads']} KV heads"
                                                            if m.get("num_kv_heads") else "")
    w = e.weights
    weights = f"{w.get('file') or 'unknown file'}  sha256 {w.get('sha256') or 'unknown (matched by dimensions only)'}"
    lines = [f"atlas:{e.name}  ({_where(e)})",
             f"  model    {m.get('name')} ({m.get('family', '?')}, {shape})",
             f"  weights  {weights}",
             f"  dtype    {e.dtype or 'unknown'}",
             f"  probe    {_probe_line(e.probe)}",
             f"  samples  {e.n_samples} counted",
             f"  tool     {e.tool_version}",
             f"  source   {e.source_line()}"]
    if e.source.get("license"):
        lines.append(f"  license  {e.source['license']}")
    if e.source.get("note"):
        lines.append(f"  note     {e.source['note']}")
    return "\n".join(lines)


def _summary(e) -> dict:
    out = {k: v for k, v in e.to_json().items() if k not in ("mean", "samples")}
    return {**out, "location": _where(e)}


def cmd_list(a) -> None:
    from ..atlas import list_entries, user_dir

    entries = sorted(list_entries(), key=lambda e: (_where(e) != "shipped", e.kind != "run",
                                                    e.model.get("params_b") or 0, e.name))
    if a.json:
        print(json.dumps([_summary(e) for e in entries], indent=1))
        return
    print("\n\n".join(_block(e) for e in entries))
    print(f"\n{len(entries)} entries; your own go in {user_dir()} (`rheads atlas add RUN_DIR`); "
          "use one with --scores atlas:NAME")


def cmd_show(a) -> None:
    from ..atlas import find_entry

    e = find_entry(a.name)
    if a.top < 1:
        raise RHeadsError(f"--top {a.top}: give a number of heads >= 1")
    print(_block(e))
    flat = sorted(((float(e.mean[l, h]), l, h) for l in range(e.num_layers) for h in range(e.num_heads)),
                  key=lambda x: (-x[0], x[1], x[2]))
    print(f"  above {a.threshold:g}: {sum(s > a.threshold for s, _, _ in flat)} of {len(flat)} heads")
    print("  top heads: " + ", ".join(f"{l}-{h} {s:.3f}" for s, l, h in flat[:a.top]))


def cmd_add(a) -> None:
    from ..atlas.build import add_run

    try:
        e = add_run(a.run, a.name, overwrite=a.overwrite)
    except ParamError as err:
        raise RHeadsError(err.for_cli(_FLAGS)) from None
    print(_block(e))
    print(f"\nadded {e.path}; use it with --scores atlas:{e.name}")


def cmd_figure(a) -> None:
    from ..atlas import find_entry, list_entries
    from ..viz.atlas import atlas_figure

    entries = [find_entry(n.strip()) for n in a.names.split(",") if n.strip()] if a.names else list_entries()
    if not entries:
        raise RHeadsError("the atlas is empty: add a run with `rheads atlas add RUN_DIR`")
    path = atlas_figure(entries, a.out, threshold=a.threshold)
    print(f"wrote {path} ({len(entries)} entries)")


def add_parsers(sub) -> None:
    """Add `atlas` with its subcommands list, show, add and figure."""
    p = sub.add_parser("atlas", help="the head atlas: shipped and your own head scores, used as --scores atlas:NAME",
                       description="Head scores as versioned, reusable files. Shipped: our detection runs and the "
                       "paper's published scores (per-head means); yours: $RHEADS_ATLAS or <cache>/atlas.")
    sp = p.add_subparsers(dest="atlas_command", metavar="{list,show,add,figure}", required=True)

    s = sp.add_parser("list", help="every entry: model, weights and sha256, dtype, probe, samples, tool, source")
    s.add_argument("--json", action="store_true", help="print the entries' fields as JSON (no scores)")
    s.set_defaults(func=cmd_list)

    s = sp.add_parser("show", help="one entry and its best heads")
    s.add_argument("name", help="entry name (atlas:NAME or NAME)")
    s.add_argument("--top", type=int, default=10, help="how many heads to list (default: %(default)s)")
    s.add_argument("--threshold", type=float, default=0.1, help="retrieval-head threshold (default: %(default)s)")
    s.set_defaults(func=cmd_show)

    s = sp.add_parser("add", help="register a `rheads detect` run directory in your atlas folder")
    s.add_argument("run", help="the run directory (config.json, summary.json, scores.json)")
    s.add_argument("--name", default=None, help="entry name (default: the run's named model, else the folder's name)")
    s.add_argument("--overwrite", action="store_true", help="replace your entry of that name")
    s.set_defaults(func=cmd_add)

    s = sp.add_parser("figure", help="score distribution and layer profile of every entry, as one PNG")
    s.add_argument("--out", default="atlas.png", help="PNG to write (default: %(default)s)")
    s.add_argument("--names", default=None, help="comma list of entries (default: all)")
    s.add_argument("--threshold", type=float, default=0.1, help="retrieval-head threshold (default: %(default)s)")
    s.set_defaults(func=cmd_figure)
