"""`rheads launch ray` on a local Ray (2 CPUs) and a tiny model saved to a directory: two shards of detect, the
first attempt of one killed (SIGKILL) after two records, merge into the unsharded run's scores.json; the killed
shard is retried and resumes (its first attempt's records kept, byte for byte); a command that a shard refuses
is one line, not retried, and writes nothing. Without Ray, the launcher says how to install it."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from retrieval_heads.cli.main import build_parser, main
from retrieval_heads.cluster.launch import plan
from retrieval_heads.errors import RHeadsError
from run_folders import files
from retrieval_heads.probes.needles import get_needles
from tiny import COMMON, bpe_tokenizer, word_haystack

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="pip install 'retrieval-heads[ray]' (scripts/setup.sh --ray)")


@pytest.fixture(scope="module")
def detect_args(tmp_path_factory) -> list[str]:
    """detect on a tiny Llama saved with its tokenizer (context 256) and a word haystack: 6 samples."""
    root = tmp_path_factory.mktemp("tiny")
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


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
    yield
    ray.shutdown()


def _lines(path) -> list[str]:
    return path.read_text().splitlines()


@needs_ray
def test_two_shards_one_killed_once_merge_into_the_unsharded_run(detect_args, local_ray, tmp_path):
    from retrieval_heads.cluster.onray import launch_ray

    full, out = tmp_path / "full", tmp_path / "D"
    assert main([*detect_args, "--out", str(full)]) == 0
    launch = plan([*detect_args, "--out", str(out)], 2, build_parser())
    result = launch_ray(launch, run=main, cpus=1, retries=1, poll=0.2, progress=False, kill_for_tests=(1, 2))

    assert result["attempts"] == {0: 1, 1: 2}  # shard 1 retried once
    assert (out / "scores.json").read_bytes() == (full / "scores.json").read_bytes()
    # every file but the timings and the launch's shards/, the records in the unsharded order
    assert files(out, skip=("shards",)) == files(full, skip=("shards",))
    assert len(_lines(out / "samples.jsonl")) == 7  # header + 6 samples
    shard = out / "shards" / "shard-1"
    at_kill, final = _lines(shard / "samples.jsonl.at-kill"), _lines(shard / "samples.jsonl")
    assert len(at_kill) == 3 and final[:3] == at_kill  # the first attempt's 2 records kept as written
    assert len(final) == 4  # so the retry decoded only the third
    log = (out / "shards" / "shard-1.log").read_text()
    assert "== attempt 1 ended: killed by signal 9" in log and "== attempt 2 ended: status 0" in log
    assert "1 threads" in log
    assert not list(out.rglob(".lock"))


@needs_ray
def test_a_command_a_shard_refuses_is_one_line_not_retried_and_writes_nothing(detect_args, local_ray, tmp_path,
                                                                              capsys):
    out = tmp_path / "D"
    bad = [x if x != "160" else "99999" for x in detect_args]
    assert main(["launch", "ray", "--shards", "1", "--", *bad, "--out", str(out)]) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("rheads")]
    assert len(err) == 1 and "refused its command: --lengths 99999: length 99999" in err[0], err
    assert not out.exists()


def test_without_ray_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    from retrieval_heads.cluster.onray import launch_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    launch = plan(["detect", "--out", str(tmp_path / "D")], 2, build_parser())
    with pytest.raises(RHeadsError, match=r"Ray is not installed: pip install 'retrieval-heads\[ray\]' or "
                                          r"scripts/setup.sh --ray"):
        launch_ray(launch, run=main)
    assert not (tmp_path / "D").exists()
