"""scripts/intrinsic_experiment.py on a tiny random Llama with an offline tokenizer: the RoPE change takes
effect, training resumes bit for bit after an interruption, and the whole pipeline writes its summary."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from retrieval_heads.errors import RHeadsError
from retrieval_heads.needles import get_needles
from retrieval_heads.results import read_jsonl
from tiny import COMMON, bpe_tokenizer, word_haystack

_spec = importlib.util.spec_from_file_location(
    "intrinsic_experiment", Path(__file__).resolve().parents[1] / "scripts" / "intrinsic_experiment.py")
ie = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(ie)


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
    ie.run(_args(model, hay, tmp_path, "--rope", rope, "--stages", "extend"))
    info = json.loads((tmp_path / "extended" / "rheads-extend.json").read_text())
    (lo, hi), = info["inv_freq_ratio"].values()
    assert (lo, hi) == pytest.approx(ratio, rel=1e-4)  # theta: inv_freq_i ratio 10^(2i/d), head_dim d = 16
    assert info["max_position_embeddings"] == [1024, 4096] and info["max_abs_logit_change"] > 1e-4


def test_train_resumes_bit_for_bit(tiny_dir, tmp_path, monkeypatch):
    model, hay = tiny_dir
    ie.run(_args(model, hay, tmp_path / "a", "--stages", "extend,train"))
    real = ie.batch_at

    def interrupt_fifth_step(ids, step, tc):
        if step == 4:  # after the step-4 checkpoint is written
            raise KeyboardInterrupt
        return real(ids, step, tc)

    monkeypatch.setattr(ie, "batch_at", interrupt_fifth_step)
    with pytest.raises(KeyboardInterrupt):
        ie.run(_args(model, hay, tmp_path / "b", "--stages", "extend,train"))
    monkeypatch.setattr(ie, "batch_at", real)
    assert [r["step"] for r in read_jsonl(tmp_path / "b" / "train" / "log.jsonl")] == [1, 2, 3, 4]
    ie.run(_args(model, hay, tmp_path / "b", "--stages", "extend,train"))
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
    s = ie.run(args)
    assert s["stages_done"] == list(ie.STAGES) and s["train_steps_done"] == 6
    assert set(s["seconds"]) == set(ie.STAGES) and s["niah_gain"] is not None and s["jaccard"] is not None
    assert json.loads((tmp_path / "summary.json").read_text())["version"] == 1
    assert ie.run(args)["seconds"] == s["seconds"]  # everything done: skipped, no new time
    with pytest.raises(RHeadsError, match="different config"):
        ie.run([*args, "--steps", "7"])
    with pytest.raises(RHeadsError, match="--rope"):
        ie.run([*args, "--rope", "cubic:2"])
    with pytest.raises(RHeadsError, match="needs the output of stage extend"):
        ie.run(_args(model, hay, tmp_path / "c", "--stages", "train"))
