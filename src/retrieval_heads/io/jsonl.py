"""JSONL and JSON files that survive a killed process.

- `JsonlWriter` appends one record per line, flushed and fsynced after each. Before its first append it
  mends the file's tail: a last record that is complete but lacks its newline (killed between the two
  writes) gets the newline; a torn one (killed mid-record) is cut off with a notice. So an append never
  glues onto a half record. Notices are one plain line on stderr (`notice`), not Python warnings.
- `read_jsonl` reads every record. A bad line in the middle (hand edits, an old glued pair) is reported
  with a notice naming its line number and skipped; records after it are kept. Two objects glued on one
  line are both recovered. Reading never modifies the file.
- `json_objects` parses user input strictly (needle files, monitor items): one JSON object per non-blank line,
  or a one-line error that names the file and the line.
- `atomic_write_json` writes through a temporary file with a unique name, then renames, so two processes
  writing the same file never share a temporary.

Left out on purpose: locking (two writers appending to one JSONL file is the caller's mistake; the
experiments split work so that each process owns its files) and compression.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..errors import RHeadsError


def to_json(o: Any) -> Any:
    """`json.dumps(default=...)`: numpy scalars and paths."""
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o)}")


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=1, default=to_json))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _decode_line(line: str) -> tuple[list[Any], bool]:
    """The JSON values on one line (several when records were glued together) and whether all of it parsed."""
    dec, out, i, text = json.JSONDecoder(), [], 0, line.strip()
    while i < len(text):
        try:
            obj, end = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            return out, False
        out.append(obj)
        i = end
        while i < len(text) and text[i].isspace():
            i += 1
    return out, True


def notice(message: str) -> None:
    """One plain line on stderr ("warning: ..."), drawn above any progress bar: a repair the user should know of."""
    from tqdm.auto import tqdm

    tqdm.write(f"warning: {message}", file=sys.stderr)


def read_jsonl(path: str | Path) -> list[dict]:
    """Every record of a JSONL file (see the module docstring); [] when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.decode("utf-8", errors="replace").split("\n")
    records: list[dict] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        objs, ok = _decode_line(line)
        records += [o for o in objs if isinstance(o, dict)]
        if not ok:
            torn_tail = n == len(lines)  # the last line has no newline: a write in flight or killed
            if not torn_tail:
                notice(f"{path}, line {n}: not valid JSON, skipped (the records after it are kept)")
    return records


def mend_tail(path: Path) -> None:
    """Make the file end in a newline: complete a whole last record, cut a torn one (with a notice)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    start = data.rfind(b"\n") + 1
    objs, ok = _decode_line(data[start:].decode("utf-8", errors="replace"))
    with open(path, "r+b") as f:
        if ok and objs:
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
        else:
            notice(f"{path}: cut a torn last record ({len(data) - start} bytes) left by a killed write")
            f.truncate(start)


class JsonlWriter:
    """Append-only JSONL, flushed and fsynced after every record."""

    def __init__(self, path: str | Path, on_close: Callable[[], None] | None = None):
        self.path = Path(path)
        mend_tail(self.path)
        self._f = open(self.path, "a", encoding="utf-8")
        self._on_close = on_close

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record, default=to_json) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()
        if self._on_close is not None:
            self._on_close, hook = None, self._on_close
            hook()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def of_type(records: Iterable[dict], kind: str) -> list[dict]:
    return [r for r in records if r.get("type") == kind]


def json_objects(lines: list[str], source: str, example: str) -> Iterator[tuple[int, str, dict]]:
    """(line number, "SOURCE line N", object) for each non-blank line of user input; a line that is not a JSON
    object is a one-line RHeadsError naming it (`example` shows the object expected)."""
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source} line {n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise RHeadsError(f"{where} is not valid JSON ({e.msg}): write one JSON object per line") from None
        if not isinstance(obj, dict):
            raise RHeadsError(f"{where} is not a JSON object: write {example}")
        yield n, where, obj
