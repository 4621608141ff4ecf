"""`rheads launch slurm`, and the checks every launcher shares (`cluster/launch.py`).

- The generated array and merge scripts for an example command: their #SBATCH lines, the shard's command with
  $SLURM_ARRAY_TASK_ID, the retry loop, the merge job's command, the printed sbatch lines; nothing is
  submitted without --submit, and --submit calls sbatch twice (the merge after the array) (a fake sbatch).
- The array script runs as Slurm would run it (bash, SLURM_ARRAY_TASK_ID set) on a tiny model, one task killed
  once and rerun by the script's loop; then the merge job's command (run in this process, to save a start-up):
  D holds the unsharded run's files.
- Bad input is one line (exit 2) and writes nothing, for both launchers: no command, an unshardable or unknown
  subcommand, --shards 0, --shard, --overwrite or no --out in the command, a bad flag, an --out that holds
  something else.
- The driver's progress count reads manifests and complete records only.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from retrieval_heads.cli.main import build_parser, main
from retrieval_heads.cluster.launch import KILL_AFTER, Progress, plan
from retrieval_heads.probes.needles import get_needles
from tiny import COMMON, bpe_tokenizer, word_haystack

EXAMPLE = ["detect", "--model", "smollm2-135m", "--lengths", "500,1000", "--depths", "0:100:6", "--out"]


def _error(capsys) -> str:
    lines = [l for l in capsys.readouterr().err.replace("\r", "\n").splitlines() if l.startswith("rheads")]
    assert len(lines) == 1 and lines[0].startswith("rheads: error: "), lines
    return lines[0]


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch):
    """An sbatch on PATH that logs its arguments and answers job id 4242 (as --parsable does, with a cluster)."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "sbatch-calls"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "4242;main"\n')
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_the_scripts_of_an_example_command(tmp_path, monkeypatch, capsys, fake_sbatch):
    monkeypatch.setenv("RHEADS_CACHE", "/shared/rheads cache")
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    out = tmp_path / "D"
    assert main(["launch", "slurm", "--shards", "3", "--partition", "gpu", "--gpus-per-shard", "1", "--time",
                 "2:00:00", "--cpus-per-shard", "4", "--sbatch=--account=lab", "--", *EXAMPLE, str(out)]) == 0
    printed = capsys.readouterr().out
    shards, merge = out / "shards" / "slurm-shards.sbatch", out / "shards" / "slurm-merge.sbatch"
    s = shards.read_text().splitlines()
    for line in ["#!/bin/bash", "#SBATCH --job-name=rheads-detect", "#SBATCH --array=0-2",
                 f"#SBATCH --output={out}/shards/shard-%a.log", "#SBATCH --open-mode=append",
                 "#SBATCH --cpus-per-task=4", "#SBATCH --partition=gpu", "#SBATCH --gres=gpu:1",
                 "#SBATCH --time=2:00:00", "#SBATCH --account=lab", f"cd {os.getcwd()}",
                 "export OMP_NUM_THREADS=4 MKL_NUM_THREADS=4", "export RHEADS_CACHE='/shared/rheads cache'",
                 "i=$SLURM_ARRAY_TASK_ID", "for attempt in $(seq 1 3); do",
                 f"  {sys.executable} -m retrieval_heads.cli.shard_main detect --model smollm2-135m --lengths 500,1000 "
                 f'--depths 0:100:6 --shard "$i/3" --out {out}/shards/shard-"$i" && exit 0',
                 '  [ "$status" = 2 ] && exit 2  # the command refused its input (its one-line error is above)']:
        assert line in s, line
    assert s.index("#SBATCH --array=0-2") < s.index("set -uo pipefail")  # sbatch reads #SBATCH lines up to a command
    m = merge.read_text().splitlines()
    assert "#SBATCH --array=0-2" not in m and "#SBATCH --gres=gpu:1" in m and "#SBATCH --partition=gpu" in m
    assert f"#SBATCH --output={out}/shards/merge.log" in m
    assert m[-1] == (f"exec {sys.executable} -m retrieval_heads.cli.main launch slurm --merge-only --shards 3 -- "
                     f"detect --model smollm2-135m --lengths 500,1000 --depths 0:100:6 --out {out}")
    assert f"jid=$(sbatch --parsable {shards})\nsbatch --dependency=afterok:${{jid%%;*}} {merge}" in printed
    assert not fake_sbatch.exists()  # nothing submitted
    assert json.loads((out / "shards" / "launch.json").read_text())["shards"] == 3
    assert main(["launch", "slurm", "--shards", "3", "--submit", "--", *EXAMPLE, str(out)]) == 0
    assert fake_sbatch.read_text().splitlines() == [f"--parsable {shards}",
                                                    f"--parsable --dependency=afterok:4242 {merge}"]
    assert "submitted job array 4242 and merge job 4242" in capsys.readouterr().out


