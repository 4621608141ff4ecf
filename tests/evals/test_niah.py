"""NIAH scoring on fixed strings, and run_niah / run_ablate on a tiny random model with an offline tokenizer."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

from retrieval_heads.studies.ablate import AblateConfig, format_table, run_ablate
from retrieval_heads.capture.attention import use_rheads
from retrieval_heads.config import ModelConfig, ProbeConfig
from retrieval_heads.errors import RHeadsError
from retrieval_heads.probes.needles import get_needles
from retrieval_heads.evals.niah import NiahConfig, format_summary, run_niah
from retrieval_heads.scoring.judge import RESPONSE_CLASSES, judge
from retrieval_heads.heads.scores import HeadScores
from retrieval_heads.io.jsonl import read_jsonl
from tiny import COMMON, bpe_tokenizer, word_haystack

# ------------------------------------------------------------------------------------------- tiny model + tokenizer

HAYSTACK = word_haystack(200)


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    needle_text = [f"{n.needle} {n.question}" for n in get_needles("eval")]
    template = "<context> </context> Based only on the context above, answer the question in a short sentence. Question: Answer:"
    return bpe_tokenizer([HAYSTACK, template, *needle_text], vocab_size=800)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    cfg = LlamaConfig(**{**COMMON, "vocab_size": len(tok)}, num_key_value_heads=2, bos_token_id=0, eos_token_id=1)
    return use_rheads(AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=torch.float32).eval())


@pytest.fixture(scope="module")
def haystack_file(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("hay") / "hay.txt"
    p.write_text(HAYSTACK)
    return str(p)


def _config(haystack_file, **kw) -> NiahConfig:
    probe = ProbeConfig(haystack=haystack_file, needles="eval", lengths=[160, 220], depths=[0, 50, 100],
                        needles_per_cell=1)
    return NiahConfig(model=ModelConfig(model="tiny-llama"), probe=probe, **{"max_new_tokens": 6, **kw})


def _strip(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def _samples(out: Path) -> list[dict]:
    return [r for r in read_jsonl(out / "samples.jsonl") if r.get("type") == "sample"]


# ------------------------------------------------------------------------------------------- run_niah


def test_run_niah_outputs(model, tok, haystack_file, tmp_path):
    out = tmp_path / "base"
    summary = run_niah(model, tok, _config(haystack_file), out, progress=False)
    recs = _samples(out)
    assert len(recs) == 6 and summary["n_cells"] == 6 and summary["n_samples"] == 6
    assert 0 <= summary["mean_score"] <= 100
    assert summary["mean_score"] == pytest.approx(sum(r["score"] for r in recs) / 6, abs=1e-3)
    assert sum(summary["classes"].values()) == 6 and set(summary["classes"]) == set(RESPONSE_CLASSES)
    assert len(summary["sample_scores"]) == 6 and summary["ci95"][0] <= summary["mean_score"] <= summary["ci95"][1]
    for r in recs:
        assert r["class"] in RESPONSE_CLASSES and r["prompt_length"] <= r["length"]
        assert judge(r["response"], r["answer"]) == {k: r[k] for k in ("score", "rouge1_recall", "contains", "class")}
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["mean_score"] == summary["mean_score"] and on_disk["version"] == 1
    assert on_disk["config"]["probe"]["needles"] == "eval" and on_disk["masked_heads"] == ""
    assert json.loads((out / "config.json").read_text())["config"] == _config(haystack_file).to_dict()
    for f in ("heatmap.png", "classes.png"):
        assert (out / f).stat().st_size > 1000
    assert "mean score" in format_summary(summary)


def test_resume_gives_the_same_results(model, tok, haystack_file, tmp_path):
    cfg = _config(haystack_file, mask="heads:0-1,2-3", ablation="uniform")
    full = run_niah(model, tok, cfg, tmp_path / "full", progress=False)
    out = tmp_path / "killed"
    run_niah(model, tok, cfg, out, progress=False)
    lines = (out / "samples.jsonl").read_text().splitlines(keepends=True)
    kept = lines[:3]  # header + 2 samples, then a torn write, as a killed run leaves it
    (out / "samples.jsonl").write_text("".join(kept) + lines[3][:25])
    (out / "summary.json").unlink()
    resumed = run_niah(model, tok, cfg, out, progress=False)
    recs = _samples(out)
    assert _strip(recs) == _strip(_samples(tmp_path / "full"))
    assert [r["seconds"] for r in recs[:2]] == [json.loads(l)["seconds"] for l in kept[1:]]  # skipped, not rerun
    drop = lambda s: {k: v for k, v in s.items() if k != "seconds"}  # noqa: E731
    assert drop(resumed) == drop(full)
    assert resumed["masked_heads"] == "0-1,2-3" and resumed["ablation"] == "uniform"


def test_rerun_with_other_config_is_refused(model, tok, haystack_file, tmp_path):
    run_niah(model, tok, _config(haystack_file, max_new_tokens=2), tmp_path, progress=False)
    with pytest.raises(RHeadsError, match="different config"):
        run_niah(model, tok, _config(haystack_file, mask="heads:0-0"), tmp_path, progress=False)


def test_mean_mode_records_its_reference(model, tok, haystack_file, tmp_path):
    cfg = _config(haystack_file, mask="heads:1-0,1-1,1-2,1-3", ablation="mean", mean_ref_prompts=2,
                  mean_ref_length=100)
    summary = run_niah(model, tok, cfg, tmp_path, progress=False)
    ref = summary["mean_reference"]
    assert ref["n_prompts"] == 2 and ref["length"] == 100 and len(ref["token_starts"]) == 2
    assert summary["n_masked"] == 4


def test_mask_errors_name_the_model_shape(model, tok, haystack_file, tmp_path):
    with pytest.raises(RHeadsError, match="3 layers x 4 heads"):
        run_niah(model, tok, _config(haystack_file, mask="heads:3-0"), tmp_path, progress=False)
    bad = tmp_path / "scores.json"
    bad.write_text(json.dumps({f"{l}-{h}": [0.5] for l in range(2) for h in range(4)}))
    with pytest.raises(RHeadsError, match="2 layers x 4 heads but the model has 3 x 4"):
        run_niah(model, tok, _config(haystack_file, mask="top:2", scores=str(bad)), tmp_path, progress=False)


# ------------------------------------------------------------------------------------------- run_ablate


def _scores_file(tmp_path) -> str:
    s = HeadScores(3, 4, {(l, h): [0.5 if (l, h) in {(1, 2), (2, 0)} else 0.01 * h] for l in range(3) for h in range(4)})
    path = tmp_path / "scores.json"
    s.save(path)
    return str(path)


def test_run_ablate(model, tok, haystack_file, tmp_path):
    probe = ProbeConfig(haystack=haystack_file, needles="eval", lengths=[160], depths=[0, 100], needles_per_cell=1)
    cfg = AblateConfig(model=ModelConfig(model="tiny-llama"), probe=probe, scores=_scores_file(tmp_path),
                       ks=[0, 2, 3], random_seeds=2, max_new_tokens=4)
    out = tmp_path / "ablate"
    summary = run_ablate(model, tok, cfg, out, progress=False)
    assert [r["k"] for r in summary["results"]] == [0, 2, 3]
    for r in summary["results"]:
        assert {"k", "top_mean", "random_mean", "random_std", "top_classes", "random_classes"} <= set(r)
        assert sum(r["top_classes"].values()) == 2
    base, k2 = summary["results"][0], summary["results"][1]
    assert base["top_mean"] == base["random_mean"] and base["random_std"] == 0
    assert k2["top_heads"] == "1-2,2-0" and sum(k2["random_classes"].values()) == 4
    assert summary["n_retrieval_heads"] == 2 and summary["n_heads"] == 12
    assert {"random_layer_mean", "random_layer_std", "random_layer_ci95", "top_ci95", "random_ci95"} <= set(k2)
    assert sum(k2["random_layer_classes"].values()) == 4 and summary["missing"] == []
    for key in ("random", "random_layer"):  # the top-K minus each control, paired over the 2 cells
        d = k2[f"top_minus_{key}"]
        assert d["diff"] == pytest.approx(k2["top_mean"] - k2[f"{key}_mean"], abs=1e-3) and len(d["ci95"]) == 2
    assert "top_minus_random" not in base and "top minus random" in format_table(summary)
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert dirs == ["k0-baseline", "random-k2-seed0", "random-k2-seed1", "random-k3-seed0", "random-k3-seed1",
                    "random-layer-k2-seed0", "random-layer-k2-seed1", "random-layer-k3-seed0",
                    "random-layer-k3-seed1", "top-k2", "top-k3"]
    for d in dirs:
        if d.startswith("random"):
            masked = json.loads((out / d / "summary.json").read_text())["masked_heads"].split(",")
            assert not {"1-2", "2-0"} & set(masked)
        if d.startswith("random-layer-k2"):  # the top-2 are 1-2 and 2-0: one head from layer 1, one from layer 2
            assert sorted(h.split("-")[0] for h in masked) == ["1", "2"]
    for f in ("summary.json", "curve.png", "classes.png", "config.json"):
        assert (out / f).exists()
    assert "random-K" in format_table(summary)
    again = run_ablate(model, tok, cfg, out, progress=False)  # everything done: resumes to the same summary
    assert again["results"] == summary["results"]
    alone = run_ablate(model, tok, cfg, tmp_path / "no-baseline", progress=False, only=["top-k2"])
    assert alone["baseline_mean"] is None and alone["n_cells"] == 2 and "2 cells" in format_table(alone)


def test_ablate_skips_a_part_another_process_is_writing(model, tok, haystack_file, tmp_path, capsys):
    import socket
    import subprocess
    import sys

    from retrieval_heads.io.rundir import LOCK, _start_time

    probe = ProbeConfig(haystack=haystack_file, needles="eval", lengths=[160], depths=[0], needles_per_cell=1)
    cfg = AblateConfig(model=ModelConfig(model="tiny-llama"), probe=probe, scores=_scores_file(tmp_path), ks=[0, 2],
                       random_seeds=1, controls=["random"], max_new_tokens=2)
    out = tmp_path / "ablate"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / "top-k2").mkdir(parents=True)
        (out / "top-k2" / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": other.pid,
                                                       "start": _start_time(other.pid)}))
        summary = run_ablate(model, tok, cfg, out, progress=False)
    finally:
        other.kill()
        other.wait()
    assert summary["missing"] == ["top-k2"] and summary["runs"] == ["k0-baseline", "random-k2-seed0"]
    assert f"skipped top-k2: {out / 'top-k2'} is being written by process {other.pid}" in capsys.readouterr().out
    assert not (out / "top-k2" / "samples.jsonl").exists()
    assert not any((out / d / LOCK).exists() for d in ("k0-baseline", "random-k2-seed0"))  # released


def test_ablate_refuses_undrawable_k_before_running(model, tok, haystack_file, tmp_path):
    cfg = AblateConfig(model=ModelConfig(model="tiny-llama"), probe=ProbeConfig(haystack=haystack_file),
                       scores=_scores_file(tmp_path), ks=[0, 11])
    with pytest.raises(RHeadsError, match="only 10"):
        run_ablate(model, tok, cfg, tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def parse_ks_(spec):
    from retrieval_heads.cli.common import parse_ks
    from retrieval_heads.cli.niah import _DEFAULT_KS

    return parse_ks(spec, _DEFAULT_KS)


def test_cli_parsers():
    from retrieval_heads.cli.niah import add_parsers

    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    a = parser.parse_args(["niah", "--mask", "random:20", "--mask-seed", "3", "--scores", "s.json", "--ablation",
                           "uniform"])
    assert (a.mask, a.mask_seed, a.seed, a.needles, a.lengths) == ("random:20", 3, 42, "eval", "1000:4000:4")
    a = parser.parse_args(["ablate", "--seed", "7", "--mask-seed", "5"])  # --seed places needles, --mask-seed draws
    assert (a.seed, a.mask_seed) == (7, 5)
    with pytest.raises(SystemExit):
        parser.parse_args(["niah", "--needle-seed", "1"])  # folded into --seed
    a = parser.parse_args(["ablate", "--scores", "s.json", "--k", "0,5,10", "--random-seeds", "3"])
    assert parse_ks_(a.k) == [0, 5, 10] and a.random_seeds == 3 and a.ablation == "zero"
    with pytest.raises(RHeadsError, match="bad --k"):
        parse_ks_("1,x")
