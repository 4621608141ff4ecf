"""scripts/intrinsic_experiment.py on a tiny random Llama with an offline tokenizer: the RoPE change takes
effect, training resumes bit for bit after an interruption, and the whole pipeline writes its summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from retrieval_heads.cli.flags import cli_message
from retrieval_heads.errors import RHeadsError
from retrieval_heads.probes.needles import get_needles
from retrieval_heads.io.jsonl import read_jsonl
from tiny import COMMON, bpe_tokenizer, word_haystack

from retrieval_heads.cli.intrinsic import build_config
from retrieval_heads.cli.main import build_parser
from retrieval_heads.studies.intrinsic import train as train_mod
from retrieval_heads.studies.intrinsic.config import STAGES
from retrieval_heads.studies.intrinsic.stages import run_intrinsic


def run(argv: list[str]) -> dict:
    """`rheads intrinsic ARGV`, raising what the command would print as one line."""
    a = build_parser().parse_args(["intrinsic", *argv])
    stages = [x.strip() for x in a.stages.split(",") if x.strip()]
    return run_intrinsic(build_config(a), Path(a.out), stages, progress=False)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> tuple[Path, Path]:
    """A saved tiny Llama + BPE tokenizer, and a haystack .txt file."""
    root = tmp_path_factory.mktemp("intrinsic")
    text = word_haystack(300)
    (root / "hay.txt").write_text(text)
    tok = bpe_tokenizer([text, *(f"{n.needle} {n.question}" for n in get_needles("eval") + get_needles("detect")),
                         "Based only on the context above, answer the question. Question: Answer:"], vocab_size=600)
    torch.manual_seed(0)
    cfg = LlamaConfig(**{**COMMON, "vocab_size": len(tok), "max_position_embeddings": 1024}, num_key_value_heads=2,
                      bos_token_id=0, eos_token_id=1)
    AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    return root / "model", root / "hay.txt"


def _args(model: Path, hay: Path, out: Path, *extra: str) -> list[str]:
    return ["--model", str(model), "--haystack", str(hay), "--out", str(out), "--seq-len", "64", "--steps", "6",
            "--warmup", "1", "--save-every", "2", "--lr", "1e-3", "--no-progress", *extra]


@pytest.mark.parametrize("rope, ratio", [("linear:4", (4.0, 4.0)), ("theta:10", (1.0, 10 ** (14 / 16)))])
def test_extend_changes_rotary_and_logits(tiny_dir, tmp_path, rope, ratio):
    model, hay = tiny_dir
    run(_args(model, hay, tmp_path, "--rope", rope, "--stages", "extend"))
    info = json.loads((tmp_path / "extended" / "rheads-extend.json").read_text())
    (lo, hi), = info["inv_freq_ratio"].values()
    assert (lo, hi) == pytest.approx(ratio, rel=1e-4)  # theta: inv_freq_i ratio 10^(2i/d), head_dim d = 16
    assert info["max_position_embeddings"] == [1024, 4096] and info["max_abs_logit_change"] > 1e-4


def test_train_resumes_bit_for_bit(tiny_dir, tmp_path, monkeypatch):
    model, hay = tiny_dir
    run(_args(model, hay, tmp_path / "a", "--stages", "extend,train"))
    real = train_mod.batch_at

    def interrupt_fifth_step(ids, step, tc):
        if step == 4:  # after the step-4 checkpoint is written
            raise KeyboardInterrupt
        return real(ids, step, tc)

    monkeypatch.setattr(train_mod, "batch_at", interrupt_fifth_step)
    with pytest.raises(KeyboardInterrupt):
        run(_args(model, hay, tmp_path / "b", "--stages", "extend,train"))
    monkeypatch.setattr(train_mod, "batch_at", real)
    assert [r["step"] for r in read_jsonl(tmp_path / "b" / "train" / "log.jsonl")] == [1, 2, 3, 4]
    run(_args(model, hay, tmp_path / "b", "--stages", "extend,train"))
    a, b = (read_jsonl(tmp_path / d / "train" / "log.jsonl") for d in "ab")
    assert [(r["step"], r["loss"], r["lr"]) for r in a] == [(r["step"], r["loss"], r["lr"]) for r in b]
    assert (tmp_path / "a" / "trained" / "model.safetensors").read_bytes() == \
        (tmp_path / "b" / "trained" / "model.safetensors").read_bytes()
    timings = json.loads((tmp_path / "b" / "timings.json").read_text())
    assert len(timings["train"]["pieces"]) == 2


def test_full_pipeline_and_errors(tiny_dir, tmp_path):
    model, hay = tiny_dir
    args = _args(model, hay, tmp_path, "--detect-lengths", "200", "--detect-depths", "50",
                 "--detect-needles-per-cell", "1", "--niah-lengths", "200", "--niah-depths", "50",
                 "--max-new-tokens", "4")
    s = run(args)
    assert s["stages_done"] == list(STAGES) and s["train_steps_done"] == 6
    assert set(s["seconds"]) == set(STAGES) and s["niah_gain"] is not None and s["jaccard"] is not None
    assert json.loads((tmp_path / "summary.json").read_text())["version"] == 1
    assert run(args)["seconds"] == s["seconds"]  # everything done: skipped, no new time
    with pytest.raises(RHeadsError, match="different config"):
        run([*args, "--steps", "7"])
    with pytest.raises(RHeadsError, match="rope='cubic:2'") as e:
        run([*args, "--rope", "cubic:2"])
    assert cli_message(e.value).startswith("--rope cubic:2: write linear:F")
    with pytest.raises(RHeadsError, match="needs the output of stage extend"):
        run(_args(model, hay, tmp_path / "c", "--stages", "train"))


def test_flags_train_seed_and_grid_errors_name_their_flag():
    a = build_parser().parse_args(["intrinsic", "--train-seed", "3"])
    assert build_config(a).train.seed == 3
    with pytest.raises(SystemExit):
        build_parser().parse_args(["intrinsic", "--seed", "3"])  # the training seed is --train-seed
    for flag in ("--niah-lengths", "--detect-depths"):
        with pytest.raises(RHeadsError) as e:
            build_config(build_parser().parse_args(["intrinsic", flag, "1:x"]))
        assert cli_message(e.value).startswith(f"{flag} 1:x: write a comma list")
