"""Run directories: create one, or resume one only when it was made by the same run.

A run directory holds `config.json` (the run's metadata: format version, toolkit, the typed config and
whatever keys the caller adds) and usually one JSONL file of records (a header line, then one record per
sample or item). `claim_run_dir` refuses, in one line (`ParamError` of `out`, advising `overwrite`), a
directory whose metadata differs in any of the caller's `keys`:
- `config`: the resolved typed config. A key the stored config lacks is accepted when the new config holds
  that key's default value (`defaults`): options added in later versions default to the old behaviour;
- `model_key`: which model made it (name or path, dtype, family and shape), so a second model never reuses
  the first one's samples and a CPU float32 run is not resumed in bfloat16. Directories written before
  this key existed are checked on their stored model shape and dtype instead;
- anything else (`data_sha`, `items_sha`, `masked_heads`): must be equal when both sides have it.
A directory written by a newer format version is refused. `overwrite=True` deletes the directory first.

While `open_run`'s writer is open the directory holds `.lock` (host, pid and the pid's start time): a second
process opening it meanwhile gets `RunBusy`, a one-line error (sweeps skip that part instead, so processes
sharing a sweep directory with overlapping parts never append to one file together). A lock whose process
has ended on this host is taken over, so a killed run resumes.

Left out on purpose: locks across hosts beyond refusing (a lock from another host must be deleted by hand),
and locking `claim_run_dir` on its own (a sweep's top directory holds only its config and summary).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from ..errors import ParamError, RHeadsError
from ..version import FORMAT_VERSION
from .jsonl import JsonlWriter, atomic_write_json, read_jsonl

_LEGACY_MODEL_KEYS = ("family", "num_layers", "num_heads", "num_kv_heads", "dtype")
LOCK = ".lock"


class RunBusy(RHeadsError):
    """Another live process is writing this run directory. `what` says who holds it (no advice: a sweep that skips
    the part prints it as it is; a command whose parts can be split adds how)."""

    def __init__(self, what: str, advice: str):
        self.what = what
        super().__init__(f"{what}: {advice}")


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), to tell a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = _start_time(pid)
    return start is None or now is None or now == start


def _lock(out: Path) -> None:
    """Take `out/.lock` for this process, or raise RunBusy naming its live holder."""
    path = out / LOCK
    try:
        held = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        held = None
    if isinstance(held, dict) and held.get("pid") == os.getpid() and held.get("host") == socket.gethostname():
        return  # already ours (open_run takes it before and after claim_run_dir)
    if isinstance(held, dict) and held.get("pid") != os.getpid():
        pid, host = held.get("pid"), held.get("host")
        if host != socket.gethostname():
            raise RunBusy(f"{out} is locked by process {pid} on host {host}",
                          f"wait for it, or delete {path} if nothing writes there now")
        if isinstance(pid, int) and _alive(pid, held.get("start")):
            raise RunBusy(f"{out} is being written by process {pid}",
                          "wait for it to finish, or write to another directory")
    atomic_write_json(path, {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())})
    atexit.register(_unlock, path)


def _unlock(path: Path) -> None:
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, json.JSONDecodeError):
        pass


def config_diff(old: Any, new: Any, default: Any = None, path: str = "") -> list[str]:
    """Key paths where `new` differs from `old`; keys missing from `old` count only when `new` is not at
    its default there."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        default = default if isinstance(default, dict) else {}
        for k, v in new.items():
            p = f"{path}.{k}" if path else k
            if k in old:
                out += config_diff(old[k], v, default.get(k), p)
            elif k not in default or default[k] != v:
                out.append(p)
        out += [f"{path}.{k}" if path else k for k in old if k not in new]
        return out
    return [] if old == new else [path or "value"]


def _legacy_model_key(meta: dict) -> dict | None:
    model = meta.get("model")
    if not isinstance(model, dict):
        return None
    return {k: model.get(k) for k in _LEGACY_MODEL_KEYS}


def _mismatch(old: dict, new: dict, key: str, defaults: dict) -> str | None:
    """A short description of how `old` and `new` differ in `key`, or None when they agree."""
    if key == "model_key" and "model_key" not in old:
        legacy = _legacy_model_key(old)
        if legacy is None or new.get("model_key") is None:
            return None
        mine = {k: new["model_key"].get(k) for k in _LEGACY_MODEL_KEYS}
        diff = [k for k in _LEGACY_MODEL_KEYS if legacy[k] != mine[k]]
        return None if not diff else "model (" + ", ".join(f"{k} {legacy[k]} vs {mine[k]}" for k in diff) + ")"
    if key not in old:
        return None  # written before this key existed
    if key == "config":
        diff = config_diff(old.get(key), new.get(key), defaults.get(key))
        return None if not diff else f"config ({', '.join(diff[:4])}{', ...' if len(diff) > 4 else ''})"
    if key == "model_key":
        a, b = old[key] or {}, new.get(key) or {}
        diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        return None if not diff else "model (" + ", ".join(f"{k} {a.get(k)} vs {b.get(k)}" for k in diff) + ")"
    if old[key] != new.get(key):
        return key.replace("_sha", "").replace("_", " ")
    return None


def claim_run_dir(out: str | Path, meta: dict, *, keys: tuple[str, ...] = ("config",),
                  defaults: dict | None = None, overwrite: bool = False) -> Path:
    """Create or reuse a run directory (rules in the module docstring); writes `meta` as its config.json."""
    out = Path(out)
    path = out / "config.json"
    if overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise ParamError("out", str(out), "its config.json is not valid JSON: start over there ({overwrite}) "
                             "or use another {out}") from None
        version = old.get("version", FORMAT_VERSION)
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise ParamError("out", str(out), f"written by a newer retrieval-heads (format {version}, this one reads "
                             f"{FORMAT_VERSION}): upgrade, or start over there ({{overwrite}})")
        for key in keys:
            what = _mismatch(old, meta, key, defaults or {})
            if what:
                raise ParamError("out", str(out), f"holds a run with a different {what}: start over there "
                                 "({overwrite}) or use another {out}")
    atomic_write_json(path, meta)
    return out


def open_run(out: str | Path, meta: dict, *, keys: tuple[str, ...], jsonl: str, kind: str,
             defaults: dict | None = None, overwrite: bool = False) -> tuple[dict[str, dict], JsonlWriter]:
    """Create or resume a run directory: returns the records of type `kind` already in `jsonl` (by id) and a
    writer appending to it (a new file starts with a header holding the version and `keys`). The directory is
    locked until the writer closes (RunBusy while another live process holds it)."""
    out = Path(out)
    if out.exists():
        _lock(out)  # before overwrite may delete a directory another process is writing
    out = claim_run_dir(out, meta, keys=keys, defaults=defaults, overwrite=overwrite)
    _lock(out)
    records = read_jsonl(out / jsonl)
    writer = JsonlWriter(out / jsonl, on_close=lambda: _unlock(out / LOCK))
    if not records:
        writer.write({"type": "header", "version": meta.get("version", FORMAT_VERSION),
                      **{k: meta.get(k) for k in keys}})
    return {r["id"]: r for r in records if r.get("type") == kind}, writer
