"""`rheads launch slurm`: the shards of a launch (`launch.py`) as a Slurm job array, and a merge job after it.

`write` puts two batch scripts in `D/shards/` (after `launch.start`'s check of D):
- `slurm-shards.sbatch`: `--array=0-(n-1)`; array task `$SLURM_ARRAY_TASK_ID` runs shard
  `$SLURM_ARRAY_TASK_ID/n` into `D/shards/shard-$SLURM_ARRAY_TASK_ID` (its output appended to
  `D/shards/shard-<i>.log`; the process is `launch.Launch.shard_process`'s, the rheads CLI). A crash or kill
  of the shard's process is retried in the same job up to `retries` times (each retry resumes the records on
  disk); status 2 (the command refused its input) is not retried.
- `slurm-merge.sbatch`: `rheads launch slurm --merge-only ...`, which merges the finished shards into D (it
  loads the model, so it asks for the shards' resources).
`submit_lines` are the two `sbatch` calls (the merge with `--dependency=afterok:<array job id>`, so it runs once
every array task succeeded); `submit` runs them. The scripts `cd` to the folder the launch was made in and call
the Python that made it (`sys.executable`), so the relative paths of the command and the installed package are
those of the launch; the environment's `RHEADS_CACHE`, `HF_HOME` and `HF_HUB_OFFLINE` are written into them
when set.

Left out on purpose: polling the queue (use `squeue`/`sacct`; the logs are in D/shards/), staging files (a
filesystem shared with the compute nodes is assumed), and options beyond partition, GPUs, CPUs and time (add
them with `extra`, one `#SBATCH` line each, or edit the scripts before submitting).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import ParamError, RHeadsError
from .launch import SHARD_ENTRY, Launch, start

ENV = ("RHEADS_CACHE", "HF_HOME", "HF_HUB_OFFLINE")  # written into the scripts when set
CLI = "-m retrieval_heads.cli.main"


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    gpus: int = 0  # per shard: --gres=gpu:G
    cpus: int = 1  # per shard: --cpus-per-task, and the OMP/MKL threads
    time: str | None = None  # --time, as sbatch takes it (2:00:00, 1-00:00:00)
    retries: int = 2  # reruns of a crashed or killed shard inside its job
    extra: tuple[str, ...] = ()  # more sbatch options, one #SBATCH line each (--account=X)

    def __post_init__(self):
        for name, value, least in (("gpus_per_shard", self.gpus, 0), ("cpus_per_shard", self.cpus, 1),
                                   ("retries", self.retries, 0)):
            if value < least:
                raise ParamError(name, value, f"must be at least {least}")
        for name, value in (("partition", self.partition), ("time", self.time)):
            if value is not None and (not value or re.search(r"\s", value)):
                raise ParamError(name, value, "give one word, as sbatch takes it")
        for x in self.extra:
            if not x.startswith("-") or "\n" in x or "\r" in x:
                raise ParamError("sbatch", x, "give one sbatch option a time, such as --account=lab")


def paths(launch: Launch) -> tuple[Path, Path]:
    return launch.shards_dir / "slurm-shards.sbatch", launch.shards_dir / "slurm-merge.sbatch"


def _header(name: str, output: Path, opts: SlurmOptions, extra: list[str]) -> list[str]:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", *extra, f"#SBATCH --output={output}",
             "#SBATCH --open-mode=append", f"#SBATCH --cpus-per-task={opts.cpus}"]
    lines += [f"#SBATCH --partition={opts.partition}"] if opts.partition else []
    lines += [f"#SBATCH --gres=gpu:{opts.gpus}"] if opts.gpus else []
    lines += [f"#SBATCH --time={opts.time}"] if opts.time else []
    return lines + [f"#SBATCH {x}" for x in opts.extra]


def _setup(opts: SlurmOptions, cwd: str, env: dict[str, str]) -> list[str]:
    lines = ["set -uo pipefail", f"cd {shlex.quote(cwd)}", f"export OMP_NUM_THREADS={opts.cpus} "
             f"MKL_NUM_THREADS={opts.cpus}"]
    return lines + [f"export {k}={shlex.quote(env[k])}" for k in ENV if env.get(k)]


def scripts(launch: Launch, opts: SlurmOptions, *, python: str | None = None, cwd: str | None = None,
            env: dict[str, str] | None = None) -> tuple[str, str]:
    """(the array script, the merge script), as text."""
    if re.search(r"\s", str(launch.out)):
        raise RHeadsError(f"--out {launch.out} holds a space, which #SBATCH --output cannot: choose a path without")
    python, cwd = shlex.quote(python or sys.executable), cwd or os.getcwd()
    env = dict(os.environ) if env is None else env
    n, job = launch.shards, "rheads-" + launch.name.replace(" ", "-")
    argv = " ".join(shlex.quote(w) for w in launch.base)
    folder = shlex.quote(str(launch.shards_dir)) + '/shard-"$i"'
    shards = [*_header(job, launch.shards_dir / "shard-%a.log", opts, [f"#SBATCH --array=0-{n - 1}"]),
              f"# shard $SLURM_ARRAY_TASK_ID/{n} of: rheads {shlex.join(launch.command)}",
              "# written by rheads launch slurm (docs/cluster.md); submit it with the merge job, as it prints",
              *_setup(opts, cwd, env),
              "i=$SLURM_ARRAY_TASK_ID",
              "status=1",
              f"for attempt in $(seq 1 {opts.retries + 1}); do",
              f'  echo "== attempt $attempt on $(hostname), shard $i/{n}, $(date +\'%F %T\')"',
              f'  {python} -m {SHARD_ENTRY} {argv} --shard "$i/{n}" --out {folder} && exit 0',
              "  status=$?",
              '  [ "$status" = 2 ] && exit 2  # the command refused its input (its one-line error is above)',
              '  echo "== attempt $attempt ended: status $status; rerunning resumes its records"',
              "done",
              'exit "$status"']
    merge_argv = " ".join(shlex.quote(w) for w in [*launch.base, "--out", str(launch.out)])
    merge = [*_header(f"{job}-merge", launch.shards_dir / "merge.log", opts, []),
             f"# the merge of the {n} shards of: rheads {shlex.join(launch.command)}",
             "# written by rheads launch slurm (docs/cluster.md); runs after the array job (--dependency=afterok)",
             *_setup(opts, cwd, env),
             f"exec {python} {CLI} launch slurm --merge-only --shards {n} -- {merge_argv}"]
    return "\n".join(shards) + "\n", "\n".join(merge) + "\n"


def submit_lines(launch: Launch) -> list[str]:
    array, merge = (shlex.quote(str(p)) for p in paths(launch))
    return [f"jid=$(sbatch --parsable {array})", f"sbatch --dependency=afterok:${{jid%%;*}} {merge}"]


def write(launch: Launch, opts: SlurmOptions, *, submit: bool = False) -> tuple[Path, Path]:
    """Check D, write launch.json and the two scripts (nothing when a check fails)."""
    if submit and shutil.which("sbatch") is None:
        raise RHeadsError("sbatch is not on PATH: run this on a Slurm login node, or drop --submit and submit the "
                          "scripts it writes there")
    texts = scripts(launch, opts)
    start(launch)
    for path, text in zip(paths(launch), texts):
        path.write_text(text)
        path.chmod(0o755)
    return paths(launch)


def _sbatch(args: list[str]) -> str:
    p = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True)
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or [f"status {p.returncode}"])[-1]
        raise RHeadsError(f"sbatch {' '.join(args)} failed: {last}")
    return p.stdout.strip().split(";")[0]


def submit(launch: Launch) -> tuple[str, str]:
    """Submit the array, then the merge after it: (the array's job id, the merge's)."""
    array, merge = paths(launch)
    jid = _sbatch([str(array)])
    return jid, _sbatch([f"--dependency=afterok:{jid}", str(merge)])
