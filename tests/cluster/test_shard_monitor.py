"""`rheads monitor bench --shard i/n` on the tiny random model: three shards merge into the unsharded run's folder
(records in the same order, arrays/ of every item, summary.json and tables.md recomputed over all items, the
figures), each shard is a run folder of its own with its shard in the config, the items are split by prompt
length, and a bad shard is refused in one line before --out is touched."""

from __future__ import annotations

import json

import pytest

from retrieval_heads.cli.main import main
from retrieval_heads.cluster.merge import merge
from retrieval_heads.cluster.shard import partition
from shard_check import HAYSTACK, files, record_ids, save_tiny_model, sharded

DROP = {"seconds", "run"}  # timings, and summary.json's "run": the folder's own path


@pytest.fixture(scope="module")
def bench_args(tmp_path_factory):
    d = save_tiny_model(tmp_path_factory.mktemp("tiny-bench-model"))
    (d / "hay.txt").write_text(HAYSTACK)
    return ["monitor", "bench", "--model", str(d), "--scores", str(d / "scores.json"), "--haystack",
            str(d / "hay.txt"), "--lengths", "150,240", "--depths", "0,50,100", "--limit", "8",
            "--max-new-tokens", "5", "--random-seeds", "1"]


@pytest.fixture(scope="module")
def bench_shards(tmp_path_factory, bench_args):
    return sharded(tmp_path_factory.mktemp("bench"), bench_args)


def test_three_bench_shards_merge_into_the_unsharded_run(bench_shards, tmp_path):
    full, dirs = bench_shards
    out = merge(list(reversed(dirs)), tmp_path / "merged", run=main)
    assert files(out, DROP) == files(full, DROP)
    assert record_ids(out / "items.jsonl") == record_ids(full / "items.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["answers"] == 8 and summary["subsets"]  # the AUROC tables are over every item
    assert (out / "tables.md").read_bytes() == (full / "tables.md").read_bytes()
    assert sorted(p.name for p in (out / "arrays").iterdir()) == sorted(p.name for p in (full / "arrays").iterdir())


def test_each_bench_shard_is_a_run_folder_split_by_prompt_length(bench_shards):
    full, dirs = bench_shards
    recs = {r["id"]: r for r in map(json.loads, (full / "items.jsonl").read_text().splitlines()[1:])}
    order = list(recs)
    parts = partition([recs[i]["length"] for i in order], 3)
    for i, d in enumerate(dirs):
        assert json.loads((d / "config.json").read_text())["config"]["shard"] == f"{i}/3"
        assert json.loads((d / "shard-done.json").read_text())["shard"] == f"{i}/3"
        assert record_ids(d / "items.jsonl") == [order[j] for j in parts[i]]
        assert json.loads((d / "summary.json").read_text())["answers"] == len(parts[i])
        assert (d / "tables.md").is_file() and len(list((d / "arrays").iterdir())) == len(parts[i])
    lengths = [sum(recs[order[j]]["length"] for j in p) for p in parts]
    assert max(lengths) - min(lengths) <= 240  # balanced by length, not by count alone


def test_a_bad_bench_shard_is_one_line_and_writes_nothing(bench_args, tmp_path, capsys):
    for spec, msg in (("3/3", "must be below n"), ("0/9", "the run has 8 items: use at most 8 shards")):
        out = tmp_path / spec.replace("/", "-")
        assert main([*bench_args, "--shard", spec, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and msg in err
        assert err.strip().splitlines()[-1].startswith(f"rheads: error: --shard {spec}: ")  # after the loading bar
        assert not out.exists()
