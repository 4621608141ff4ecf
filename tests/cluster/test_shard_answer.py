"""`rheads answer --shard i/n` on the tiny random model: three shards merge into the unsharded run's folder
(records in the same order: the items in the input's order, each item's methods in the command's order; the
summary recomputed over all items), each shard is a run folder of its own with its shard in the config, the items
are split by prompt length in tokens, and a shard's folder refuses a second command's methods."""

from __future__ import annotations

import json

import pytest

from retrieval_heads.cli.main import main
from retrieval_heads.cluster.merge import merge
from retrieval_heads.cluster.shard import partition
from shard_check import HAYSTACK, files, record_ids, save_tiny_model, sharded

DROP = {"seconds", "prefill_seconds", "mean_seconds"}  # the records' timings and the summary's mean of them
METHODS = ["greedy", "cad", "abstain"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = save_tiny_model(tmp_path_factory.mktemp("tiny-answer-model"))
    sentences = [s.strip() + "." for s in HAYSTACK.split(".") if s.strip()]
    rows = [{"id": f"q{i}", "context": " ".join(sentences[i:i + n]), "question": "Where did the children laugh?",
             "answers": [sentences[i].split()[1]]} for i, n in enumerate((2, 7, 3, 5, 1))]
    (d / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["answer", "--model", str(d), "--scores", str(d / "scores.json"), "--input", str(d / "items.jsonl"),
            "--methods", ",".join(METHODS), "--max-new-tokens", "5"]
    return d, rows, args


@pytest.fixture(scope="module")
def answer_shards(tmp_path_factory, setup):
    return sharded(tmp_path_factory.mktemp("answer"), setup[2])


def _records(path):
    return [r for r in map(json.loads, path.read_text().splitlines()) if r.get("type") == "answer"]


def test_three_answer_shards_merge_into_the_unsharded_run(answer_shards, setup, tmp_path):
    full, dirs = answer_shards
    out = merge(list(reversed(dirs)), tmp_path / "merged", run=main)
    assert files(out, DROP) == files(full, DROP)
    pairs = [(r["id"], r["method"]) for r in _records(out / "answers.jsonl")]
    assert pairs == [(r["id"], r["method"]) for r in _records(full / "answers.jsonl")]
    assert pairs == [(row["id"], m) for row in setup[1] for m in METHODS]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_items"] == 5 and all(s["n"] == 5 for s in summary["methods"].values())


def test_each_answer_shard_is_a_run_folder_split_by_prompt_tokens(answer_shards, setup):
    from retrieval_heads.answer.loop import Answerer
    from retrieval_heads.models.loading import load_model

    d, rows, _ = setup
    model, tok = load_model(str(d))
    mon = Answerer(model, tok, str(d / "scores.json")).monitor
    tokens = [mon.prompt(r["context"], r["question"], 5).n for r in rows]
    parts = partition(tokens, 3)
    assert parts != partition([1] * len(rows), 3)  # the lengths decide, not the count alone
    for i, sd in enumerate(answer_shards[1]):
        assert json.loads((sd / "config.json").read_text())["config"]["shard"] == f"{i}/3"
        mine = [rows[j]["id"] for j in parts[i]]
        assert json.loads((sd / "shard.json").read_text())["mine"] == mine
        assert [(r["id"], r["method"]) for r in _records(sd / "answers.jsonl")] == \
            [(u, m) for u in mine for m in METHODS]
        assert json.loads((sd / "summary.json").read_text())["n_items"] == len(mine)
    assert record_ids(answer_shards[0] / "answers.jsonl") == [r["id"] for r in rows for _ in METHODS]


def test_a_shard_folder_refuses_a_second_commands_methods(answer_shards, setup, capsys):
    sd = answer_shards[1][0]
    before = (sd / "answers.jsonl").read_text()
    args = [*setup[2][:-4], "--methods", "decore", "--max-new-tokens", "5"]
    assert main([*args, "--shard", "0/3", "--out", str(sd)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"rheads: error: --out {sd}: holds answers by greedy,cad,abstain,decore") and \
        "--methods greedy,cad,abstain,decore" in err
    assert (sd / "answers.jsonl").read_text() == before
    assert main([*setup[2], "--shard", "0/3", "--out", str(sd)]) == 0  # the same command resumes
    assert (sd / "answers.jsonl").read_text() == before


def test_a_bad_answer_shard_is_one_line_and_writes_nothing(setup, tmp_path, capsys):
    out = tmp_path / "bad"
    assert main([*setup[2], "--shard", "1/0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "rheads: error: --shard 1/0: i counts from 0 and must be below n: the shards of 1 are " \
        "0/1 .. 0/1" and not out.exists()
    assert main([*setup[2], "--shard", "0/6", "--out", str(out)]) == 2
    assert "the run has 5 items: use at most 5 shards" in capsys.readouterr().err and not out.exists()
