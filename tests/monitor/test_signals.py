"""The signal registry: one module per signal, each registered once with its direction; column names that map back
to their signal; the benchmark's evaluation iterating the registry (a signal registered here shows up in its
tables, oriented by its direction); the one verdict rule; and importing the monitor without scikit-learn."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import numpy as np
import pytest

import retrieval_heads.monitor.signals as signals_pkg
from retrieval_heads.monitor.bench.evaluation import answer_signals, evaluate_run, token_signals
from retrieval_heads.monitor.rules import verdict
from retrieval_heads.monitor.signals import (MONITOR, AnswerTrace, HeadSetTrace, Signal, all_signals, get_signal,
                                             register_signal, signal_of, stats)
from retrieval_heads.monitor.signals import base
from test_bench import _fake_run


def test_every_module_registers_one_signal():
    modules = {m.name for m in pkgutil.iter_modules(signals_pkg.__path__)} - {"base"}
    sigs = all_signals()
    assert {type(s).__module__.rsplit(".", 1)[1] for s in sigs} == modules
    assert len(sigs) == len(modules) == len({s.name for s in sigs})
    by = {s.name: s for s in sigs}
    assert {"combined", "copy", "mass", "mean_logprob", "min_logprob", "max_entropy", "mean_entropy", "length",
            "rauq", "lookback"} <= set(by)
    assert not by["mean_logprob"].higher_is_hallucinated and not by["min_logprob"].higher_is_hallucinated
    assert by["rauq"].higher_is_hallucinated and by["rauq"].needs_all_heads and by["lookback"].supervised
    with pytest.raises(ValueError, match="already registered"):
        register_signal(type("Combined", (Signal,), {"name": "combined"}))


def test_columns_map_back_to_their_signal():
    a = AnswerTrace([True], {"retrieval": HeadSetTrace([0.5], [0.0], [0.5]), "random-s0": HeadSetTrace([0], [0], [0])})
    for s in all_signals():
        quals = ["in-domain", "niah->counterfactual"] if s.supervised else s.qualifiers(a)
        for q in quals:
            assert signal_of(s.column(q)) == (s, q)
    assert signal_of(MONITOR) == (get_signal("combined"), "retrieval")
    assert signal_of("nothing") is None and signal_of("retrieval:nothing") is None and signal_of("length[x]") is None


def test_a_record_reads_its_stored_values_and_orients_them():
    rec = {"content": [True, True], "signals": {"retrieval": {"copy": [1.0, 0.0], "copy_q": [0.0, 0.0],
                                                              "mass": [0.5, 0.1]}},
           "logprobs": [-0.1, -2.0], "entropies": [0.5, 1.5], "rauq_tokens": [],
           "baselines": {"mean_logprob": -0.7, "min_logprob": -3.0, "max_entropy": 2.0, "mean_entropy": 1.0,
                         "n_tokens": 2}}
    s = answer_signals(rec)
    # the stored full-precision values, not the rounded per-token ones; log-probabilities turned round
    assert s["mean_logprob"] == 0.7 and s["min_logprob"] == 3.0 and s["max_entropy"] == 2.0 and s["length"] == 2
    assert np.isnan(s["rauq"])  # not recorded in this run
    assert s[MONITOR] == pytest.approx(np.mean([1 - 0.5 * (1.0 + 0.5), 1 - 0.5 * (0.0 + 0.1)]))
    t = token_signals(rec)
    assert t["mean_logprob"] == [0.1, 2.0] and t["max_entropy"] == [0.5, 1.5] and "length" not in t
    assert len(t["rauq"]) == 2 and all(np.isnan(t["rauq"]))
    # live, the same signals compute what a run stores
    live = stats(AnswerTrace(logprobs=[-0.1, -2.0], entropies=[0.5, 1.5]))
    assert live.pop("anchor") is None  # no context given: nothing to be near
    assert live == pytest.approx({"mean_logprob": -1.05, "min_logprob": -2.0, "max_entropy": 1.5,
                                  "mean_entropy": 1.0, "n_tokens": 2})
    assert "rauq" in stats(AnswerTrace(logprobs=[-0.1], entropies=[0.5], rauq=0.3, all_heads=True))


def test_the_evaluation_iterates_the_registry(tmp_path, monkeypatch):
    class Negated(Signal):  # the monitor's score turned round: its AUROC is 1 - the monitor's
        name = "negated"
        higher_is_hallucinated = False
        per_head_set = True

        def value(self, a, qualifier=None):
            return get_signal("combined").value(a, qualifier)

        def token_values(self, a, qualifier=None):
            return get_signal("combined").token_values(a, qualifier)

    all_signals()  # the built-in modules first
    monkeypatch.setitem(base._SIGNALS, "negated", Negated())
    _fake_run(tmp_path / "run")
    s = evaluate_run(tmp_path / "run")
    rows = s["subsets"]["all"]
    assert rows["retrieval:negated"]["auroc"] == pytest.approx(1 - rows[MONITOR]["auroc"], abs=1e-4)
    assert rows["retrieval:negated"]["token"]["auroc"] == pytest.approx(1 - rows[MONITOR]["token"]["auroc"], abs=1e-4)
    assert "all:negated" in rows
    assert "`retrieval:negated` | unsupervised" in (tmp_path / "run" / "tables.md").read_text()


def test_one_verdict_rule_for_the_report_and_the_evaluation(tmp_path):
    assert verdict([], [], []) == "nothing to check"
    assert verdict([True, False], [True, False], [False, True]) == "nothing to check"  # only an echo counts
    assert verdict([True, True, True], [False] * 3, [False] * 3) == "supported"
    assert verdict([True, True, True], [False] * 3, [True, False, False]) == "partly unsupported"
    assert verdict([True, True], [False] * 2, [True, False]) == "unsupported"  # half is not under half
    recs = _fake_run(tmp_path / "run")
    flags = evaluate_run(tmp_path / "run")["flags"]["verdicts"]
    # the fake signals: copy is 0 on some tokens, copy_q never above copy, every token content
    expect: dict[str, dict[str, int]] = {}
    for r in recs:
        c = r["signals"]["retrieval"]["copy"]
        v = verdict(r["content"], [False] * len(c), [x <= 0 for x in c])
        lab = {0: "right", 1: "wrong", None: "unlabelled"}[r["label"]]
        expect.setdefault(v, {}).setdefault(lab, 0)
        expect[v][lab] += 1
    assert flags == json.loads(json.dumps(dict(sorted(expect.items()))))


def test_importing_the_monitor_does_not_import_sklearn():
    code = ("import retrieval_heads.monitor, sys; assert 'sklearn' not in sys.modules; "
            "from retrieval_heads.monitor.signals import all_signals; all_signals(); "
            "assert 'sklearn' not in sys.modules, 'the registry imported sklearn'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
