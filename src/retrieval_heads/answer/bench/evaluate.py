"""The figures of `rheads answer bench`, from its answers.jsonl and items (no model).

Per method and family (and `all`):
- `accuracy`: a gold string in the answer (`run.py`'s `correct`), over every item (an abstention is not correct);
- `hallucination_rate`: a wrong answer that is neither an abstention nor a refusal (`scoring.judge.is_refusal`);
  for a counterfactual item, the real-world answer given instead of the stated one;
- `abstention_precision` / `abstention_recall`: of the abstentions, the share whose withheld answer was wrong; of
  the wrong withheld-or-given answers, the share withheld (null when the method never abstains);
- `time_ratio`: mean seconds per item over greedy's on the same items;
- `vs_greedy`, `vs_best_contrast`: the accuracy difference, paired over items, against greedy and against the
  better of `cad` and `decore` (by accuracy over all items), with a bootstrap 95% interval that resamples whole
  questions (a needle, fact or row asked at several lengths is one cluster, `group_of`); the AUROC intervals below
  resample the same clusters.
The monitor on natural errors (greedy's answers, per family): AUROC of wrong against right answers for the
monitor's hallucination score, the negated mean log-probability, the mean entropy, RAUQ (from the report's pass,
every head recorded) and the answer length in tokens,
each with a bootstrap interval, and the monitor minus the best of them (paired); `anchor` (`monitor/signals/
anchor.py`: how far from the question's words the retrieval heads copied from), overall and among the answers
the monitor called `supported` (`supported`: the wrong copies a copy test passes); and the monitor's score as a
selector: selective accuracy of greedy's answers kept in increasing score order, at coverages 0.1 to 1.0.

Left out on purpose: fitted thresholds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...analysis.stats import paired_diff_ci
from ...scoring.judge import contains_answer, is_refusal

CONTRASTS = ("cad", "decore")
COVERAGES = tuple(round(0.1 * i, 1) for i in range(1, 11))


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


def hallucinated(rec: dict, item: dict) -> bool:
    """A wrong, non-refusal answer (module docstring)."""
    if rec["abstained"] or is_refusal(rec["answer"]):
        return False
    if item.get("common"):  # the real-world answer given instead of the stated one (not both: that is right)
        return not rec["correct"] and contains_answer(rec["answer"], item["common"])
    return not rec["correct"]


def _withheld_wrong(rec: dict, item: dict) -> bool:
    text = rec.get("generated") if rec["abstained"] else rec["answer"]
    return not any(contains_answer(text or "", g) for g in item["answers"])


def method_figures(recs: list[dict], items: dict[str, dict], greedy: dict[str, dict] | None) -> dict[str, Any]:
    n = len(recs)
    if not n:
        return {"n": 0}
    acc = [float(bool(r["correct"])) for r in recs]
    abst = [r for r in recs if r["abstained"]]
    wrong = [r for r in recs if _withheld_wrong(r, items[r["id"]])]
    out = {"n": n, "accuracy": _r(np.mean(acc)),
           "hallucination_rate": _r(np.mean([hallucinated(r, items[r["id"]]) for r in recs])),
           "abstention_rate": _r(len(abst) / n),
           "abstention_precision": _r(np.mean([_withheld_wrong(r, items[r["id"]]) for r in abst])) if abst else None,
           "abstention_recall": _r(sum(r["abstained"] for r in wrong) / len(wrong)) if wrong and abst else None,
           "mean_seconds": _r(np.mean([r["seconds"] for r in recs]))}
    if greedy:  # on the items both answered
        both = [r for r in recs if r["id"] in greedy]
        g = [greedy[r["id"]]["seconds"] for r in both]
        out["time_ratio"] = _r(np.mean([r["seconds"] for r in both]) / np.mean(g), 3) \
            if g and np.mean(g) > 0 else None
    return out


def group_of(item: dict) -> str:
    """The cluster an item belongs to for the bootstrap: its question (a needle, a fact or a HaluEval row asked at
    several lengths gives items that are not independent)."""
    return " ".join(str(item.get("question", item.get("id"))).casefold().split())


def paired_accuracy(a: list[dict], b: dict[str, dict], items: dict[str, dict] | None = None) -> dict[str, Any] | None:
    keep = [r for r in a if r["id"] in b]
    if not keep:
        return None
    x = [float(bool(r["correct"])) for r in keep]
    y = [float(bool(b[r["id"]]["correct"])) for r in keep]
    groups = None if items is None else [group_of(items[r["id"]]) for r in keep]
    return {"diff": _r(np.mean(x) - np.mean(y)), "ci95": paired_diff_ci(x, y, groups=groups), "n": len(keep),
            "groups": None if groups is None else len(set(groups))}


def risk_coverage(recs: list[dict]) -> list[dict]:
    """Selective accuracy of the answers kept in increasing hallucination score, at each coverage."""
    ranked = sorted((r for r in recs if r["hallucination_score"] is not None), key=lambda r: r["hallucination_score"])
    out = []
    for c in COVERAGES:
        k = max(1, int(round(c * len(ranked)))) if ranked else 0
        kept = ranked[:k]
        out.append({"coverage": c, "n": k, "selective_accuracy": _r(np.mean([bool(r["correct"]) for r in kept]))
                    if kept else None})
    return out


OURS = ("monitor", "anchor")  # the head-based signals; the rest are the baselines they are compared with


def natural_errors(recs: list[dict], items: dict[str, dict] | None = None) -> dict[str, Any]:
    """The monitor against the logit baselines on greedy's own answers (module docstring); with `items`, the
    intervals resample whole questions (`group_of`)."""
    from ...monitor.bench.metrics import detection as _detection, paired_auroc_diff

    keep = [r for r in recs if r["correct"] is not None and r["new_tokens"]]
    y = [int(not r["correct"]) for r in keep]
    groups = None if items is None else [group_of(items[r["id"]]) for r in keep]

    def detection(yy, ss, idx=None):
        g = groups if idx is None or groups is None else [groups[i] for i in idx]
        return _detection(yy, ss, groups=g)

    def stat(r: dict, k: str) -> float:
        v = (r.get("monitor_baselines") or {}).get(k)
        return np.nan if v is None else float(v)

    signals = {"monitor": [np.nan if r["hallucination_score"] is None else r["hallucination_score"] for r in keep],
               "neg_mean_logprob": [-stat(r, "mean_logprob") for r in keep],
               "mean_entropy": [stat(r, "mean_entropy") for r in keep],
               "rauq": [stat(r, "rauq") for r in keep],
               "length": [float(r["new_tokens"]) for r in keep],
               "anchor": [stat(r, "anchor") for r in keep]}  # ours (a wrong copy), not a baseline
    out = {"n": len(keep), "wrong": int(sum(y)), "signals": {k: detection(y, v) for k, v in signals.items()}}
    base = {k: v["auroc"] for k, v in out["signals"].items() if k not in OURS and v["auroc"] is not None}
    if base and out["signals"]["monitor"]["auroc"] is not None:
        best = max(base, key=base.get)
        out["monitor_minus_best"] = {"baseline": best, **paired_auroc_diff(y, signals["monitor"], signals[best],
                                                                           groups=groups)}
    sup = [i for i, r in enumerate(keep) if r.get("verdict") == "supported"]  # the copies the copy test passed
    ys = [y[i] for i in sup]
    out["supported"] = {"n": len(sup), "wrong": int(sum(ys)),
                        "anchor": detection(ys, [signals["anchor"][i] for i in sup], sup),
                        "monitor": detection(ys, [signals["monitor"][i] for i in sup], sup)}
    return out


def evaluate(records: list[dict], items: list[dict], methods: list[str]) -> dict[str, Any]:
    """Every figure of the module docstring."""
    by_id = {it["id"]: it for it in items}
    families = [f for f in dict.fromkeys(it["family"] for it in items)] + ["all"]
    recs = {m: [r for r in records if r["method"] == m and r["id"] in by_id] for m in methods}
    greedy = {r["id"]: r for r in recs.get("greedy", [])}
    out: dict[str, Any] = {"families": {}, "natural_errors": {}, "risk_coverage": {}}
    for fam in families:
        def mine(rs: list[dict]) -> list[dict]:
            return [r for r in rs if fam == "all" or by_id[r["id"]]["family"] == fam]

        table = {m: method_figures(mine(recs[m]), by_id, greedy or None) for m in methods}
        contrasts = [c for c in CONTRASTS if c in recs and recs[c]]
        best = max(contrasts, key=lambda c: np.mean([bool(r["correct"]) for r in recs[c]])) if contrasts else None
        for m in methods:
            if greedy and m != "greedy":
                table[m]["vs_greedy"] = paired_accuracy(mine(recs[m]), greedy, by_id)
            if best and m != best:
                table[m]["vs_best_contrast"] = {"against": best, **(paired_accuracy(
                    mine(recs[m]), {r["id"]: r for r in recs[best]}, by_id) or {})}
        out["families"][fam] = table
        if greedy:
            out["natural_errors"][fam] = natural_errors(mine(recs["greedy"]), by_id)
            out["risk_coverage"][fam] = risk_coverage(mine(recs["greedy"]))
    return out


def format_tables(ev: dict[str, Any]) -> str:
    """Markdown: per family, one row per method; then the monitor on natural errors."""
    lines = []
    cols = ("n", "accuracy", "hallucination_rate", "abstention_rate", "abstention_precision", "abstention_recall",
            "time_ratio")
    for fam, table in ev["families"].items():
        lines += [f"### {fam}", "", "| method | " + " | ".join(cols) + " | vs greedy [95% CI] | vs best contrast |",
                  "|---" * (len(cols) + 3) + "|"]
        for m, s in table.items():
            cells = ["-" if s.get(c) is None else (f"{s[c]:.3f}" if isinstance(s[c], float) else str(s[c]))
                     for c in cols]
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {_diff(s.get('vs_greedy'))} | "
                         f"{_diff(s.get('vs_best_contrast'))} |")
        lines.append("")
    lines += ["### the monitor on greedy's own errors (AUROC, wrong vs right [95% CI])", "",
              "| family | n (wrong) | monitor | -mean logprob | mean entropy | RAUQ | length | monitor - best | anchor "
              "| supported n (wrong) | anchor within supported |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for fam, ne in ev["natural_errors"].items():
        sig = ne["signals"]
        cell = lambda k: "-" if sig[k]["auroc"] is None else (  # noqa: E731
            f"{sig[k]['auroc']:.3f} [{sig[k]['auroc_ci'][0]:.3f}, {sig[k]['auroc_ci'][1]:.3f}]")
        d = ne.get("monitor_minus_best")
        dd = "-" if not d or d.get("diff") is None else f"{d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] " \
                                                        f"({d['baseline']})"
        sup = ne.get("supported") or {"n": 0, "wrong": 0, "anchor": {"auroc": None}}
        lines.append(f"| {fam} | {ne['n']} ({ne['wrong']}) | {cell('monitor')} | {cell('neg_mean_logprob')} | "
                     f"{cell('mean_entropy')} | {cell('rauq')} | {cell('length')} | {dd} | {cell('anchor')} | "
                     f"{sup['n']} ({sup['wrong']}) | {_auc(sup['anchor'])} |")
    return "\n".join(lines)


def _auc(d: dict) -> str:
    return "-" if d.get("auroc") is None else f"{d['auroc']:.3f} [{d['auroc_ci'][0]:.3f}, {d['auroc_ci'][1]:.3f}]"


def _diff(d: dict | None) -> str:
    if not d or d.get("diff") is None:
        return "-"
    ci = d.get("ci95")
    tail = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""
    return f"{d['diff']:+.3f}{tail}" + (f" ({d['against']})" if "against" in d else "")
