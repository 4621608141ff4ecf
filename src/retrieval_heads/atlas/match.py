"""Match an atlas entry to a model: by its dimensions always, and by its weights' sha256 where both are known.

- other dimensions (layers x query heads): a one-line `RHeadsError`: the scores name heads this model lacks;
- same dimensions, other weights (both hashes known, different): one warning line on stderr (`io.jsonl.notice`,
  once per entry and weights in a process) and the message returned, so a caller can record it: the
  architecture fits, the heads may not;
- no hash on either side (a hub id or a model directory, or a paper entry): dimensions only.

A model's weights are known only when it loads from one file: a named offline model's GGUF or a .gguf path.
Hashes are cached under `<cache>/sha256/`, keyed on the file's path, size and mtime, so a 1 GB file is hashed once.

`check_model(scores, model)` is what callers use once the model is loaded; `scores` is the `atlas:NAME` spec or
the HeadScores read from it (anything else passes untouched, so callers need not test the spec themselves).

Left out on purpose: tokenizer or dtype checks (an entry lists its dtype; scores of another dtype still name the
same heads), and hashing model directories (many files; matched by dimensions only).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import RHeadsError
from ..io.jsonl import notice
from ..models.cache import atomic_file, cache_root
from ..models.info import model_dims
from ..models.loading import resolve_spec
from ..models.registry import OFFLINE_MODELS
from .entry import AtlasEntry
from .store import find_entry, is_atlas_spec

_WARNED: set[tuple[str, str]] = set()


def weights_file(spec: str, cache_dir: str | Path | None = None) -> Path | None:
    """The one file a model spec loads its weights from (a named model's GGUF, a .gguf path), else None."""
    try:
        source = resolve_spec(str(spec))
        if source.kind == "named":
            return OFFLINE_MODELS[source.location].gguf_path(cache_dir)
    except RHeadsError:  # not installed, or names nothing: no file to hash
        return None
    return Path(source.location) if source.kind == "gguf" else None


def file_sha256(path: str | Path, cache_dir: str | Path | None = None) -> str:
    """The sha256 of a file, cached by (path, size, mtime) under <cache>/sha256/."""
    path = Path(path).expanduser().resolve()
    st = path.stat()
    key = hashlib.sha256(f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = cache_root(cache_dir) / "sha256" / f"{path.name}-{key}.txt"
    if cached.is_file():
        text = cached.read_text().strip()
        if len(text) == 64:
            return text
        cached.unlink(missing_ok=True)
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    value = digest.hexdigest()
    try:
        atomic_file(cached, lambda tmp: tmp.write_text(value + "\n"))
    except OSError:  # a read-only cache: hash again next time
        pass
    return value


def check_match(entry: AtlasEntry, num_layers: int, num_heads: int, *, weights_sha256: str | None = None,
                model_name: str | None = None) -> str | None:
    """Refuse an entry of other dimensions (one line); warn, and return the warning, when both hashes are known
    and differ; None when the entry fits."""
    what = model_name or "the model"
    if (entry.num_layers, entry.num_heads) != (int(num_layers), int(num_heads)):
        raise RHeadsError(f"atlas:{entry.name} holds the head scores of {entry.model.get('name')} "
                          f"({entry.num_layers} layers x {entry.num_heads} heads) but {what} has {num_layers} x "
                          f"{num_heads}: use an entry of this model (`rheads atlas list`) or detect its heads "
                          "with `rheads detect`")
    if entry.sha256 and weights_sha256 and entry.sha256 != weights_sha256:
        message = (f"atlas:{entry.name} was measured on other weights than {what} (same {num_layers} x {num_heads} "
                   f"architecture; sha256 {entry.sha256[:12]} vs {weights_sha256[:12]}): its heads may not be "
                   "this model's")
        if (entry.name, weights_sha256) not in _WARNED:  # once per process: a study checks each of its runs
            _WARNED.add((entry.name, weights_sha256))
            notice(message)
        return message
    return None


def check_model(scores, model, *, cache_dir: str | Path | None = None) -> str | None:
    """`check_match` of the entry `scores` names (an `atlas:NAME` spec, or HeadScores loaded from one) against a
    loaded model: its dimensions, and its weights' hash when it loaded from one file. Other scores pass (None)."""
    spec = scores if is_atlas_spec(scores) else getattr(scores, "source", None)
    if not is_atlas_spec(spec):
        return None
    entry = find_entry(str(spec))
    L, H, _ = model_dims(model)
    info = getattr(model, "rheads_info", None)
    model_spec = getattr(info, "spec", None)
    sha = None
    if entry.sha256 and model_spec:
        path = weights_file(model_spec, cache_dir)
        sha = file_sha256(path, cache_dir) if path is not None and path.is_file() else None
    return check_match(entry, L, H, weights_sha256=sha, model_name=getattr(info, "name", None) or model_spec)
