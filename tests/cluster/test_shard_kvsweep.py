"""`rheads kv-sweep --shard` on a tiny random Llama saved as a model folder: three shards merge into the unsharded
sweep's folder (every file equal except the "seconds" timings, records in the same order), every arm of a shard
runs the same part of the grid (each matched per-length part the same part of its length), a shard missing arms
is not finished, and a bad shard is one line that writes nothing."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from retrieval_heads.cli.main import main
from retrieval_heads.cluster.merge import merge
from retrieval_heads.heads.scores import HeadScores
from retrieval_heads.probes.needles import get_needles
from tiny import COMMON, bpe_tokenizer, word_haystack
from run_folders import files as tree, record_ids as ids

HAYSTACK = word_haystack(200)
ARMS = ["full", "retrieval-r8", "streaming-r8", "streaming-matched-r8/len160", "streaming-matched-r8/len220"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """A tiny Llama and its tokenizer saved as a model folder (context 256), a haystack and a score file."""
    root = tmp_path_factory.mktemp("kv-shard")
    needles = [f"{n.needle} {n.question}" for n in get_needles("eval")]
    template = "<context> </context> Based only on the context above, answer the question in a short sentence. " \
               "Question: Answer:"
    tok = bpe_tokenizer([HAYSTACK, template, *needles], vocab_size=800)
    torch.manual_seed(0)
    cfg = LlamaConfig(**{**COMMON, "vocab_size": len(tok)}, num_key_value_heads=2, bos_token_id=0, eos_token_id=1)
    AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    (root / "hay.txt").write_text(HAYSTACK)
    HeadScores(3, 4, {(l, h): [0.5 if (l, h) in {(0, 1), (1, 2), (2, 0)} else 0.01 * h] for l in range(3)
                      for h in range(4)}).save(root / "scores.json")
    return {"model": str(root / "model"), "haystack": str(root / "hay.txt"), "scores": str(root / "scores.json")}


def sweep_args(files) -> list[str]:
    return ["kv-sweep", "--model", files["model"], "--haystack", files["haystack"], "--scores", files["scores"],
            "--lengths", "160,220", "--depths", "0,50,100", "--needles-per-cell", "1", "--recent-windows", "8",
            "--sink", "2", "--max-new-tokens", "4", "--policies", "full,retrieval,streaming"]


@pytest.fixture(scope="module")
def shards(files, tmp_path_factory):
    root = tmp_path_factory.mktemp("kv-sweep")
    full = root / "full"
    assert main([*sweep_args(files), "--out", str(full)]) == 0
    dirs = [root / f"s{i}" for i in range(3)]
    for i, d in enumerate(dirs):
        assert main([*sweep_args(files), "--shard", f"{i}/3", "--out", str(d)]) == 0
    return full, dirs


def test_three_kv_sweep_shards_merge_into_the_unsharded_sweep(shards, tmp_path):
    full, dirs = shards
    out = merge(list(reversed(dirs)), tmp_path / "merged", run=main)
    assert tree(out) == tree(full)
    for arm in ARMS:
        assert ids(out / arm / "samples.jsonl") == ids(full / arm / "samples.jsonl"), arm
    summary = json.loads((out / "summary.json").read_text())
    assert summary["missing"] == [] and [r["n_samples"] for r in summary["arms"]] == [6, 6, 6, 6]


def test_every_arm_of_a_shard_runs_the_same_part_of_the_grid(shards):
    full, dirs = shards
    seen: list[str] = []
    for i, d in enumerate(dirs):
        assert json.loads((d / "config.json").read_text())["config"]["shard"] == f"{i}/3"
        assert json.loads((d / "streaming-r8" / "config.json").read_text())["config"]["shard"] == f"{i}/3"
        assert (d / "shard-done.json").is_file() and json.loads((d / "summary.json").read_text())["missing"] == []
        grid = ids(d / "full" / "samples.jsonl")
        assert all(ids(d / arm / "samples.jsonl") == grid for arm in ARMS[1:3]), d
        for n in (160, 220):  # each length's part: a third of its 3 samples
            assert len(ids(d / f"streaming-matched-r8/len{n}" / "samples.jsonl")) == 1
        seen += grid
    assert sorted(seen) == sorted(ids(full / "full" / "samples.jsonl"))  # the shards cover the grid once


def test_a_shard_missing_arms_is_not_finished(files, tmp_path):
    out = tmp_path / "s0"
    assert main([*sweep_args(files), "--only", "full", "--shard", "0/3", "--out", str(out)]) == 0
    assert (out / "full" / "shard.json").is_file() and not (out / "shard-done.json").exists()


def test_a_bad_shard_is_one_line_and_writes_nothing(files, tmp_path, capsys):
    out = tmp_path / "o"
    for shard, words in [("1/x", "--shard 1/x: write i/n"),
                         ("0/4", "the matched streaming parts run 3 samples each (one length): use at most 3")]:
        assert main([*sweep_args(files), "--shard", shard, "--out", str(out)]) == 2
        got = capsys.readouterr().err
        err = [line for line in got.replace("\r", "\n").splitlines() if line.startswith("rheads")]
        assert len(err) == 1 and words in err[0], err
        assert not out.exists()
        if shard == "1/x":
            assert "Loading weights" not in got  # refused before the model loads
    assert main([*sweep_args(files), "--no-matched", "--shard", "0/7", "--out", str(out)]) == 2
    assert "the run has 6 samples: use at most 6 shards" in capsys.readouterr().err and not out.exists()
