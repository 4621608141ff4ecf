"""The input of `rheads answer`: a JSONL file, one item per line, checked before anything is written.

Each non-blank line is a JSON object with `context` and `question` (non-empty strings), an optional `id` (default
`line-<n>`; unique) and optional `answers` (a list of non-empty gold strings, or one string). A bad line is a
one-line `RHeadsError` naming the file and line number.

Left out on purpose: any other input format, and checking the prompts against the model's context (the run does
that once the model is loaded, before writing).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RHeadsError
from ..io.jsonl import json_objects

EXAMPLE = '{"id": ..., "context": ..., "question": ..., "answers": [...]}'


def read_items(path: str | Path) -> list[dict]:
    """Validated items: {"id", "line", "context", "question", "answers" (list, or None without gold)}."""
    path = Path(path)
    if path.is_dir():
        raise RHeadsError(f"input file {path} is a folder: give a JSONL file with context, question per line")
    if not path.is_file():
        raise RHeadsError(f"input file {path} does not exist: give a JSONL file with context, question per line")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise RHeadsError(f"{path} is not UTF-8 text: convert it to UTF-8") from None
    items, seen = [], set()
    for n, where, obj in json_objects(lines, str(path), EXAMPLE):
        for key in ("context", "question"):
            if key not in obj:
                raise RHeadsError(f"{where} has no {key!r}: each line needs a context and a question")
            if not isinstance(obj[key], str) or not obj[key].strip():
                raise RHeadsError(f"{where}: {key!r} must be a non-empty string")
        gold = obj.get("answers")
        if isinstance(gold, str):
            gold = [gold]
        if gold is not None and (not isinstance(gold, list) or not gold
                                 or not all(isinstance(g, str) and g.strip() for g in gold)):
            raise RHeadsError(f"{where}: 'answers' must be a list of non-empty strings (or left out)")
        ident = obj.get("id", f"line-{n}")
        if not isinstance(ident, (str, int)) or isinstance(ident, bool) or not str(ident).strip():
            raise RHeadsError(f"{where}: 'id' must be a non-empty string or a number")
        ident = str(ident)
        if ident in seen:
            raise RHeadsError(f"{where}: id {ident!r} is used twice: give each line its own id")
        seen.add(ident)
        items.append({"id": ident, "line": n, "context": obj["context"], "question": obj["question"],
                      "answers": gold})
    if not items:
        raise RHeadsError(f"{path} holds no items: write one JSON object per line, {EXAMPLE}")
    return items
