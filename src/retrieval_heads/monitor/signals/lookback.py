"""`lookback`, the SUPERVISED comparator: Lookback Lens (Chuang et al. 2024), a logistic regression over every
head's lookback ratio, fitted to a benchmark run's labelled answers (`bench/lookback.py` holds the classifier).

Settings (columns `lookback[<setting>]`): `in-domain`, out-of-fold within each task (two folds split by source);
`niah->counterfactual` and `counterfactual->niah`, fitted on every labelled answer of one task and scored on the
other's. Token level: the same classifier on each token's ratios averaged over the last 8 tokens, read from the
run's arrays/<id>.npz.

Left out on purpose: anything live (it needs labels: the Monitor does not report it); scikit-learn is imported
only here, when it is fitted, so that importing the monitor does not import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import Signal, register_signal


@register_signal
class LookbackLens(Signal):
    name = "lookback"
    supervised = True
    order = 30

    def fit_predict(self, items: list[dict], run: Path) -> dict[str, dict[str, Any]]:
        from ..bench import lookback as lb
        from ..bench.items import TASKS, task_of

        X = np.array([r["lookback"] for r in items], dtype=float)
        y = np.array([r["label"] for r in items])
        kinds = np.array([task_of(r["kind"]) for r in items])
        out: dict[str, dict[str, Any]] = {"in-domain": {}}
        models: dict[str, list] = {}
        for task in TASKS:  # in-domain: out-of-fold within each task
            idx = np.where(kinds == task)[0]
            if len(idx) < 4:
                continue
            pred, ms = lb.out_of_fold(X[idx], y[idx], [items[i]["source"] for i in idx])
            for j, i in enumerate(idx):
                out["in-domain"][items[i]["id"]] = pred[j]
                models[items[i]["id"]] = ms[j]
        for a, b in ((TASKS[0], TASKS[1]), (TASKS[1], TASKS[0])):  # the other task
            m = lb.fit(X[kinds == a], y[kinds == a])
            key = f"{a}->{b}"
            out[key] = {}
            for i in np.where(kinds == b)[0]:
                out[key][items[i]["id"]] = lb.predict(m, X[i:i + 1])[0]
                models.setdefault(key + items[i]["id"], m)
        tokens: dict[str, dict[str, list[float]]] = {k: {} for k in out}
        for r in items:
            path = Path(run) / "arrays" / f"{r['id']}.npz"
            if not path.exists():
                continue
            feats = lb.window_features(np.load(path)["lr"])
            for key in out:
                m = models.get(r["id"]) if key == "in-domain" else models.get(key + r["id"])
                if r["id"] in out[key]:
                    tokens[key][r["id"]] = list(lb.predict(m, feats))
        return {k: {"answer": out[k], "tokens": tokens[k]} for k in out}
