"""What the cluster launchers (`onray.py`, `slurm.py`) share: the plan of a launch, its folders, the shards'
command lines, their progress, and the merge at the end.

A launch takes a `rheads` command that `--shard` can split (the words after `--` of `rheads launch ...`, without
`rheads`: `detect --model M --out D`) and a shard count n. `plan` checks it before anything is written: a
subcommand whose parser has `--shard`, flags its parser accepts, an explicit `--out D`, no `--shard` (the launcher
gives each shard its own) and no `--overwrite` (a retried shard must resume its records, not delete them).
The folders, all under D (the model files and D are assumed to be on a filesystem every worker sees):
- `D/shards/shard-<i>`: shard i's run folder (`--shard i/n --out D/shards/shard-<i>`, i from 0);
- `D/shards/shard-<i>.log`: its output, every attempt appended after an `== attempt k` line;
- `D/shards/launch.json`: the command and n, so that a second launch on D (any launcher) resumes only the same
  run;
- D itself: the merged run, the files an unsharded run of the command writes (`finish`: `merge.merge` into
  `D/shards/merged`, whose entries then move up into D).
Rerunning a launch resumes: each shard's command resumes its folder, and the merge is redone.

A shard runs in a Python process of its own, `python -m retrieval_heads.cli.shard_main <its rheads arguments>`:
the `rheads` CLI (`cli.main.main`) after `kill_hook_for_tests`. `Progress` counts, for a progress bar on the
driver, the units whose records are in the shards' JSONL files, out of those the shards' manifests (`shard.json`)
list so far. `kill_hook_for_tests` is a hook for the tests only: with `RHEADS_LAUNCH_KILL_AFTER=k` in a shard
process's environment it kills that process (SIGKILL) right after its k-th record is on disk, leaving a copy of
the JSONL file as it was then (`<file>.at-kill`).

Left out on purpose: launching itself (`onray.py`, `slurm.py`), and staging files to workers that do not share
a filesystem with the driver.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ParamError, RHeadsError
from ..version import FORMAT_VERSION
from .merge import merge
from .shard import MANIFEST

LAUNCH = "launch.json"
KILL_AFTER = "RHEADS_LAUNCH_KILL_AFTER"  # tests only: see kill_hook_for_tests
SHARD_ENTRY = "retrieval_heads.cli.shard_main"  # `python -m` it: the rheads CLI in a shard's own process
EXAMPLE = "rheads launch ray --shards 3 -- detect --model smollm2-135m --out runs/detect"


@dataclass(frozen=True)
class Launch:
    """A checked launch: `base` is the command without its --out, `out` the absolute D."""

    command: tuple[str, ...]
    base: tuple[str, ...]
    out: Path
    shards: int

    @property
    def shards_dir(self) -> Path:
        return self.out / "shards"

    def shard_dir(self, i: int | str) -> Path:
        return self.shards_dir / f"shard-{i}"

    def log(self, i: int | str) -> Path:
        return self.shards_dir / f"shard-{i}.log"

    def shard_argv(self, i: int | str) -> list[str]:
        """Shard i's arguments to `rheads` (i may be a shell variable, as in a Slurm script)."""
        return [*self.base, "--shard", f"{i}/{self.shards}", "--out", str(self.shard_dir(i))]

    def shard_process(self, i: int | str, python: str | None = None) -> list[str]:
        """The command line of shard i's own Python process (`sys.executable -m retrieval_heads.cluster.launch`)."""
        return [python or sys.executable, "-m", SHARD_ENTRY, *self.shard_argv(i)]

    @property
    def name(self) -> str:
        return " ".join(w for w in self.base[:2] if not w.startswith("-"))


def _subparsers(p: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)


def _options(p: argparse.ArgumentParser) -> set[str]:
    return {s for a in p._actions for s in a.option_strings}


