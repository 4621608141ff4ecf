"""Load a GGUF model straight into the target dtype, one tensor at a time, with no fp32 state dict.

`load_gguf_weights(model, path, dtype)` fills a model built on the meta device: each GGUF tensor is dequantized
with the `gguf` package, passed through transformers' own tensor processor for its architecture (the reverse
Q/K permutation of Llama-family files, Gemma's norm offset, ...), renamed with transformers' own GGUF name map
(`get_gguf_hf_weights_map`), cast to `dtype` at once and assigned as the parameter. The largest tensors (the
embedding and the output head, which no processor changes) are dequantized in row chunks straight into their
target-dtype tensor, so the peak is about the weights in `dtype` plus one chunk. The result is bit-identical
to `from_pretrained(..., gguf_file=...)` in the same dtype (tested), since both cast the gguf package's float32
values with one rounding.
`build_gguf_model(path, dtype, attn_implementation)` builds the config from the file (transformers' GGUF config
reader), the model on the meta device, and loads the weights.

Left out on purpose: keeping weights quantized; architectures of transformers' new GGUF path and MoE files, which
go to transformers' own load as they are (`STOCK_ARCHS`); architectures it does not know (one line); the tokenizer (transformers' GGUF tokenizer conversion, cached by `cache.py`).
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import RHeadsError

# architectures loaded by transformers itself: those of its new GGUF path (`is_gguf_arch_supported`), and the MoE
# ones whose legacy tensor processors build expert weights across tensors (they write into the state dict)
STOCK_ARCHS = ("qwen2moe", "qwen3moe", "gpt-oss", "gpt_oss", "minimax-m2")
CHUNK_BYTES = 64 << 20  # float32 bytes dequantized at a time for the chunked tensors
_CHUNKED_PREFIXES = ("token_embd.", "output.")  # GGUF names that no transformers tensor processor changes


def _tensor_table(path: Path) -> list[tuple[str, int, tuple[int, ...], int, int]]:
    """(gguf name, ggml type, shape in torch order, absolute offset, bytes) per tensor, in file order, from
    transformers' own header reader (it skips the tokenizer's string arrays) or, for a block type that reader
    does not size (Q5_0 in Qwen2.5-Coder-0.5B, say), from the gguf package's reader. No tensor data is read."""
    from transformers.integrations.gguf.reader import GgufHeader

    try:
        header = GgufHeader.from_file(str(path))
        table = [(t.name, t.ggml_type, tuple(t.shape), header.data_start + t.offset, t.nbytes) for t in header.tensors]
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

        for _, ggml_type, *_ in table:
            GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]  # a type the gguf package cannot size: the other reader
        return table
    except (ValueError, KeyError):
        from gguf import GGUFReader

        return [(t.name, int(t.tensor_type), tuple(int(d) for d in reversed(t.shape)), int(t.data_offset),
                 int(t.n_bytes)) for t in GGUFReader(str(path)).tensors]


def _check_complete(path: Path) -> list[tuple[str, int, tuple[int, ...], int, int]]:
    """The tensor table of `path`; one line when the file ends before its last tensor (a partial copy or download)."""
    try:
        table = _tensor_table(path)
    except ValueError as err:
        raise RHeadsError(f"{path} cannot be read as a GGUF file ({str(err).splitlines()[0]}): it may be truncated or "
                          "damaged; copy or download it again") from err
    end = max((offset + nbytes for *_, offset, nbytes in table), default=0)
    if path.stat().st_size < end:
        raise RHeadsError(f"{path} is truncated ({path.stat().st_size} of {end} bytes): copy or download it again")
    return table


