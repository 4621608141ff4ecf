"""Numbers in generations: extraction of the answer number, canonical forms, and the answer-line stop.

`extract_number`: the number after the first "answer is", then after "####", then after "\\boxed{" (each
within the rest of its line); else the last number. `direct` answers look at the first non-empty line only.
Commas, "$", units, percent signs, negatives and decimals are handled; numbers compare by value ("12.0" ==
"12"). `answer_line_complete` says when a generation can stop without changing what `extract_number`
returns: its first "answer is" line is complete (a newline follows it) and holds a number.

Left out on purpose: fractions and numbers written as words.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from .text import STOP_MARKERS, cut_generation

_NUM = re.compile(
    r"(?<![\w.])"  # not glued to a word ("x3") or to a previous number
    r"(?P<neg>[-\u2212])?(?:\$\s?)?"  # sign, then an optional dollar sign: -7, -$5, $ 5
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"  # 1,234.5 | 1234.5 | .5
)
_MARKERS = (re.compile(r"answer\s+is\s*[:=]?", re.I), re.compile(r"####"), re.compile(r"\\boxed\{"))


def normalize_number(text: str) -> str | None:
    """The canonical form of the first number in `text` ("1,234.50" -> "1234.5", "$-0" -> "0"), or None."""
    m = _NUM.search(text.strip())
    return _canonical(m) if m else None


def _canonical(m: re.Match) -> str | None:
    try:
        d = Decimal(m.group("num").replace(",", ""))
    except InvalidOperation:
        return None
    if m.group("neg"):
        d = -d
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def extract_number(text: str, first_line: bool = False) -> str | None:
    """The answer number of a generation, canonical (see `normalize_number`), or None when there is none.

    Order: the first number after the first "answer is", then after "####", then after "\\boxed{"
    (each within the rest of its line); else the last number. `first_line`: look at the first non-empty
    line only (direct answers).
    """
    text = cut_generation(text)
    if first_line:
        text = next((ln for ln in text.splitlines() if ln.strip()), "")
    for marker in _MARKERS:
        hit = marker.search(text)
        if hit:
            rest = text[hit.end():].split("\n", 1)[0]
            m = _NUM.search(rest)
            if m:
                return _canonical(m)
    found = list(_NUM.finditer(text))
    return _canonical(found[-1]) if found else None


def numbers_equal(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    x, y = normalize_number(a), normalize_number(b)
    return x is not None and x == y


def answer_line_complete(text: str) -> bool:
    """True once every later token would leave `extract_number(text)` as it is: the first "answer is"
    line is finished (a newline follows it) and holds a number, or a new "Question:" has begun (extraction
    reads only the text before it)."""
    if any(m in text for m in STOP_MARKERS):
        return True  # extraction reads only the text before the new "Question:", which is complete
    hit = _MARKERS[0].search(text)
    if hit is None:
        return False
    rest = text[hit.end():]
    return "\n" in rest and _NUM.search(rest.split("\n", 1)[0]) is not None