def shardable(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[str]:
    """The subcommands (`detect`, `suite run`) whose parser has --shard."""
    sub = _subparsers(parser)
    found = [" ".join(prefix)] if prefix and "--shard" in _options(parser) else []
    for name, p in (sub.choices.items() if sub else []):
        found += shardable(p, (*prefix, name))
    return found


def _leaf(parser: argparse.ArgumentParser, command: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser of the (sub)subcommand that `command` names, and its words."""
    p, words = parser, []
    while (sub := _subparsers(p)) is not None:
        word = command[len(words)] if len(words) < len(command) else None
        if word not in sub.choices:
            if words and not sub.required:
                break  # `answer --input ...`: the group runs itself
            choices = ", ".join(sub.choices)
            raise RHeadsError(f"the command after -- names no rheads subcommand ({word or 'nothing'}; give one of "
                              f"{choices}, without the word rheads): {EXAMPLE}")
        words.append(word)
        p = sub.choices[word]
    return p, words


def plan(command: list[str], shards: int, parser: argparse.ArgumentParser) -> Launch:
    """Check a launch (see the module docstring) against the CLI's parser; writes nothing."""
    if not command:
        raise RHeadsError(f"give the command to shard after --, without the word rheads: {EXAMPLE}")
    if command[0] == "rheads" or Path(command[0]).name == "rheads":
        command = command[1:]
    if not isinstance(shards, int) or shards < 1:
        raise ParamError("shards", shards, "must be at least 1 (the number of shards the run is split into)")
    leaf, words = _leaf(parser, command)
    if "--shard" not in _options(leaf):
        raise RHeadsError(f"`rheads {' '.join(words)}` cannot be sharded: launch one of "
                          f"{', '.join(shardable(parser))}")
    leaf.set_defaults(out=None, shard=None, overwrite=False)  # a fresh parser: tells a given --out from the default
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            a = parser.parse_args(command)
    except SystemExit:
        line = (err.getvalue().strip().splitlines() or ["it does not parse"])[-1]
        line = re.sub(r"^[\w .-]*: error: ", "", line)  # argparse's "rheads detect: error: "
        raise RHeadsError(f"the command after -- is not a valid rheads command: {line}") from None
    if a.shard is not None:
        raise RHeadsError(f"drop --shard {a.shard} from the command after --: the launcher gives each shard its own "
                          "(--shard i/n, i from 0)")
    if a.overwrite:
        raise RHeadsError("drop --overwrite from the command after --: a retried shard must resume its records; to "
                          "start over, delete the --out folder first")
    if a.out is None:
        raise RHeadsError(f"the command after -- needs --out D: the shards go to D/shards/shard-<i>, the merged run "
                          f"to D ({EXAMPLE})")
    base, skip = [], False
    for w in command:
        if skip:
            skip = False
        elif w == "--out":
            skip = True
        elif not w.startswith("--out="):
            base.append(w)
    return Launch(tuple(command), tuple(base), Path(a.out).expanduser().absolute(), shards)


def check_out(launch: Launch) -> None:
    """Refuse an --out that holds something other than a launch of the same command and shard count."""
    out, record = launch.out, launch.shards_dir / LAUNCH
    if out.exists() and not out.is_dir():
        raise RHeadsError(f"--out {out} is a file: give a folder")
    if record.is_file():
        try:
            old = json.loads(record.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        if old.get("command") != list(launch.base) or old.get("shards") != launch.shards:
            was = f"rheads {' '.join(old.get('command') or ['?'])} in {old.get('shards', '?')} shards"
            raise RHeadsError(f"--out {out} holds a launch of another run ({was}): use another --out, or delete "
                              f"{out} to start over")
    elif out.exists() and any(out.iterdir()):
        raise RHeadsError(f"--out {out} holds files that are not a launch's (no {record}): use another --out, or "
                          "empty it")


def start(launch: Launch) -> bool:
    """Check --out, then write `launch.json`; True when this call created D (so `undo` may remove it)."""
    check_out(launch)
    created = not launch.out.exists()
    launch.shards_dir.mkdir(parents=True, exist_ok=True)
    from ..io.jsonl import atomic_write_json

    atomic_write_json(launch.shards_dir / LAUNCH, {"version": FORMAT_VERSION, "command": list(launch.base),
                                                    "shards": launch.shards})
    return created


def undo(launch: Launch, created: bool) -> None:
    """After a launch failed before any shard wrote its folder: remove what the launcher wrote (logs, launch.json)."""
    if any(launch.shard_dir(i).exists() for i in range(launch.shards)):
        return
    for i in range(launch.shards):
        launch.log(i).unlink(missing_ok=True)
    (launch.shards_dir / LAUNCH).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        launch.shards_dir.rmdir()
        if created:
            launch.out.rmdir()


def finish(launch: Launch, run: Callable[[list[str]], int]) -> Path:
    """Merge the finished shards into D (`merge.merge` into D/shards/merged, then its entries move up)."""
    tmp, said = launch.shards_dir / "merged", io.StringIO()
    try:
        with contextlib.redirect_stdout(said):
            merge([launch.shard_dir(i) for i in range(launch.shards)], tmp, run=run, overwrite=True)
    finally:  # the final pass's summary, naming D rather than the folder it wrote first
        sys.stdout.write(said.getvalue().replace(str(tmp), str(launch.out)))
    for entry in sorted(tmp.iterdir()):
        target = launch.out / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(entry, target)
    tmp.rmdir()
    return launch.out


class Progress:
    """Units with records over units listed so far, read from the shard folders (re-read only files that grew)."""

    def __init__(self, launch: Launch):
        self.launch = launch
        self._seen: dict[Path, tuple[int, set[str]]] = {}

    def _ids(self, path: Path, kind: str) -> set[str]:
        try:
            size = path.stat().st_size
        except OSError:
            return set()
        if path in self._seen and self._seen[path][0] == size:
            return self._seen[path][1]
        ids = set()
        with contextlib.suppress(OSError), path.open("rb") as f:
            for line in f.read(size).split(b"\n")[:-1]:  # complete lines only: a record being written is not counted
                with contextlib.suppress(ValueError):
                    r = json.loads(line)
                    if isinstance(r, dict) and r.get("type") == kind:
                        ids.add(r.get("id"))
        self._seen[path] = (size, ids)
        return ids

    def __call__(self) -> tuple[int, int]:
        done = total = 0
        for i in range(self.launch.shards):
            d = self.launch.shard_dir(i)
            for manifest in sorted(d.rglob(MANIFEST)) if d.is_dir() else []:
                try:
                    m = json.loads(manifest.read_text())
                except (OSError, json.JSONDecodeError):
                    continue  # being written
                mine = set(m.get("mine") or [])
                total += len(mine)
                done += len(mine & self._ids(manifest.parent / m.get("jsonl", ""), m.get("kind")))
        return done, total


def kill_hook_for_tests() -> None:
    """For the tests only (see the module docstring): with RHEADS_LAUNCH_KILL_AFTER=k, SIGKILL this process
    after its k-th record."""
    k = os.environ.get(KILL_AFTER)
    if not k:
        return
    import signal

    from ..io import jsonl

    write, count = jsonl.JsonlWriter.write, [0]

    def killing_write(self, record, *args, **kwargs):
        result = write(self, record, *args, **kwargs)
        if isinstance(record, dict) and record.get("type") != "header":
            count[0] += 1
            if count[0] >= int(k):
                path = Path(self.path)
                shutil.copyfile(path, path.with_name(path.name + ".at-kill"))
                os.kill(os.getpid(), signal.SIGKILL)
        return result

    jsonl.JsonlWriter.write = killing_write