def _raw_tensors(path: Path, table: list | None = None):
    """(gguf name, ggml type, array) per tensor, in file order: the bytes read from the file (not mapped, so the
    process holds one tensor's bytes at a time), shaped as the gguf package's `dequantize` takes them:
    [..., row bytes] uint8."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    with open(path, "rb") as f:
        for name, ggml_type, shape, offset, nbytes in table if table is not None else _tensor_table(path):
            block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
            f.seek(offset)
            buf = f.read(nbytes)
            if len(buf) != nbytes:
                raise RHeadsError(f"{path} is truncated (tensor {name} has {len(buf)} of {nbytes} bytes): copy or "
                                  "download it again")
            data = np.frombuffer(buf, dtype=np.uint8)
            yield name, ggml_type, data.reshape(*shape[:-1], shape[-1] // block * size)


def _dequantize(data: np.ndarray, ggml_type: int) -> np.ndarray:
    from gguf import GGMLQuantizationType, dequantize

    return dequantize(data, GGMLQuantizationType(ggml_type))


def load_gguf_weights(model, path: str | Path, dtype, parsed: dict, table: list | None = None) -> None:
    """Assign every GGUF tensor of `path` to `model`'s parameters (built on the meta device), in `dtype`;
    `parsed` is transformers' `load_gguf_checkpoint(path)` (its config feeds the tensor processor); `table` the
    tensor table when the caller has read it (`_check_complete`), else it is read here."""
    import torch
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor, get_gguf_hf_weights_map

    path = Path(path)
    arch = parsed["config"].get("model_type")
    processor = TENSOR_PROCESSORS.get(_gguf_arch(path), TensorProcessor)(config=parsed.get("config", {}))
    with _memoized_name_maps():
        mapping = get_gguf_hf_weights_map(model, processor)
    params = dict(model.named_parameters(remove_duplicate=False))
    for name, ggml_type, data in _raw_tensors(path, table):
        if name.startswith(_CHUNKED_PREFIXES) and name in mapping and data.ndim == 2:
            out = _dequantize_rows(data, ggml_type, dtype)  # [rows, cols] in dtype, chunk by chunk
        else:
            w = _dequantize(data, ggml_type).reshape(-1) if data.ndim == 1 else _dequantize(data, ggml_type)
            result = processor.process(weights=w, name=name, tensor_key_mapping=mapping, parsed_parameters=parsed)
            name, w = result.name, result.weights
            if name not in mapping:
                continue
            out = torch.from_numpy(np.ascontiguousarray(w) if w.flags.writeable else np.array(w)).to(dtype)
        target = mapping[name]
        if target in params:
            _assign(model, target, out.reshape(params[target].shape))
        del out
        _release_heap(collect=False)  # this tensor's float32 temporaries: back to the OS, not kept as free heap
    model.tie_weights()
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    if missing:
        raise RHeadsError(f"{path.name} has no tensor for {len(missing)} weights of the {arch} model (e.g. "
                          f"{missing[0]}): pass a Hugging Face model directory instead")


def _release_heap(collect: bool = True) -> None:
    """Return the heap's free pages to the OS (glibc's malloc_trim; elsewhere nothing), so what was freed does not
    add to the load's peak: glibc raises its mmap threshold after large frees and then keeps freed memory as heap."""
    import ctypes
    import gc

    if collect:
        gc.collect()
    global _TRIM
    if _TRIM is None:
        try:
            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM = None


@contextmanager
def _memoized_name_maps():
    """transformers' name map walks every submodule and builds gguf's `TensorNameMap` again for each (most of a
    small model's load time); the map depends only on (arch, layers), so build each once for the duration."""
    import gguf

    original = gguf.get_tensor_name_map
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original)
    try:
        yield
    finally:
        gguf.get_tensor_name_map = original


def _gguf_arch(path: Path) -> str:
    from transformers.integrations.gguf.reader import read_gguf_metadata

    return read_gguf_metadata(str(path))[0]["general.architecture"]


def _dequantize_rows(data: np.ndarray, ggml_type: int, dtype):
    """Dequantize a 2-D GGUF tensor in row chunks into one tensor of `dtype` (elementwise per block, so identical
    to dequantizing it whole)."""
    import torch

    rows = data.shape[0]  # data [rows, row bytes]
    cols = _dequantize(data[:1], ggml_type).shape[-1]
    out = torch.empty(rows, cols, dtype=dtype)  # [rows, cols]
    step = max(1, CHUNK_BYTES // (4 * cols))
    for i in range(0, rows, step):
        out[i:i + step] = torch.from_numpy(_dequantize(data[i:i + step], ggml_type)).to(dtype)
    return out


def _assign(model, name: str, value) -> None:
    import torch

    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    old = getattr(module, attr)
    setattr(module, attr, torch.nn.Parameter(value, requires_grad=old.requires_grad))


def build_gguf_model(path: str | Path, dtype, attn_implementation: str | None = None):
    """The model of a GGUF file in `dtype` on the CPU: config from the file, built on the meta device, then
    filled tensor by tensor (`load_gguf_weights`)."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM, GenerationConfig
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    from transformers import CONFIG_MAPPING
    from transformers.integrations.gguf.utils import is_gguf_arch_supported

    path = Path(path)
    table = _check_complete(path)  # read once: the Q5_0 fallback parses the whole header again otherwise
    arch = _gguf_arch(path)
    if is_gguf_arch_supported(arch) or arch in STOCK_ARCHS:  # transformers' own GGUF path: use it as it is
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation is not None else {}
        return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype, **kwargs).eval()
    parsed = load_gguf_checkpoint(str(path), return_tensors=False)  # the one full metadata parse
    parsed.pop("tokenizer", None)  # the vocabulary as Python objects: not needed for the weights
    _release_heap()  # the parse's Python objects are freed: hand their heap back before the weights arrive
    config = CONFIG_MAPPING[parsed["config"]["model_type"]].from_dict(dict(parsed["config"]))
    kwargs = {"dtype": dtype}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    with init_empty_weights(include_buffers=False):  # parameters on meta; buffers (rotary inv_freq) real
        model = AutoModelForCausalLM.from_config(config, **kwargs)
    load_gguf_weights(model, path, dtype, parsed, table)
    model.generation_config = GenerationConfig.from_model_config(model.config)
    return model.eval()
