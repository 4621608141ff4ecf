"""The wheel holds every file of src/retrieval_heads that git tracks (data files included), and no Python caches."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout")
    r = subprocess.run(["git", "ls-files", "pyproject.toml", "MANIFEST.in", "README.md", "src"], cwd=ROOT,
                       capture_output=True, text=True, check=True)
    return [p for p in r.stdout.splitlines() if "__pycache__" not in p]


@pytest.mark.wheel
def test_the_wheel_holds_every_file_of_the_package(tmp_path):
    files = _tracked()
    tree = tmp_path / "tree"
    for rel in files:  # a copy of the tracked files: the build writes nothing into the working tree
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tree / rel)
    stray = tree / "src/retrieval_heads/__pycache__/stray.cpython-311.pyc"
    stray.parent.mkdir()
    stray.write_bytes(b"\0")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path / "dist"), str(tree)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("retrieval_heads-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = [p.removeprefix("src/") for p in files if p.startswith("src/retrieval_heads/")]
    data = [p for p in package if not p.endswith(".py")]
    assert data and "retrieval_heads/monitor/data/counterfactual.jsonl" in data
    assert sorted(set(package) - names) == []  # every data file and every module
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
