"""Needles: invented facts to hide in a haystack, with the question that asks for them.

A `Needle` follows the JSONL format of Wu et al. 2024: `{"needle", "question", "real_needle"}`, where
`real_needle` is the answer, a span of `needle`. The paper locates the answer by token overlap, so its own
file has an answer that differs from its needle in case and punctuation ("Because he is a mean person ..."
inside "... because he is a mean person ..."); `locate_answer` therefore matches case-, whitespace- and
punctuation-insensitively when there is no exact match, takes the span from the needle's own text, and
loading says so in one warning line. `real_needle` stays as written: it is what ROUGE scores against. `get_needles(spec)` takes a registered set name
(built in: `detect`, for scoring heads, and `eval`, disjoint from it, for NIAH evaluation) or a path to a
.jsonl file. `register_needle_set(name, loader)` adds names.

Left out on purpose: placing needles in text and tokenizing them (`build.py`), scoring answers, and any
check that a needle is really unguessable (that is on whoever writes the set).
"""

from __future__ import annotations

import unicodedata
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

from ..errors import RHeadsError
from ..io.jsonl import json_objects

REQUIRED_KEYS = ("needle", "question", "real_needle")


@dataclass(frozen=True)
class Needle:
    needle: str  # the sentence inserted into the haystack
    question: str  # asks for the fact; its answer is `real_needle`
    real_needle: str  # the answer span, a substring of `needle`


def _normalized(text: str) -> tuple[str, list[int]]:
    """`text` lowercased without whitespace and punctuation, and each kept character's index in `text`."""
    chars, where = [], []
    for i, c in enumerate(text):
        if c.isspace() or unicodedata.category(c)[0] in "PS":
            continue
        chars.append(c.lower())
        where.append(i)
    return "".join(chars), where


def locate_answer(needle: str, answer: str) -> tuple[int, int, bool] | None:
    """[start, end) of the answer in the needle's characters and whether it matched exactly; None if absent."""
    at = needle.find(answer)
    if at >= 0:
        return at, at + len(answer), True
    n, where = _normalized(needle)
    a, _ = _normalized(answer)
    at = n.find(a) if a else -1
    if at < 0:
        return None
    return where[at], where[at + len(a) - 1] + 1, False


_LOADERS: dict[str, Callable[[], list[Needle]]] = {}


def register_needle_set(name: str, loader: Callable[[], list[Needle]]) -> None:
    """Make `get_needles(name)` return `loader()`. Re-registering a name replaces it."""
    _LOADERS[name] = loader


def needle_set_names() -> list[str]:
    """The registered needle-set names, sorted."""
    return sorted(_LOADERS)


def get_needles(spec: str) -> list[Needle]:
    """The needles of a registered set, or of a .jsonl file at path `spec`."""
    if spec in _LOADERS:
        return list(_LOADERS[spec]())
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".jsonl":
            raise RHeadsError(f"needle file {spec!r} is not a .jsonl file: give one JSON object per line with keys needle, question, real_needle")
        return load_needles_jsonl(path)
    if "/" in spec or "\\" in spec or spec.lower().endswith(".jsonl"):
        raise RHeadsError(f"needle file {spec!r} does not exist: check the path, or use one of: {', '.join(needle_set_names())}")
    raise RHeadsError(f"unknown needle set {spec!r}: use one of {', '.join(needle_set_names())}, or a path to a .jsonl file")


def load_needles_jsonl(path: str | Path) -> list[Needle]:
    """Parse and validate a needle file: one JSON object per line (blank lines skipped)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise RHeadsError(f"needle file {str(path)!r} is not UTF-8 text: convert it to UTF-8") from None
    return parse_needles_jsonl(lines, source=str(path))


def parse_needles_jsonl(lines: list[str], source: str) -> list[Needle]:
    """Validate JSONL lines into needles; errors name `source` and the 1-based line number."""
    needles: list[Needle] = []
    for _, where, obj in json_objects(lines, source, '{"needle": ..., "question": ..., "real_needle": ...}'):
        missing = [k for k in REQUIRED_KEYS if k not in obj]
        if missing:
            raise RHeadsError(f"{where} lacks key(s) {', '.join(missing)}: each line needs needle, question and real_needle")
        for k in REQUIRED_KEYS:
            if not isinstance(obj[k], str) or not obj[k].strip():
                raise RHeadsError(f"{where}: {k!r} must be a non-empty string")
        needle, question, real = obj["needle"].strip(), obj["question"].strip(), obj["real_needle"].strip()
        found = locate_answer(needle, real)
        if found is None:
            raise RHeadsError(f"{where}: real_needle {real!r} does not occur in the needle, even ignoring case, spaces "
                              "and punctuation: copy the answer span from the needle")
        if not found[2]:
            warnings.warn(f"{where}: real_needle {real!r} matches the needle only ignoring case, spaces and punctuation; "
                          f"its span is taken from the needle's own text {needle[found[0]:found[1]]!r}", stacklevel=2)
        needles.append(Needle(needle=needle, question=question, real_needle=real))
    if not needles:
        raise RHeadsError(f"needle file {source!r} has no needles: write one JSON object per line")
    return needles


def _builtin(filename: str) -> Callable[[], list[Needle]]:
    def load() -> list[Needle]:
        text = resources.files("retrieval_heads.probes").joinpath("data", filename).read_text(encoding="utf-8")
        return parse_needles_jsonl(text.splitlines(), source=f"built-in {filename}")

    return load


register_needle_set("detect", _builtin("needles_detect.jsonl"))
register_needle_set("eval", _builtin("needles_eval.jsonl"))
