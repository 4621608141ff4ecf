"""The benchmark's figures, from a run directory's items.jsonl (and arrays/ for token-level Lookback Lens): per
subset (all labelled answers, NIAH, counterfactual QA with its unanswerable items, the answerable items alone
when there are unanswerable ones, each length; and with degenerate answers counted as wrong), for the monitor,
its variants, the other head sets, the logit baselines, RAUQ and the supervised Lookback Lens: answer-level
AUROC with its bootstrap 95% interval, the paired AUROC difference to the monitor, precision at 80% recall, and
token-level AUROC. Writes summary.json, tables.md, roc.png and auroc.png.

Signals: every signal of the registry (`monitor/signals/`, one module each), in their columns: `<head set>:<name>`
for the per-head-set signals (`retrieval:combined` is the monitor; head sets `retrieval` weighted by score,
`retrieval-uniform`, `all`, `random-s<seed>`), the name alone for the others (logit baselines, RAUQ), and
`<name>[<setting>]` for the SUPERVISED ones (Lookback Lens: in-domain out-of-fold, or trained on the other task).
The verdicts are `rules.verdict` on the stored signals.

Left out on purpose: choosing among signals by their AUROC here (the monitor is fixed in advance; the others are
reported, not selected).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ...io.jsonl import atomic_write_json, read_jsonl
from ..rules import is_echo, is_unsupported, verdict
from ..signals import MONITOR, AnswerTrace, all_signals, signal_of
from .items import TASKS, task_of
from .metrics import detection, paired_auroc_diff, token_detection

MONITOR_SETS = ("retrieval", "retrieval-uniform")  # the monitor's own heads: no baseline to beat


def answer_signals(rec: dict) -> dict[str, float]:
    """{column: answer-level hallucination score (NaN when undefined)} of every unsupervised signal."""
    a = AnswerTrace.from_record(rec)
    return {s.column(q): s.answer_score(a, q) for s in all_signals() if not s.supervised for q in s.qualifiers(a)}


def token_signals(rec: dict) -> dict[str, list[float]]:
    """{column: per-token hallucination scores} of every unsupervised signal that has a token level."""
    a = AnswerTrace.from_record(rec)
    out: dict[str, list[float]] = {}
    for s in all_signals():
        if s.supervised:
            continue
        for q in s.qualifiers(a):
            vals = s.token_scores(a, q)
            if vals is not None:
                out[s.column(q)] = vals
    return out


def _supervised(labelled: list[dict], run: Path, sigs: list[dict], toks: list[dict]) -> set[str]:
    """Fit every supervised signal on the labelled answers; add its columns to `sigs` and `toks`; their names."""
    names: set[str] = set()
    for sig in all_signals():
        if not sig.supervised:
            continue
        for setting, d in sig.fit_predict(labelled, run).items():
            col = sig.column(setting)
            names.add(col)
            for s, t, r in zip(sigs, toks, labelled):
                if r["id"] in d["answer"]:
                    s[col] = d["answer"][r["id"]]
                    if r["id"] in d["tokens"]:
                        t[col] = d["tokens"][r["id"]]
    return names


def _table(items: list[dict], y: np.ndarray, sigs: list[dict[str, float]], names: list[str], diffs: bool,
           toks: list[dict[str, list[float]]] | None) -> dict[str, dict]:
    res: dict[str, dict] = {}
    mon = np.array([s[MONITOR] for s in sigs])
    for name in names:
        s = np.array([x.get(name, np.nan) for x in sigs])
        row = detection(y, s)
        if diffs and name != MONITOR:
            row["monitor_minus"] = paired_auroc_diff(y, mon, s)
        if toks is not None:
            groups = []
            for r, t in zip(items, toks):
                lab = r["token_labels"]
                vals = t.get(name)
                if vals is None:
                    continue
                keep = [i for i, l in enumerate(lab) if l is not None]
                groups.append(([lab[i] for i in keep], [vals[i] for i in keep]))
            if groups:
                row["token"] = token_detection(groups)
        res[name] = row
    return res


def evaluate_run(run: str | Path) -> dict[str, Any]:
    """Evaluate a benchmark run directory; writes summary.json and tables.md there and returns the summary."""
    run = Path(run)
    meta = json.loads((run / "config.json").read_text())
    records = [r for r in read_jsonl(run / "items.jsonl") if r.get("type") == "item"]
    labelled = [r for r in records if r["label"] is not None]
    summary: dict[str, Any] = {"run": str(run), "config": meta.get("config"), "model": meta.get("model"),
                               "head_sets": meta.get("head_sets"), "answers": len(records),
                               "labelled": len(labelled), "counts": _counts(records), "subsets": {}}
    if not labelled:
        atomic_write_json(run / "summary.json", summary)
        return summary
    sigs = [answer_signals(r) for r in labelled]
    toks = [token_signals(r) for r in labelled]
    supervised = _supervised(labelled, run, sigs, toks)
    names = sorted({k for s in sigs for k in s}, key=lambda n: (n != MONITOR, n in supervised, n))
    subsets = {"all": lambda r: True, **{k: (lambda r, k=k: task_of(r["kind"]) == k) for k in TASKS},
               "strict": lambda r: r["judge"]["class"] in ("correct", "hallucinated")}
    if any(r["kind"] == "unanswerable" for r in labelled):
        subsets["answerable"] = lambda r: r["kind"] != "unanswerable"
    for length in sorted({r["length"] for r in labelled}):
        subsets[f"length={length}"] = lambda r, n=length: r["length"] == n
    for sub, pick in subsets.items():
        idx = [i for i, r in enumerate(labelled) if pick(r)]
        if not idx:
            continue
        main = not sub.startswith("length")
        items = [labelled[i] for i in idx]
        y = np.array([r["label"] for r in items])
        summary["subsets"][sub] = _table(items, y, [sigs[i] for i in idx], names, main,
                                         [toks[i] for i in idx] if main else None)
    deg = [r for r in records if r["label"] is not None or r["judge"]["class"] == "degenerate"]
    y = np.array([1 if r["label"] is None else r["label"] for r in deg])
    dsigs = [answer_signals(r) for r in deg]
    summary["subsets"]["all+degenerate"] = _table(deg, y, dsigs, [n for n in names if n not in supervised],
                                                  True, None)
    summary["goals"] = _goals(summary["subsets"])
    summary["flags"] = _flags(records)
    summary["overhead"] = _overhead(meta)
    atomic_write_json(run / "summary.json", summary)
    from .figures import auroc_figure, roc_figure

    model = (meta.get("model") or {}).get("spec") or "model"
    roc_figure(np.array([r["label"] for r in labelled]), sigs, run / "roc.png",
               f"{model}: right vs wrong answers, all labelled (n={len(labelled)})")
    auroc_figure(summary["subsets"], run / "auroc.png", f"{model}: answer-level AUROC")
    from .tables import write_tables

    write_tables(run / "tables.md", summary)
    return summary


def _counts(records: list[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {"classes": dict(Counter(r["judge"]["class"] for r in records))}
    for key in ("kind", "length"):
        groups: dict[str, Counter] = {}
        for r in records:
            groups.setdefault(str(r[key]), Counter())[{0: "right", 1: "wrong", None: "unlabelled"}[r["label"]]] += 1
        out[f"by_{key}"] = {k: dict(v) for k, v in sorted(groups.items())}
    lab = [r["label"] for r in records if r["label"] is not None]
    out["wrong_share"] = round(sum(lab) / len(lab), 4) if lab else None
    cf_wrong = [r for r in records if r["kind"] == "counterfactual" and r["label"] == 1]
    out["counterfactual_wrong_parametric"] = sum(bool(r["parametric"]) for r in cf_wrong)
    out["counterfactual_wrong"] = len(cf_wrong)
    un = [r for r in records if r["kind"] == "unanswerable"]
    if un:  # how the unanswerable items were answered: from memory (the real-world answer) or otherwise
        un_wrong = [r for r in un if r["label"] == 1]
        out["unanswerable"] = {"items": len(un), "refused": sum(r["label"] is None for r in un),
                               "answered": len(un_wrong), "parametric": sum(bool(r["parametric"]) for r in un_wrong)}
    return out


def _goals(subsets: dict[str, dict]) -> dict[str, Any]:
    """The issue's goals, read off the tables: monitor AUROC >= 0.85; >= 0.05 ahead of every unsupervised baseline
    (logit baselines, RAUQ, length, the copy-and-mass signals of all heads and of random heads); within 0.05 of the
    supervised Lookback Lens in-domain, and ahead of it on the other task."""
    out: dict[str, Any] = {}
    for sub in ("all", *TASKS):
        t = subsets.get(sub)
        if not t or t[MONITOR]["auroc"] is None:
            continue
        kinds = {n: signal_of(n) for n in t}
        sup = {n for n, k in kinds.items() if k is not None and k[0].supervised}
        own = {n for n, k in kinds.items()
               if k is not None and (k[0].ours or k[0].per_head_set and k[1] in MONITOR_SETS)}
        base = {n: r["monitor_minus"] for n, r in t.items() if "monitor_minus" in r and n not in sup | own}
        closest = min((b for b in base.items() if b[1]["diff"] is not None), key=lambda b: b[1]["diff"], default=None)
        look = {n: r["monitor_minus"] for n, r in t.items() if n in sup and "monitor_minus" in r}
        out[sub] = {"auroc": t[MONITOR]["auroc"], "auroc_ci": t[MONITOR]["auroc_ci"],
                    "closest_unsupervised": closest and {"name": closest[0], **closest[1]},
                    "minus_lookback": look}
    return out


def _flags(records: list[dict]) -> dict[str, Any]:
    """The per-token unsupported flag and the verdict (`rules.py`, recomputed from the stored signals) against
    the labels: token precision and recall of the flag, and verdicts by label."""
    tp = fp = fn = 0
    verdicts: dict[str, Counter] = {}
    for r in records:
        sig = r["signals"]["retrieval"]
        echo = [is_echo(c, q) for c, q in zip(sig["copy"], sig["copy_q"])]
        absent, verbatim = r.get("absent") or [False] * len(echo), bool(r.get("verbatim"))  # (older records: none)
        flag = [is_unsupported(ct, e, c, a, verbatim) for ct, e, c, a in zip(r["content"], echo, sig["copy"], absent)]
        for f, lab in zip(flag, r["token_labels"]):
            if lab is not None:
                tp += f and lab == 1
                fp += f and lab == 0
                fn += (not f) and lab == 1
        v = verdict(r["content"], echo, flag, absent, verbatim)
        verdicts.setdefault(v, Counter())[{0: "right", 1: "wrong", None: "unlabelled"}[r["label"]]] += 1
    return {"token_precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "token_recall": round(tp / (tp + fn), 4) if tp + fn else None, "tp": tp, "fp": fp, "fn": fn,
            "verdicts": {k: dict(v) for k, v in sorted(verdicts.items())}}


def _overhead(meta: dict) -> dict | None:
    """The overhead ratio measured by bench/bench_monitor.py for this model, when its result file exists."""
    spec = (meta.get("config") or {}).get("model", {}).get("model", "")
    path = Path("bench/results") / f"monitor_overhead_{spec.replace('/', '_')}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("summary")
