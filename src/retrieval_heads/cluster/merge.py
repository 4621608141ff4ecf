"""`rheads merge`: combine the run folders of n finished shards into the folder an unsharded run writes.

A finished shard folder holds `shard-done.json` (written by the CLI when the shard's command returned: the
subcommand's arguments without `--shard`, `--out` and `--overwrite`, and the shard), its `config.json` and,
in every run directory that it sharded, `shard.json` (`shard.select`'s manifest). `merge(dirs, out)`:
1. checks, before writing anything, that every folder is a finished shard of the same command and config
   (configs equal once their `shard` fields are dropped), that the shards are 0/n .. n-1/n, each once (the
   error names the missing one), and that in each run directory the shards' units cover the run's units
   exactly once and every unit has its record;
2. writes, in each such directory of `out`, the JSONL file the unsharded run writes: its header (the shard
   dropped from the config) and the records in the unsharded order (a unit with several records, such as an
   item answered by several methods, keeps them in its shard's order), and copies the files the shards wrote
   per unit, named after it (`arrays/<id>.npz`);
3. runs the command once more on `out`, unsharded (`run`, the CLI's entry point). It finds every record there,
   decodes nothing, and writes `config.json`, `scores.json`, `summary.json` and the figures with the code of
   an unsharded run, so they equal that run's files except for timings. It loads the model to do so (the
   summaries hold the model's KV sizes and name); a merge that would decode anything is refused.

Left out on purpose: merging unfinished shards (finish them first: rerunning a shard's command resumes it),
and copying files the command rewrites anyway.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

from ..errors import RHeadsError
from ..io.jsonl import JsonlWriter, atomic_write_json, read_jsonl
from .shard import DONE, MANIFEST, Shard, parse_shard


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RHeadsError(f"cannot read {path} ({e}): is this a shard folder written by `rheads ... --shard i/n`?") \
            from None


def drop_shard(obj: Any) -> Any:
    """A copy of a config (or header) with every `shard` field set to None, as an unsharded run has it."""
    if isinstance(obj, dict):
        return {k: (None if k == "shard" else drop_shard(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [drop_shard(v) for v in obj]
    return obj


def _check_shards(dirs: list[Path]) -> tuple[list[str], list[Path]]:
    """(the command, the folders ordered by shard index), or a one-line error."""
    if not dirs:
        raise RHeadsError("merge needs the shard folders: rheads merge D/s0 D/s1 ... --out D/merged")
    done, shards = {}, {}
    for d in dirs:
        if not (d / DONE).is_file():
            what = "does not exist" if not d.exists() else f"holds no {DONE}: it is not a finished shard"
            raise RHeadsError(f"{d} {what} (a shard's folder gets it when its command finishes; rerun the shard's "
                              "command to resume it)")
        done[d] = _read(d / DONE)
        if not isinstance(done[d], dict) or not isinstance(done[d].get("command"), list) or not done[d].get("shard"):
            raise RHeadsError(f"{d / DONE} lacks its command or shard: rerun that shard's command to rewrite it")
        shards[d] = parse_shard(done[d].get("shard"))
    first = dirs[0]
    for d in dirs[1:]:
        if done[d]["command"] != done[first]["command"] or shards[d].count != shards[first].count:
            raise RHeadsError(f"{first} and {d} are shards of different runs ({' '.join(done[first]['command'])} "
                              f"as {shards[first]}, {' '.join(done[d]['command'])} as {shards[d]}): merge the "
                              "shards of one run")
    n = shards[first].count
    by_index: dict[int, Path] = {}
    for d in dirs:
        i = shards[d].index
        if i in by_index:
            raise RHeadsError(f"{by_index[i]} and {d} are both shard {shards[d]}: give each shard once")
        by_index[i] = d
    missing = [str(Shard(i, n)) for i in range(n) if i not in by_index]
    if missing:
        raise RHeadsError(f"missing shard {', '.join(missing)} of {' '.join(done[first]['command'])}: run it "
                          f"(the same command with --shard {missing[0]}) and give its folder too")
    ordered = [by_index[i] for i in range(n)]
    configs = {d: drop_shard(_read(d / "config.json")).get("config") for d in ordered}
    for d in ordered[1:]:
        if configs[d] != configs[ordered[0]]:
            raise RHeadsError(f"{ordered[0]} and {d} hold different configs beyond the shard: merge the shards "
                              "of one run")
    return done[first]["command"], ordered


def _merge_dir(rel: Path, shards: list[Path]) -> tuple[dict, list[dict], str, list[tuple[Path, Path]]]:
    """(the header, the records in the unsharded order, the JSONL name, (shard file, path under rel) of the
    per-unit files) of one sharded run directory."""
    manifests = []
    for d in shards:
        if not (d / rel / MANIFEST).is_file():
            raise RHeadsError(f"{d / rel} lacks {MANIFEST} while {shards[0] / rel} has one: the shards ran "
                              "different parts; rerun the shard to finish it")
        manifests.append(_read(d / rel / MANIFEST))
    m0 = manifests[0]
    ids, seen = m0["ids"], {}
    for d, m in zip(shards, manifests):
        if m["ids"] != ids or m["jsonl"] != m0["jsonl"] or m["kind"] != m0["kind"]:
            raise RHeadsError(f"{d / rel} and {shards[0] / rel} shard different units: merge the shards of one run")
        for u in m["mine"]:
            if u in seen:
                raise RHeadsError(f"unit {u} of {rel} is in shards {seen[u]} and {m['shard']}: the shards overlap")
            seen[u] = m["shard"]
    lacking = [u for u in ids if u not in seen]
    if lacking:
        raise RHeadsError(f"{len(lacking)} units of {rel} are in no shard (first: {lacking[0]}): merge the shards "
                          "of one run")
    header, records, files = None, {}, []
    for d, m in zip(shards, manifests):
        rows, mine = read_jsonl(d / rel / m0["jsonl"]), set(m["mine"])
        header = header or next((r for r in rows if r.get("type") == "header"), None)
        have: dict[str, list[dict]] = {}
        for r in rows:
            if r.get("type") == m0["kind"] and r.get("id") in mine:
                have.setdefault(r["id"], []).append(r)
        gone = [u for u in m["mine"] if u not in have]
        if gone:
            raise RHeadsError(f"{d / rel} lacks the records of {len(gone)} of its units (first: {gone[0]}): "
                              "rerun that shard's command to finish it")
        records.update(have)
        files += [(p, p.relative_to(d / rel)) for p in sorted((d / rel).rglob("*")) if p.is_file() and p.stem in mine]
    if header is None:
        raise RHeadsError(f"{shards[0] / rel / m0['jsonl']} has no header line: is it a run of this version?")
    return drop_shard(header), [r for u in ids for r in records[u]], m0["jsonl"], files


def merge(dirs: list[str | Path], out: str | Path, *, run: Callable[[list[str]], int],
          overwrite: bool = False) -> Path:
    """Merge finished shard folders into `out` (see the module docstring); returns `out`."""
    dirs, out = [Path(d) for d in dirs], Path(out)
    command, shards = _check_shards(dirs)
    for d in shards:  # --overwrite must never delete a shard: out may not be, hold, or sit inside one
        a, b = out.resolve(), d.resolve()
        if a == b or b.is_relative_to(a) or a.is_relative_to(b):
            raise RHeadsError(f"--out {out} {'is' if a == b else 'holds' if b.is_relative_to(a) else 'is inside'} "
                              f"the shard {d}: write the merge to a folder apart from the shards")
    if out.exists() and not out.is_dir():
        raise RHeadsError(f"--out {out} is a file: give a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise RHeadsError(f"--out {out} is not empty: choose another folder, or add --overwrite to replace it")
    rels = sorted(p.parent.relative_to(shards[0]) for p in shards[0].rglob(MANIFEST))
    if not rels:
        raise RHeadsError(f"{shards[0]} holds no {MANIFEST}: its command was not sharded")
    merged = [(rel, *_merge_dir(rel, shards)) for rel in rels]  # every check before anything is written

    if out.exists():
        shutil.rmtree(out)
    n_records = 0
    try:
        for rel, header, records, jsonl, files in merged:
            (out / rel).mkdir(parents=True, exist_ok=True)
            with JsonlWriter(out / rel / jsonl) as w:
                for r in [header, *records]:
                    w.write(r)
            n_records += len(records)
            for src, dest in files:
                (out / rel / dest).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, out / rel / dest)
        for cfg in shards[0].rglob("config.json"):  # so the final pass checks its model, data and config against them
            rel = cfg.parent.relative_to(shards[0])
            if (out / rel).is_dir():
                atomic_write_json(out / rel / "config.json", drop_shard(_read(cfg)))
        status = run([*command, "--out", str(out)])
        if status != 0:
            raise RHeadsError(f"the final unsharded pass of `rheads {' '.join(command)}` on {out} failed "
                              f"(status {status}); its error is above")
        after = sum(len([r for r in read_jsonl(out / rel / jsonl) if r.get("type") != "header"])
                    for rel, _, _, jsonl, _ in merged)
        if after != n_records:
            raise RHeadsError(f"the final pass on {out} decoded {after - n_records} records the shards lacked: "
                              "the shards do not cover the run")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # nothing half-merged is left behind
        raise
    return out
