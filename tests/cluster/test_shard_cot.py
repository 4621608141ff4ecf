"""`rheads cot-experiment --shard` (and `rheads eval --shard`) on a tiny random Llama saved as a model folder: three
shards merge into the unsharded run's folder (every file equal except the "seconds" timings, records in the same
order), every part of a shard runs the same part of its items, the copy analysis included, and a bad shard is
one line that writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from retrieval_heads.cli.main import main
from retrieval_heads.cluster.merge import merge
from retrieval_heads.heads.scores import HeadScores
from tiny import COMMON, bpe_tokenizer, word_haystack
from run_folders import files as tree, record_ids as ids



@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """A tiny Llama and its tokenizer saved as a model folder, and a score file of its shape."""
    root = tmp_path_factory.mktemp("cot-shard")
    tok = bpe_tokenizer([word_haystack(100), "Question: Answer: The answer is 0123456789 = + - x y z"],
                        vocab_size=600)
    torch.manual_seed(0)
    cfg = LlamaConfig(**{**COMMON, "vocab_size": len(tok), "max_position_embeddings": 1024},
                      num_key_value_heads=2, bos_token_id=0, eos_token_id=1)
    AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    HeadScores(3, 4, {(l, h): [0.5 if (l, h) in {(1, 2), (2, 0)} else 0.01 * h] for l in range(3)
                      for h in range(4)}).save(root / "scores.json")
    return {"model": str(root / "model"), "scores": str(root / "scores.json")}


def cot_args(files) -> list[str]:
    return ["cot-experiment", "--model", files["model"], "--scores", files["scores"], "--task", "vartrack",
            "--limit", "5", "--closedbook-limit", "4", "--shots", "1", "--k", "0,2", "--random-seeds", "1",
            "--max-new-tokens-cot", "6", "--max-new-tokens-direct", "3", "--max-new-tokens-closedbook", "3",
            "--copy-items", "3", "--batch-size", "1"]


def run_shards(args: list[str], root: Path, n: int = 3) -> tuple[Path, list[Path]]:
    full = root / "full"
    assert main([*args, "--out", str(full)]) == 0
    dirs = [root / f"s{i}" for i in range(n)]
    for i, d in enumerate(dirs):
        assert main([*args, "--shard", f"{i}/{n}", "--out", str(d)]) == 0
    return full, dirs


@pytest.fixture(scope="module")
def cot_shards(files, tmp_path_factory):
    return run_shards(cot_args(files), tmp_path_factory.mktemp("cot"))


def test_three_cot_shards_merge_into_the_unsharded_run(cot_shards, tmp_path):
    full, dirs = cot_shards
    out = merge(list(reversed(dirs)), tmp_path / "merged", run=main)
    assert tree(out) == tree(full)
    for rel in ("cot/k0-baseline/items.jsonl", "closedbook/top-k2/items.jsonl", "copy_share.jsonl"):
        assert ids(out / rel) == ids(full / rel), rel
    assert len(ids(out / "cot/k0-baseline/items.jsonl")) == 5 and len(ids(out / "copy_share.jsonl")) == 3


def test_every_part_of_a_shard_runs_the_same_part_of_its_items(cot_shards):
    _, dirs = cot_shards
    seen: dict[str, list[str]] = {}
    for i, d in enumerate(dirs):
        assert json.loads((d / "config.json").read_text())["config"]["shard"] == f"{i}/3"
        assert json.loads((d / "cot/top-k2/config.json").read_text())["config"]["shard"] == f"{i}/3"
        assert (d / "shard-done.json").is_file() and (d / "summary.json").is_file()
        for mode in ("cot", "direct", "closedbook"):
            parts = [ids(p / "items.jsonl") for p in sorted((d / mode).iterdir())]
            assert all(p == parts[0] for p in parts) and parts[0], (d, mode)  # k0, top-k2, random-k2-seed0 alike
            seen.setdefault(mode, []).extend(parts[0])
        seen.setdefault("copy", []).extend(ids(d / "copy_share.jsonl"))
        assert json.loads((d / "shard.json").read_text())["jsonl"] == "copy_share.jsonl"
    assert {k: sorted(v) for k, v in seen.items()} == {k: sorted(set(v)) for k, v in seen.items()}  # no overlap
    assert [len(seen[k]) for k in ("cot", "direct", "closedbook", "copy")] == [5, 5, 4, 3]


def test_a_shard_missing_a_part_is_not_finished(files, tmp_path):
    out = tmp_path / "s0"
    assert main([*cot_args(files), "--modes", "cot", "--only", "cot/k0-baseline,cot/top-k2,cot/random-k2-seed0",
                 "--shard", "0/3", "--out", str(out)]) == 0
    assert (out / "summary.json").is_file() and not (out / "shard-done.json").exists()  # the copy part is missing


def test_a_bad_shard_is_one_line_and_writes_nothing(files, tmp_path, capsys):
    out = tmp_path / "o"
    for shard, words in [("4/4", "--shard 4/4: i counts from 0"), ("0/4", "the copy analysis has 3 items"),
                         ("0/5", "the run has 4 items: use at most 4 shards")]:
        assert main([*cot_args(files), "--shard", shard, "--out", str(out)]) == 2
        got = capsys.readouterr().err
        err = [line for line in got.replace("\r", "\n").splitlines() if line.startswith("rheads")]
        assert len(err) == 1 and words in err[0], err
        assert not out.exists()
        if shard == "4/4":
            assert "Loading weights" not in got  # refused before the model loads


def test_eval_shards_merge_into_the_unsharded_run(files, tmp_path):
    args = ["eval", "--model", files["model"], "--task", "vartrack", "--limit", "5", "--shots", "1",
            "--max-new-tokens", "4", "--mask", "top:2", "--scores", files["scores"], "--ablation", "mean",
            "--mean-ref-prompts", "2"]
    full, dirs = run_shards(args, tmp_path)
    out = merge(dirs, tmp_path / "merged", run=main)
    assert tree(out) == tree(full) and ids(out / "items.jsonl") == ids(full / "items.jsonl")
    assert json.loads((dirs[1] / "config.json").read_text())["config"]["shard"] == "1/3"
