"""RULER's string-match metrics, per sample and over a task, on a 0-100 scale.

- `string_match_all(pred, outputs)`: the share of gold strings found in the prediction (case-insensitive
  substring), x100 (RULER's niah, vt, cwe, fwe metric);
- `string_match_part(pred, outputs)`: 100 if any gold string is found, else 0 (RULER's qa metric);
- `postprocess(pred)`: RULER's clean-up before matching (strip; control characters become newlines).
A task's score is the mean of its samples' scores, which equals RULER's corpus-level formula.

Left out on purpose: RULER's rounding to two decimals (the run rounds its summary), and any fuzzy matching.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f]")


def postprocess(pred: str) -> str:
    return _CONTROL.sub("\n", pred.strip()).strip()


def string_match_all(pred: str, outputs: list[str]) -> float:
    if not outputs:
        return 0.0
    p = pred.lower()
    return 100.0 * sum(o.lower() in p for o in outputs) / len(outputs)


def string_match_part(pred: str, outputs: list[str]) -> float:
    p = pred.lower()
    return 100.0 if any(o.lower() in p for o in outputs) else 0.0


METRIC_FNS = {"string_match_all": string_match_all, "string_match_part": string_match_part}


def score(metric: str, pred: str, outputs: list[str]) -> float:
    """One sample's score (0-100) under a metric of `METRIC_FNS`, after RULER's clean-up."""
    return METRIC_FNS[metric](postprocess(pred), [str(o) for o in outputs])
