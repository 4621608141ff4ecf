"""`rheads launch ray`: the shards of a launch (`launch.py`) as Ray tasks, their progress on the driver, and the
merge at the end.

Each task runs its shard's command in a fresh Python process (`Launch.shard_process`: `sys.executable` and the
CLI's entry point) with OMP and MKL threads set to the task's CPUs, its output appended to `D/shards/shard-<i>.log`.
So a torch crash or a kill is a failure of that process, not of the worker:
- status 0: the shard is done;
- status 2 (the command refused its input in one line): `ShardRefused`, not retried; the launch stops, cancels
  the other shards and repeats that line;
- anything else (a crash, a kill, an out-of-memory kill): `ShardCrashed`, which Ray retries up to `retries`
  times. A retry reruns the same command on the same folder, so it resumes from the records already on disk.
  The lock the dead process left in its run folder is removed first, so the retry may run on another node.
  Ray's own failures (a worker or node lost) are retried by Ray as well.
The shard process is killed with its worker (Linux `PR_SET_PDEATHSIG`), so a cancelled task stops it.

The driver shows one tqdm bar: the units with records in the shards' JSONL files, out of those the shards'
manifests list so far (`launch.Progress`; the driver reads the shard folders, so a filesystem shared by the
driver and every worker is assumed). When every shard is done it merges them into D (`launch.finish`).

Left out on purpose: Ray's object store (only a shard's status travels through Ray), placement groups and
runtime environments (every worker must have retrieval-heads installed, and see D, the data and the model
files at the same paths: put `RHEADS_CACHE` on the shared filesystem).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

from ..errors import ParamError, RHeadsError
from .launch import KILL_AFTER, Launch, Progress, check_out, finish, start, undo

INSTALL = "pip install 'retrieval-heads[ray]' or scripts/setup.sh --ray"
ATTEMPT = "== attempt "


class ShardCrashed(Exception):
    """The shard's process ended with a status other than 0 and 2: Ray retries the task."""


class ShardRefused(Exception):
    """The shard's command refused its input (status 2, a one-line error): retrying would not help."""


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _attempts(log: Path) -> int:
    try:
        return sum(line.startswith(ATTEMPT) and "ended" not in line for line in log.read_text().splitlines())
    except OSError:
        return 0


def _drop_locks(folder: Path, pid: int) -> None:
    """Remove the run locks that the ended process `pid` of this host left under `folder`."""
    from ..io.rundir import LOCK

    for lock in folder.rglob(LOCK) if folder.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            held = json.loads(lock.read_text())
            if held.get("pid") == pid and held.get("host") == socket.gethostname():
                lock.unlink()


def _error_line(log: Path, offset: int) -> str:
    try:
        with log.open("rb") as f:
            f.seek(offset)
            lines = [l.strip() for l in f.read().decode("utf-8", "replace").replace("\r", "\n").splitlines()]
    except OSError:
        return "(no log)"
    errors = [l for l in lines if l.startswith("rheads: error: ")]
    rest = [l for l in lines if l and not l.startswith(ATTEMPT)]
    return errors[-1][len("rheads: error: "):] if errors else (rest[-1] if rest else "no output")


def run_shard(argv: list[str], cwd: str, log: str, folder: str, threads: int, kill_after: int | None) -> dict:
    """One attempt at a shard (the body of the Ray task): {"attempt": k, "host": ...}, or an exception."""
    log_path, attempt = Path(log), _attempts(Path(log)) + 1
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONUNBUFFERED": "1"}
    env.pop(KILL_AFTER, None)
    if kill_after and attempt == 1:
        env[KILL_AFTER] = str(kill_after)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as f:
        f.write(f"{ATTEMPT}{attempt} on {socket.gethostname()}, {threads} threads, {time.strftime('%F %T')}\n")
        f.flush()
        offset = f.tell()
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                             preexec_fn=_die_with_parent)
        status = p.wait()
        what = f"killed by signal {-status}" if status < 0 else f"status {status}"
        f.write(f"\n{ATTEMPT}{attempt} ended: {what}, {time.strftime('%F %T')}\n")
    if status == 0:
        return {"attempt": attempt, "host": socket.gethostname()}
    _drop_locks(Path(folder), p.pid)
    if status == 2:
        raise ShardRefused(_error_line(log_path, offset))
    raise ShardCrashed(f"attempt {attempt} {what}")


