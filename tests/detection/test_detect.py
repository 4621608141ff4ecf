"""Detection on a tiny model with a word haystack: batches give the records of one prompt at a time, and a run
directory refuses another model, another dtype or other data in one line advising overwrite."""

from __future__ import annotations

import json

import pytest
import torch

from retrieval_heads.config import DetectConfig, ModelConfig, ProbeConfig
from retrieval_heads.errors import RHeadsError
from retrieval_heads.detection.detect import detect
from retrieval_heads.probes.needles import get_needles
from retrieval_heads.capture.attention import use_rheads
from tiny import bpe_tokenizer, word_haystack

HAYSTACK = word_haystack(200)


@pytest.fixture(scope="module")
def tok():
    needles = [f"{n.needle} {n.question}" for n in get_needles("detect")]
    template = "<context> </context> Based only on the context above, answer the question in a short sentence. Question: Answer:"
    return bpe_tokenizer([HAYSTACK, template, *needles], vocab_size=800)


def _model(family, tok, dtype=torch.float32):
    from transformers import AutoModelForCausalLM

    from tiny import FAMILIES

    cfg = FAMILIES[family]()
    cfg.vocab_size, cfg.max_position_embeddings, cfg.bos_token_id, cfg.eos_token_id = len(tok), 512, 0, 1
    torch.manual_seed(0)
    return use_rheads(AutoModelForCausalLM.from_config(cfg, dtype=dtype).eval())


@pytest.fixture
def haystack_file(tmp_path):
    path = tmp_path / "hay.txt"
    path.write_text(HAYSTACK)
    return str(path)


def _config(haystack_file):
    return DetectConfig(model=ModelConfig(model="tiny"),
                        probe=ProbeConfig(haystack=haystack_file, lengths=[150, 220], depths=[0, 50, 100],
                                          needles_per_cell=2), max_new_tokens=6)


def _records(out):
    keep = ("id", "response", "copies", "counted", "new_tokens", "answer_span", "prompt_length")
    return [{k: r[k] for k in keep} for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines()[1:])]


def test_batch_4_gives_the_records_of_batch_1(tok, haystack_file, tmp_path):
    model = _model("llama", tok)
    a = detect(model, _config(haystack_file), tokenizer=tok, out=tmp_path / "b1", progress=False)
    b = detect(model, _config(haystack_file), tokenizer=tok, out=tmp_path / "b4", progress=False, batch_size=4)
    assert _records(tmp_path / "b1") == _records(tmp_path / "b4") and len(_records(tmp_path / "b1")) == 12
    assert a.to_paper() == b.to_paper()


def test_a_run_directory_refuses_another_model_dtype_or_data(tok, haystack_file, tmp_path):
    out = tmp_path / "run"
    cfg = _config(haystack_file)
    detect(_model("llama", tok), cfg, tokenizer=tok, out=out, progress=False)
    for other, what in ((_model("qwen2", tok), "different model"),
                        (_model("llama", tok, torch.bfloat16), "dtype torch.float32 vs torch.bfloat16")):
        with pytest.raises(RHeadsError, match=r"start over there \(overwrite\)") as e:
            detect(other, cfg, tokenizer=tok, out=out, progress=False)
        assert what in str(e.value)
    (tmp_path / "hay.txt").write_text(HAYSTACK + " One more sentence here.")
    with pytest.raises(RHeadsError, match="different data"):
        detect(_model("llama", tok), cfg, tokenizer=tok, out=out, progress=False)
    detect(_model("qwen2", tok), cfg, tokenizer=tok, out=out, progress=False, overwrite=True)
    assert json.loads((out / "config.json").read_text())["model_key"]["family"] == "qwen2"


def test_a_static_cache_in_generation_config_gives_the_scores_of_the_dynamic_cache(tok, haystack_file, tmp_path):
    model = _model("llama", tok)
    want = detect(model, _config(haystack_file), tokenizer=tok, progress=False)
    model.generation_config.cache_implementation = "static"
    got = detect(model, _config(haystack_file), tokenizer=tok, out=tmp_path / "static", progress=False, batch_size=2)
    assert got.to_paper() == want.to_paper() and _records(tmp_path / "static")
