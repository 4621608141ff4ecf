"""`rheads suite run --shard` on a tiny random Llama saved as a model folder (chat template, context 1024): three
shards merge into the unsharded run's folder (every file equal except the "seconds" timings, predictions in the
same order), each shard's folder is a run of its own part, and a bad shard is one line that writes nothing."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from evals.suite.suite_helpers import essay_file, fake_qa, tokenizer
from retrieval_heads.cli.main import main
from retrieval_heads.cluster.merge import merge
from tiny import COMMON
from run_folders import files as tree, record_ids as ids



@pytest.fixture(scope="module")
def args(tmp_path_factory) -> list[str]:
    """`rheads suite run` on a tiny chat Llama saved as a model folder, with an essay and a fake QA file."""
    root = tmp_path_factory.mktemp("suite-shard")
    tok = tokenizer(chat=True)
    torch.manual_seed(0)
    cfg = LlamaConfig(**{**COMMON, "vocab_size": len(tok), "max_position_embeddings": 1024},
                      num_key_value_heads=2, bos_token_id=0, eos_token_id=1)
    AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    qa, held = fake_qa(root)
    return ["suite", "run", "--model", str(root / "model"), "--haystack", essay_file(root), "--qa-data", qa,
            "--heldout", held, "--tasks", "niah_single_1,niah_single_2,qa_2", "--lengths", "400,600", "--samples", "2",
            "--max-new-tokens", "3"]


@pytest.fixture(scope="module")
def shards(args, tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    full = root / "full"
    assert main([*args, "--out", str(full)]) == 0
    dirs = [root / f"s{i}" for i in range(3)]
    for i, d in enumerate(dirs):
        assert main([*args, "--shard", f"{i}/3", "--out", str(d)]) == 0
    return full, dirs


def test_three_suite_shards_merge_into_the_unsharded_run(shards, tmp_path):
    full, dirs = shards
    out = merge(list(reversed(dirs)), tmp_path / "merged", run=main)
    assert tree(out) == tree(full)
    assert ids(out / "predictions.jsonl") == ids(full / "predictions.jsonl")
    assert json.loads((out / "summary.json").read_text())["n_samples"] == 12


def test_each_shard_is_a_run_of_its_part_with_its_shard_in_the_config(shards):
    full, dirs = shards
    seen = []
    data_sha = json.loads((full / "config.json").read_text())["data_sha"]
    for i, d in enumerate(dirs):
        config = json.loads((d / "config.json").read_text())
        assert config["config"]["shard"] == f"{i}/3" and config["data_sha"] == data_sha  # the whole run's prompts
        mine = ids(d / "predictions.jsonl")
        assert json.loads((d / "shard.json").read_text())["mine"] == mine and len(mine) == 4  # balanced
        assert json.loads((d / "summary.json").read_text())["n_samples"] == 4 and (d / "shard-done.json").is_file()
        seen += mine
    assert sorted(seen) == sorted(ids(full / "predictions.jsonl"))


def test_a_bad_shard_is_one_line_and_writes_nothing(args, tmp_path, capsys):
    out = tmp_path / "o"
    for shard, words in [("3/3", "--shard 3/3: i counts from 0"), ("0/13", "the run has 12 samples: use at most 12")]:
        assert main([*args, "--shard", shard, "--out", str(out)]) == 2
        got = capsys.readouterr().err
        err = [line for line in got.replace("\r", "\n").splitlines() if line.startswith("rheads")]
        assert len(err) == 1 and words in err[0], err
        assert not out.exists()
        if shard == "3/3":
            assert "Loading weights" not in got  # refused before the model loads
