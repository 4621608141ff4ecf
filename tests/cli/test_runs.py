"""The run commands on a tiny model saved to a directory: a run that fails a check leaves nothing in --out (and the
corrected command then runs), and a busy run directory is refused with a hint naming only the command's flags."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from retrieval_heads.cli.main import main
from retrieval_heads.heads.scores import HeadScores
from retrieval_heads.io.rundir import LOCK, _start_time
from retrieval_heads.probes.needles import get_needles
from tiny import COMMON, bpe_tokenizer, word_haystack

HAYSTACK = word_haystack(200)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """A tiny Llama and its tokenizer saved as a model directory (context 256), a haystack file and a score file."""
    root = tmp_path_factory.mktemp("cli")
    needles = [f"{n.needle} {n.question}" for n in get_needles("eval") + get_needles("detect")]
    template = "<context> </context> Based only on the context above, answer the question in a short sentence. " \
               "Question: Answer:"
    tok = bpe_tokenizer([HAYSTACK, template, *needles], vocab_size=800)
    torch.manual_seed(0)
    cfg = LlamaConfig(**{**COMMON, "vocab_size": len(tok)}, num_key_value_heads=2, bos_token_id=0, eos_token_id=1)
    AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    (root / "hay.txt").write_text(HAYSTACK)
    HeadScores(3, 4, {(l, h): [0.5 if (l, h) in {(1, 2), (2, 0)} else 0.01 * h] for l in range(3)
                      for h in range(4)}).save(root / "scores.json")
    return {"model": str(root / "model"), "haystack": str(root / "hay.txt"), "scores": str(root / "scores.json")}


def _niah_args(files, *extra: str) -> list[str]:
    return ["--model", files["model"], "--haystack", files["haystack"], "--depths", "0,100", "--max-new-tokens", "3",
            *extra]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    got = capsys.readouterr()
    return code, got.out, got.err


def _error(err: str) -> str:
    lines = [l for l in err.replace("\r", "\n").splitlines() if l.startswith("rheads")]
    assert len(lines) == 1 and lines[0].startswith("rheads: error: "), err
    return lines[0]


def _empty(path) -> bool:
    return not path.exists() or not any(path.iterdir())


def test_a_failed_check_leaves_out_empty_then_the_corrected_command_runs(files, tmp_path, capsys):
    out = tmp_path / "niah"
    code, _, err = _run(["niah", *_niah_args(files, "--lengths", "99999", "--out", str(out))], capsys)
    assert code == 2 and _error(err).startswith("rheads: error: --lengths 99999: length 99999 + 3 new tokens "
                                                "exceeds the model's context of 256 tokens")
    assert _empty(out)
    code, _, err = _run(["niah", *_niah_args(files, "--lengths", "160", "--out", str(out))], capsys)
    assert code == 0, err
    assert (out / "summary.json").exists()


@pytest.mark.parametrize("argv, words", [
    (["ablate", "--k", "0,2", "--random-seeds", "1", "--lengths", "99999"], "--lengths 99999: length 99999"),
    (["ablate", "--k", "0,11", "--random-seeds", "1", "--lengths", "160"], "only 10"),
    (["niah", "--lengths", "160", "--mask", "heads:7-0"], "3 layers x 4 heads"),
    (["detect", "--lengths", "160", "--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["ablate", "--suite", "niah_single_1", "--k", "0,2", "--lengths", "160", "--shard", "0/2"],
     "--shard 0/2: `rheads ablate --suite` does not shard yet"),
])
def test_niah_ablate_and_detect_check_everything_before_out(files, tmp_path, capsys, argv, words):
    out = tmp_path / "out"
    code, _, err = _run([*argv, *_niah_args(files, "--scores", files["scores"], "--out", str(out))]
                        if argv[0] != "detect" else [*argv, *_niah_args(files, "--out", str(out))], capsys)
    assert code == 2 and words in _error(err)
    assert _empty(out)


@pytest.mark.parametrize("argv, words", [
    (["eval", "--task", "vartrack", "--limit", "2", "--max-new-tokens", "9999"], "--max-new-tokens 9999: the longest"),
    (["eval", "--task", "vartrack", "--limit", "2", "--mask", "top:99", "--scores", "SCORES"], "asks for 99 heads"),
    (["cot-experiment", "--task", "vartrack", "--limit", "2", "--modes", "cot", "--k", "0,2", "--random-seeds", "1",
      "--copy-items", "0", "--scores", "SCORES", "--max-new-tokens-cot", "9999"], "--max-new-tokens 9999"),
])
def test_eval_and_cot_experiment_check_everything_before_out(files, tmp_path, capsys, argv, words):
    out = tmp_path / "out"
    argv = [files["scores"] if x == "SCORES" else x for x in argv]
    code, _, err = _run([*argv, "--model", files["model"], "--shots", "1", "--out", str(out)], capsys)
    assert code == 2 and words in _error(err)
    assert _empty(out)


@pytest.fixture
def other_process():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield p
    p.kill()
    p.wait()


def _hold(path, pid: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "start": _start_time(pid)}))


def test_a_busy_run_names_only_the_flags_of_its_command(files, tmp_path, capsys, other_process):
    out = tmp_path / "detect"
    _hold(out, other_process.pid)
    code, _, err = _run(["detect", *_niah_args(files, "--lengths", "160", "--out", str(out))], capsys)
    line = _error(err)
    assert code == 2 and f"is being written by process {other_process.pid}: wait for it" in line
    assert "--only" not in line  # detect has no --only
    out = tmp_path / "ablate"
    _hold(out / "top-k2", other_process.pid)
    code, stdout, err = _run(["ablate", "--k", "0,2", "--random-seeds", "1", "--controls", "random",
                              *_niah_args(files, "--lengths", "160", "--scores", files["scores"], "--out", str(out))],
                             capsys)
    assert code == 0, err
    assert f"skipped top-k2: {out / 'top-k2'} is being written by process {other_process.pid}\n" in stdout
    assert "1 parts were being written by other processes" in stdout and "--only" in stdout
