"""`rheads answer tune`: choose each method's parameters on a `--split tune` bench run, never on the eval items.

In: a folder written by `rheads answer bench --split tune` whose methods include variants of one method
(`copy:k3`, `copy:k10`, each with its own `--param`; `answer/registry.py`). Every arm of a method (the plain name
with its parameters, and each variant) is scored by the method's `tune_objective` over its answers on all the tune
items (`AnswerMethod.tune_objective`: accuracy; `abstain`: selective accuracy among the settings that keep 80% of
the answers); the highest wins; a tie goes to the arm with the method's defaults, then to the arm listed first.
Out: `tuned.json` in that folder, `{"version", "split", "n_items", "methods": {method: {"arm", "params",
"defaults", "value", "n", "arms": {arm: {"params", "value", "accuracy", "coverage", "n"}}}}}` (`arm` null when no
setting of the method qualifies), and `flags()` gives the `--param` flags that run the chosen settings. Every arm
must have answered every item of the folder (an arm added by an unfinished run is refused).

Left out on purpose: an interval on the choice (the tune items are few; the eval run reports the intervals) and a
search beyond the variants given to the bench (the grid is the user's).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from ...errors import RHeadsError
from ...io.jsonl import atomic_write_json, read_jsonl
from ...version import FORMAT_VERSION
from ..registry import base_name, get_method_class
from ..run import summarize


def _read(folder: Path) -> tuple[dict, list[str], dict, list[dict]]:
    bench = folder / "bench.json"
    if not bench.is_file():
        raise RHeadsError(f"no bench.json in {folder}: run `rheads answer bench --split tune --out {folder}` with "
                          "the variants to compare first")
    try:
        result = json.loads(bench.read_text())
        config = result["config"]
        split = config.get("split")
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise RHeadsError(f"{bench} is not a bench.json of rheads answer bench: run the bench again there") from None
    if split != "tune":
        raise RHeadsError(f"{folder} holds a --split {split or 'eval'} run: choose parameters on a "
                          "`rheads answer bench --split tune` run, never on the items you report")
    try:  # the answer run's config: every arm with its parameters, over every run in the folder
        answer = json.loads((folder / "config.json").read_text())["config"]
        arms, given = list(answer["methods"]), dict(answer.get("params") or {})
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
        raise RHeadsError(f"no readable config.json in {folder}: run the bench again there") from None
    records = [r for r in read_jsonl(folder / "answers.jsonl") if r.get("type") == "answer"]
    return result, arms, given, records


def tune(folder: str | Path) -> dict[str, Any]:
    """Choose per method (module docstring); writes and returns tuned.json's content."""
    folder = Path(folder)
    result, arms, given, records = _read(folder)
    params = {a: get_method_class(a)(**(given.get(a) or {})).settings() for a in arms}  # gained ones at defaults
    figures = summarize(records, arms)
    items = {r["id"] for r in records}
    for arm in arms:  # an arm added by a run that did not finish would be judged on other items
        done = {r["id"] for r in records if r["method"] == arm}
        if done != items:
            raise RHeadsError(f"{arm} has answered {len(done)} of the folder's {len(items)} items: rerun the bench "
                              f"command that added it, with --out {folder}, to finish it")
    methods: dict[str, Any] = {}
    for arm in arms:
        base = base_name(arm)
        cls = get_method_class(base)
        entry = methods.setdefault(base, {"defaults": dict(cls.params), "arms": {}})
        f = figures[arm]
        entry["arms"][arm] = {"params": params[arm], "value": cls.tune_objective(f), "accuracy": f["accuracy"],
                              "coverage": f["coverage"], "n": f["n"]}
    for base, entry in methods.items():
        cand = [(a, e) for a, e in entry["arms"].items() if e["value"] is not None]
        if not cand:
            entry.update(arm=None, params=None, value=None, n=0)
            continue
        order = {a: i for i, a in enumerate(entry["arms"])}
        arm, e = max(cand, key=lambda ae: (ae[1]["value"], ae[1]["params"] == entry["defaults"], -order[ae[0]]))
        entry.update(arm=arm, params=e["params"], value=e["value"], n=e["n"])
    out = {"version": FORMAT_VERSION, "split": "tune", "n_items": result.get("n_items"), "methods": methods}
    atomic_write_json(folder / "tuned.json", out)
    return out


def flags(tuned: dict[str, Any]) -> list[str]:
    """The `--param METHOD.NAME=VALUE` flags that set each chosen parameter that differs from its default."""
    out = []
    for base, e in tuned["methods"].items():
        for k, v in (e.get("params") or {}).items():
            if v != e["defaults"].get(k):
                out.append("--param " + shlex.quote(f"{base}.{k}={v}"))
    return out


def format_tuned(tuned: dict[str, Any]) -> str:
    """One markdown table: per method and arm, its objective, accuracy and coverage; the chosen arm marked."""
    lines = ["| method | arm | params | objective | accuracy | coverage | chosen |", "|---|---|---|---|---|---|---|"]
    for base, e in tuned["methods"].items():
        for arm, a in e["arms"].items():
            val = "-" if a["value"] is None else f"{a['value']:.3f}"
            ps = ", ".join(f"{k}={v}" for k, v in a["params"].items() if k != "refusal")
            lines.append(f"| {base} | {arm} | {ps} | {val} | {a['accuracy']} | {a['coverage']} | "
                         f"{'yes' if arm == e['arm'] else ''} |")
    return "\n".join(lines)