def _failure(launch: Launch, i: int, e: BaseException, retries: int) -> RHeadsError:
    cause = getattr(e, "cause", None) or e
    shard, log = f"shard {i}/{launch.shards}", launch.log(i)
    if isinstance(cause, ShardRefused) or isinstance(e, ShardRefused):
        return RHeadsError(f"{shard} refused its command: {cause}")
    if isinstance(cause, ShardCrashed) or isinstance(e, ShardCrashed):
        return RHeadsError(f"{shard} failed {retries + 1} times (last: {cause}); its output is in {log}: rerun the "
                           "same launch to resume it")
    first = (str(cause).strip().splitlines() or [""])[0]
    return RHeadsError(f"{shard} failed in Ray ({type(cause).__name__}: {first}); its output is in {log}: rerun "
                       "the same launch to resume it")


def launch_ray(launch: Launch, *, run: Callable[[list[str]], int], address: str | None = None, cpus: int = 1,
               gpus: float = 0, retries: int = 2, poll: float = 2.0, progress: bool = True,
               kill_for_tests: tuple[int, int] | None = None) -> dict:
    """Run the launch's shards as Ray tasks, then merge them into its --out; returns {"attempts": {i: k},
    "seconds": ...}. `kill_for_tests=(i, k)`: shard i's first attempt is killed after its k-th record."""
    for name, value, least in (("cpus_per_shard", cpus, 1), ("gpus_per_shard", gpus, 0), ("retries", retries, 0)):
        if value < least:
            raise ParamError(name, value, f"must be at least {least}")
    try:
        import ray
    except ImportError:
        raise RHeadsError(f"Ray is not installed: {INSTALL}") from None
    from tqdm.auto import tqdm

    check_out(launch)  # before Ray starts
    t0 = time.perf_counter()
    own = not ray.is_initialized()
    if own:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise RHeadsError(f"cannot start or reach Ray{f' at {address}' if address else ''} ({e}): check "
                              "--address (`ray status` on the head node shows it)") from None
    have = ray.cluster_resources()
    if have.get("CPU", 0) < cpus or have.get("GPU", 0) < gpus:
        print(f"warning: the Ray cluster has {have.get('CPU', 0):g} CPUs and {have.get('GPU', 0):g} GPUs; a shard "
              f"asks for {cpus} and {gpus:g}: the shards wait until nodes that fit join")
    task = ray.remote(run_shard).options(num_cpus=cpus, num_gpus=gpus, max_retries=retries,
                                          retry_exceptions=[ShardCrashed])
    refs, pending, attempts = {}, [], {}
    try:
        created = start(launch)  # checks --out first: a refusal writes nothing
    except BaseException:
        if own:
            ray.shutdown()
        raise
    bar = tqdm(total=0, desc=f"{launch.name}, {launch.shards} shards", unit="unit", disable=not progress)
    try:
        for i in range(launch.shards):
            kill = kill_for_tests[1] if kill_for_tests and kill_for_tests[0] == i else None
            ref = task.remote(launch.shard_process(i), os.getcwd(), str(launch.log(i)), str(launch.shard_dir(i)),
                              cpus, kill)
            refs[ref] = i
        pending, count = list(refs), Progress(launch)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=poll)
            done, total = count()
            bar.total, bar.n = total, done
            bar.refresh()
            for ref in ready:
                try:
                    attempts[refs[ref]] = ray.get(ref)["attempt"]
                except Exception as e:  # the task's error, or Ray's
                    raise _failure(launch, refs[ref], e, retries) from None
    except BaseException:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        undo(launch, created)
        raise
    finally:
        bar.close()
        if own:
            ray.shutdown()
    finish(launch, run)
    return {"attempts": dict(sorted(attempts.items())), "seconds": time.perf_counter() - t0}
