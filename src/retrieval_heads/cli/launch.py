"""The `rheads launch ray` and `rheads launch slurm` subcommands: a shardable command (the words after `--`) run
as n shards on a cluster and merged into its --out (`cluster/launch.py`, `onray.py`, `slurm.py`; docs/cluster.md).

Left out on purpose: what the launchers do (the cluster modules), and Ray or sbatch imports outside the handlers.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from ..errors import ParamError, RHeadsError

FLAGS = {"shards": "--shards", "cpus_per_shard": "--cpus-per-shard", "gpus_per_shard": "--gpus-per-shard",
         "retries": "--retries", "partition": "--partition", "time": "--time", "sbatch": "--sbatch"}


@contextlib.contextmanager
def _flags() -> Iterator[None]:
    """ParamErrors worded with this command's flags (and the shared table's)."""
    from .flags import PARAM_FLAGS

    try:
        yield
    except ParamError as e:
        raise RHeadsError(e.for_cli({**PARAM_FLAGS, **FLAGS})) from None


def _plan(a):
    from ..cluster.launch import plan

    with _flags():
        return plan(a.command, a.shards, a.build_parser())


def cmd_ray(a) -> None:
    from ..cluster.onray import launch_ray

    launch = _plan(a)
    with _flags():
        result = launch_ray(launch, run=a.cli, address=a.address, cpus=a.cpus_per_shard, gpus=a.gpus_per_shard,
                            retries=a.retries)
    retried = [f"shard {i}/{launch.shards}: {k} attempts" for i, k in result["attempts"].items() if k > 1]
    print(f"\n{launch.shards} shards on Ray in {result['seconds']:.0f} s"
          f"{' (' + ', '.join(retried) + ')' if retried else ''}; the merged run is in {launch.out}/ (the shards' "
          f"folders and logs in {launch.shards_dir}/)")


def cmd_slurm(a) -> None:
    from ..cluster import slurm
    from ..cluster.launch import check_out, finish

    launch = _plan(a)
    if a.merge_only:
        check_out(launch)
        finish(launch, run=a.cli)
        print(f"\nmerged {launch.shards} shards into {launch.out}/")
        return
    with _flags():
        opts = slurm.SlurmOptions(partition=a.partition, gpus=a.gpus_per_shard, cpus=a.cpus_per_shard, time=a.time,
                                  retries=a.retries, extra=tuple(a.sbatch or ()))
    array, merge = slurm.write(launch, opts, submit=a.submit)
    print(f"wrote {array} (the {launch.shards} shards, a job array) and {merge} (the merge, after them)")
    if a.submit:
        jid, mid = slurm.submit(launch)
        print(f"submitted job array {jid} and merge job {mid}; logs in {launch.shards_dir}/, the merged run in "
              f"{launch.out}/")
    else:
        print("submit them with (or add --submit):\n")
        print("\n".join(slurm.submit_lines(launch)))


def _common(p, what: str) -> None:
    p.add_argument("--shards", type=int, required=True, help="how many shards to split the run into")
    p.add_argument("--cpus-per-shard", type=int, default=1,
                   help=f"CPUs of each shard's {what}, and its OMP/torch threads (default: 1)")
    p.add_argument("--retries", type=int, default=2,
                   help="reruns of a shard whose process crashed or was killed; each resumes its records (default: 2)")
    p.add_argument("command", nargs="*", metavar="-- COMMAND",
                   help="after --: a shardable rheads subcommand and its flags, with --out, without the word rheads")


def add_parsers(sub) -> None:
    p = sub.add_parser("launch", help="run a command as N shards on Ray or Slurm and merge them into its --out",
                       description="Split a shardable command (detect, niah, ablate, ...) into N shards on a "
                       "cluster; the shards go to OUT/shards/shard-<i>, the merged run to OUT. docs/cluster.md.")
    lp = p.add_subparsers(dest="launch_command", metavar="{ray,slurm}", required=True)

    r = lp.add_parser("ray", help="each shard a Ray task (pip install 'retrieval-heads[ray]'), then the merge",
                      description="rheads launch ray --shards N [--address ADDR] [--cpus-per-shard C] -- "
                      "detect --model M ... --out D")
    _common(r, "Ray task")
    r.add_argument("--address", default=None,
                   help="the Ray cluster (ray.init's address, e.g. auto or ray://head:10001; default: $RAY_ADDRESS "
                   "or a local Ray)")
    r.add_argument("--gpus-per-shard", type=float, default=0, help="GPUs of each shard's Ray task (default: 0)")
    r.set_defaults(func=cmd_ray)

    s = lp.add_parser("slurm", help="write a Slurm job array of the shards and a merge job after it (--submit "
                      "submits them)", description="rheads launch slurm --shards N [--partition P --gpus-per-shard "
                      "G --time T] -- detect --model M ... --out D")
    _common(s, "array task")
    s.add_argument("--partition", default=None, help="sbatch --partition")
    s.add_argument("--gpus-per-shard", type=int, default=0, help="GPUs of each array task (--gres=gpu:G; default: 0)")
    s.add_argument("--time", default=None, help="sbatch --time of each job, e.g. 2:00:00")
    s.add_argument("--sbatch", action="append", default=None, metavar="OPTION",
                   help="another sbatch option for both scripts, e.g. --sbatch=--account=lab (repeatable)")
    how = s.add_mutually_exclusive_group()
    how.add_argument("--submit", action="store_true", help="submit the two jobs with sbatch (default: print how)")
    how.add_argument("--merge-only", action="store_true",
                     help="merge the finished shards into --out here (what the merge job runs)")
    s.set_defaults(func=cmd_slurm)
