"""The `rheads merge` subcommand: shard folders in, the unsharded run's folder out (`cluster/merge.py`).

Left out on purpose: launching shards (`rheads launch`, in `launch.py`).
"""

from __future__ import annotations


def cmd_merge(a) -> None:
    from ..cluster.merge import merge

    out = merge(a.dirs, a.out, run=a.cli, overwrite=a.overwrite)
    print(f"\nmerged {len(a.dirs)} shards into {out}/")


def add_parsers(sub) -> None:
    p = sub.add_parser("merge", help="combine the folders of a sharded run (--shard i/n) into the unsharded run's")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="the shards' folders, each finished (any order)")
    p.add_argument("--out", required=True, help="the merged folder (new or empty); its files equal an unsharded "
                   "run's except timings")
    p.add_argument("--overwrite", action="store_true", help="replace what --out holds")
    p.set_defaults(func=cmd_merge)
