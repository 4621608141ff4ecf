"""The model cache: GGUF files assembled from chunked packages (`gguf/`) and the tokenizers transformers converts
from GGUF files (`converted/`), so a load converts a tokenizer once.

The cache lives under `$RHEADS_CACHE` (default ~/.cache/retrieval-heads; point it at shared storage on a
cluster), keyed on the GGUF file's path, size and mtime. Writes are atomic (temp dir + rename). The weights are
not cached: `gguf.py` dequantizes them straight into the target dtype at each load.

Left out on purpose: running GGUF weights quantized, split multi-file GGUFs, and any cache eviction (delete the
cache directory to reclaim space).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

from ..errors import RHeadsError

CACHE_ENV = "RHEADS_CACHE"
SOURCE_FILE = "rheads-source.json"


def is_gguf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"GGUF"


def atomic_file(target: Path, write: Callable[[Path], None]) -> Path:
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


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "retrieval-heads").expanduser()


def cache_root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def gguf_cache_path(gguf: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The directory that holds (or will hold) the converted copy of this GGUF file."""
    path = Path(gguf).expanduser().resolve()
    st = path.stat()
    key = hashlib.sha256(f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_root(cache_dir) / "converted" / f"{path.stem}-{key}"


def gguf_architecture(path: Path) -> str | None:
    try:
        from gguf import GGUFReader

        field = GGUFReader(str(path)).fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode()
    except Exception:  # an unreadable header only costs us the name in the message
        return None


def unsupported_gguf(path: Path, err: Exception) -> RHeadsError:
    """The one line for a GGUF file that transformers cannot load."""
    import transformers

    arch = gguf_architecture(path)
    what = f"GGUF architecture '{arch}'" if arch else "this GGUF file"
    return RHeadsError(f"transformers {transformers.__version__} cannot load {what} ({path}): "
                       f"{str(err).splitlines()[0] if str(err) else type(err).__name__}; pass a Hugging Face model "
                       "directory or hub id for it instead")


def _convert_tokenizer(path: Path, dest: Path, spec: str) -> None:
    """Convert the tokenizer of `path` with transformers and save it to `dest`, atomically."""
    import transformers
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except (ValueError, KeyError, NotImplementedError) as err:
        raise unsupported_gguf(path, err) from err
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        tokenizer.save_pretrained(tmp)
        st = path.stat()
        record = {"spec": spec, "gguf": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                  "architecture": gguf_architecture(path), "transformers": transformers.__version__}
        (tmp / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
        try:
            os.replace(tmp, dest)
        except OSError:
            if not (dest / SOURCE_FILE).is_file():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def gguf_tokenizer_dir(gguf: str | Path, cache_dir: str | Path | None = None, spec: str | None = None) -> Path:
    """The cached tokenizer directory of a GGUF file, converting it on first use."""
    path = Path(gguf).expanduser().resolve()
    dest = gguf_cache_path(path, cache_dir)
    if not (dest / SOURCE_FILE).is_file():
        _convert_tokenizer(path, dest, spec or str(path))
    return dest