def test_submit_without_sbatch_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["launch", "slurm", "--shards", "2", "--submit", "--", *EXAMPLE, str(tmp_path / "D")]) == 2
    assert "sbatch is not on PATH" in _error(capsys)
    assert not (tmp_path / "D").exists()


@pytest.fixture(scope="module")
def tiny_detect(tmp_path_factory) -> list[str]:
    """detect on a tiny Llama saved with its tokenizer (context 256) and a word haystack: 6 samples."""
    root = tmp_path_factory.mktemp("tiny-slurm")
    hay = word_haystack(200)
    template = "<context> </context> Based only on the context above, answer the question in a short sentence. " \
               "Question: Answer:"
    tok = bpe_tokenizer([hay, template, *[f"{n.needle} {n.question}" for n in get_needles("detect")]], vocab_size=800)
    torch.manual_seed(0)
    cfg = LlamaConfig(**{**COMMON, "vocab_size": len(tok)}, num_key_value_heads=2, bos_token_id=0, eos_token_id=1)
    AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    (root / "hay.txt").write_text(hay)
    return ["detect", "--model", str(root / "model"), "--haystack", str(root / "hay.txt"), "--lengths", "160",
            "--depths", "0,50,100", "--needles-per-cell", "2", "--max-new-tokens", "3"]


