"""Load a causal LM and its tokenizer from one string: a named offline model, a .gguf file, a local Hugging
Face directory or a hub id, switched to the `rheads` attention, with a record of what was loaded.

`resolve_spec` classifies a spec without loading anything (one-line errors for what names nothing);
`load_model` loads it: named models and GGUF files stream tensor by tensor into the target dtype (`gguf.py`;
their tokenizers are converted once into the cache, `cache.py`); a hub id is
checked first (`hub.py`: the local cache, then one quick request), so a wrong id or an unreachable Hub fails
in one line within seconds, and a cached model loads without network.

Left out on purpose: `trust_remote_code`, and downloading anything ourselves (hub ids go through
transformers and its cache).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ParamError, RHeadsError
from .cache import gguf_tokenizer_dir, is_gguf, unsupported_gguf
from .hub import check_hub
from .info import model_info
from .registry import OFFLINE_MODELS

DTYPES = ("auto", "float32", "float16", "bfloat16")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Source:
    """Where a spec points: kind is 'named', 'gguf', 'dir' or 'hub'."""

    kind: str
    location: str  # registry name, absolute path, or hub id


def resolve_spec(spec: str) -> Source:
    """Classify `spec` without loading anything; raises RHeadsError when it names nothing loadable."""
    if spec in OFFLINE_MODELS:
        return Source("named", spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise RHeadsError(f"{path} is a directory without config.json: pass a Hugging Face model "
                              f"directory (config.json and weights) or a .gguf file")
        return Source("dir", str(path.resolve()))
    if path.is_file():
        if not is_gguf(path):
            raise RHeadsError(f"{path} is not a GGUF file (no GGUF header): pass a .gguf file, a model "
                              f"directory with config.json, or a hub id")
        return Source("gguf", str(path.resolve()))
    if spec.lower().endswith(".gguf"):
        raise RHeadsError(f"GGUF file not found: {path}")
    if _HUB_ID.match(spec):
        return Source("hub", spec)
    raise RHeadsError(f"unknown model '{spec}': use a named model ({', '.join(OFFLINE_MODELS)}; see "
                      f"`rheads models`), a hub id like org/name, a local model directory or a .gguf file")


def check_spec(spec: str) -> Source:
    """`resolve_spec`, and for a hub id `hub.check_hub` (once per id): `load_model`'s one-line errors about what
    the spec names, before anything heavy is imported."""
    source = resolve_spec(str(spec))
    if source.kind == "hub":
        check_hub(source.location)
    return source


def _torch_dtype(dtype: str, device: str, device_map: str | dict | None) -> Any:
    import torch

    if dtype not in DTYPES:
        raise ParamError("model.dtype", dtype, f"unknown dtype: use one of {', '.join(DTYPES)}")
    if dtype == "auto":
        on_cuda = torch.cuda.is_available() if device_map is not None else device.startswith("cuda")
        return torch.bfloat16 if on_cuda else torch.float32
    return getattr(torch, dtype)


def load_model(spec: str, *, device: str = "cpu", dtype: str = "auto", device_map: str | dict | None = None,
               attn_implementation: str | None = None,
               cache_dir: str | Path | None = None) -> tuple[Any, Any]:
    """Load (model, tokenizer) for `spec`: a named offline model, a .gguf file, a local HF directory, or
    a hub id. The model is in eval mode, uses the `rheads` attention unless told otherwise, and carries
    its ModelInfo as `model.rheads_info`."""
    spec = str(spec)
    source = resolve_spec(spec)  # one-line errors before torch loads
    local_only = check_hub(source.location) if source.kind == "hub" else False

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = _torch_dtype(dtype, device, device_map)
    if device_map is None and device.startswith("cuda") and not torch.cuda.is_available():
        raise ParamError("model.device", device, "CUDA is not available here: use cpu")
    if attn_implementation is None:
        from ..capture.attention import register

        attn_implementation = register()

    if source.kind in ("named", "gguf"):
        path = OFFLINE_MODELS[spec].gguf_path(cache_dir) if source.kind == "named" else Path(source.location)
        model, tokenizer = _load_gguf(path, spec, torch_dtype, attn_implementation, device_map, cache_dir)
        return _finish(model, tokenizer, spec, device, device_map)
    location = source.location

    kwargs: dict[str, Any] = {"dtype": torch_dtype, "attn_implementation": attn_implementation}
    if device_map is not None:
        kwargs["device_map"] = device_map
    local = {"local_files_only": True} if local_only else {}  # a cached hub model while the Hub is out of reach
    try:
        model = AutoModelForCausalLM.from_pretrained(location, **kwargs, **local)
        tokenizer = AutoTokenizer.from_pretrained(location, **local)
    except OSError as err:
        if source.kind != "hub":
            raise
        from huggingface_hub import constants

        why = "HF_HUB_OFFLINE is set and it is not in the local cache" if constants.HF_HUB_OFFLINE else \
            str(err).splitlines()[0]
        raise RHeadsError(f"could not load '{spec}' from the Hugging Face Hub ({why}): check the id and "
                          f"your network, or pass a local model directory or .gguf file") from err
    return _finish(model, tokenizer, spec, device, device_map)


def _load_gguf(path: Path, spec: str, torch_dtype, attn_implementation: str, device_map, cache_dir):
    """A GGUF model loaded tensor by tensor into `torch_dtype` (`gguf.py`), its tokenizer from the cache."""
    from transformers import AutoTokenizer

    from .gguf import build_gguf_model

    try:
        model = build_gguf_model(path, torch_dtype, attn_implementation)
    except (ValueError, KeyError, NotImplementedError) as err:
        raise unsupported_gguf(path, err) from err
    tokenizer = AutoTokenizer.from_pretrained(gguf_tokenizer_dir(path, cache_dir, spec))
    if device_map is not None:  # the weights are on the CPU: accelerate places them
        from accelerate import dispatch_model, infer_auto_device_map

        plan = device_map if isinstance(device_map, dict) else infer_auto_device_map(
            model, no_split_module_classes=getattr(model, "_no_split_modules", None) or [])
        model = dispatch_model(model, device_map=plan)
    return model, tokenizer


def _finish(model, tokenizer, spec: str, device: str, device_map):
    if device_map is None:
        model.to(device)
    model.eval()
    model.rheads_info = model_info(model, tokenizer, spec)
    return model, tokenizer