def test_the_scripts_run_as_slurm_runs_them_and_merge_into_the_unsharded_run(tiny_detect, tmp_path, capsys):
    full, out = tmp_path / "full", tmp_path / "D"
    assert main([*tiny_detect, "--out", str(full)]) == 0
    assert main(["launch", "slurm", "--shards", "2", "--", *tiny_detect, "--out", str(out)]) == 0
    shards, merge = out / "shards" / "slurm-shards.sbatch", out / "shards" / "slurm-merge.sbatch"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    tasks = [subprocess.Popen(["bash", str(shards)], env={**env, "SLURM_ARRAY_TASK_ID": str(i),
                                                          **({KILL_AFTER: "2"} if i == 1 else {})},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    logs = [t.communicate()[0] for t in tasks]
    assert [t.returncode for t in tasks] == [0, 0], logs
    assert "== attempt 1 ended: status 137; rerunning resumes its records" in logs[1]  # killed, rerun by the loop
    assert "== attempt 2 on" in logs[1] and "== attempt 2" not in logs[0]
    exec_line = shlex.split(merge.read_text().splitlines()[-1])  # the merge job's command, run here (faster)
    assert exec_line[:4] == ["exec", sys.executable, "-m", "retrieval_heads.cli.main"]
    assert main(exec_line[4:]) == 0
    assert (out / "scores.json").read_bytes() == (full / "scores.json").read_bytes()
    ids = [[json.loads(l).get("id") for l in (d / "samples.jsonl").read_text().splitlines()] for d in (out, full)]
    assert ids[0] == ids[1] and len(ids[0]) == 7
    assert json.loads((out / "config.json").read_text())["config"] == \
        json.loads((full / "config.json").read_text())["config"]


@pytest.mark.parametrize("launcher", ["ray", "slurm"])
@pytest.mark.parametrize("shards, command, words", [
    ("3", [], "give the command to shard after --"),
    ("3", ["merge", "a", "--out", "OUT"], "`rheads merge` cannot be sharded: launch one of detect, niah, ablate"),
    ("3", ["models"], "`rheads models` cannot be sharded"),
    ("3", ["launch", "ray", "--shards", "2", "--", "detect", "--out", "OUT"], "`rheads launch ray` cannot be sharded"),
    ("3", ["detecd", "--out", "OUT"], "names no rheads subcommand (detecd; give one of detect"),
    ("0", ["detect", "--out", "OUT"], "--shards 0: must be at least 1"),
    ("3", ["detect", "--shard", "0/3", "--out", "OUT"], "drop --shard 0/3 from the command after --"),
    ("3", ["detect", "--overwrite", "--out", "OUT"], "drop --overwrite from the command after --"),
    ("3", ["detect", "--lengths", "200"], "the command after -- needs --out D"),
    ("3", ["detect", "--no-such-flag", "--out", "OUT"], "not a valid rheads command: unrecognized arguments: "
                                                         "--no-such-flag"),
])
def test_bad_launches_are_one_line_and_write_nothing(launcher, shards, command, words, tmp_path, capsys):
    out = tmp_path / "D"
    command = [str(out) if w == "OUT" else w for w in command]
    assert main(["launch", launcher, "--shards", shards, "--", *command]) == 2
    assert words in _error(capsys)
    assert not out.exists()


@pytest.mark.parametrize("launcher", ["ray", "slurm"])
def test_an_out_that_holds_something_else_is_refused(launcher, tmp_path, capsys):
    out = tmp_path / "D"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["launch", launcher, "--shards", "2", "--", "detect", "--out", str(out)]) == 2
    assert "holds files that are not a launch's" in _error(capsys)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    other = tmp_path / "E"
    assert main(["launch", "slurm", "--shards", "2", "--", "detect", "--lengths", "200", "--out", str(other)]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in (other / "shards").iterdir())
    assert main(["launch", launcher, "--shards", "3", "--", "detect", "--lengths", "200", "--out", str(other)]) == 2
    assert "holds a launch of another run (rheads detect --lengths 200 in 2 shards)" in _error(capsys)
    assert sorted(p.name for p in (other / "shards").iterdir()) == before


def test_bad_slurm_options_and_an_unfinished_merge_are_one_line(tmp_path, capsys):
    out = str(tmp_path / "D")
    assert main(["launch", "slurm", "--shards", "2", "--sbatch", "account=lab", "--", "detect", "--out", out]) == 2
    assert "--sbatch account=lab: give one sbatch option a time" in _error(capsys)
    assert main(["launch", "slurm", "--shards", "2", "--retries", "-1", "--", "detect", "--out", out]) == 2
    assert "--retries -1: must be at least 0" in _error(capsys)
    assert not (tmp_path / "D").exists()
    assert main(["launch", "slurm", "--shards", "2", "--merge-only", "--", "detect", "--out", out]) == 2
    assert "shards/shard-0 does not exist" in _error(capsys)


def test_shardable_subcommands_come_from_the_parser():
    from retrieval_heads.cluster.launch import shardable

    names = shardable(build_parser())
    assert {"detect", "niah", "ablate"} <= set(names) and "merge" not in names and "launch ray" not in names
    launch = plan(["detect", "--lengths", "200", "--out=runs/x"], 2, build_parser())
    assert launch.base == ("detect", "--lengths", "200") and launch.out == (launch.out.cwd() / "runs/x")
    assert launch.shard_argv(1) == ["detect", "--lengths", "200", "--shard", "1/2", "--out",
                                    str(launch.out / "shards" / "shard-1")]


def test_progress_counts_listed_units_with_complete_records(tmp_path):
    launch = plan(["detect", "--out", str(tmp_path / "D")], 2, build_parser())
    d0 = launch.shard_dir(0)
    d0.mkdir(parents=True)
    (d0 / "shard.json").write_text(json.dumps({"ids": ["a", "b", "c", "d"], "mine": ["a", "c"],
                                               "jsonl": "samples.jsonl", "kind": "sample"}))
    (d0 / "samples.jsonl").write_text('{"type": "header"}\n{"type": "sample", "id": "a"}\n{"type": "sam')
    count = Progress(launch)
    assert count() == (1, 2)  # shard 1 has no manifest yet; the torn record is not counted
    with (d0 / "samples.jsonl").open("a") as f:
        f.write('ple", "id": "c"}\n')
    assert count() == (2, 2)
