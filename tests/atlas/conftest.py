"""Atlas test setup: an empty user atlas folder and model cache per test (nothing is written under ~), and a tiny
fake detection run directory (3 layers x 4 heads) whose model is a small fake GGUF file."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas_helpers import fake_gguf, make_run


@pytest.fixture(autouse=True)
def atlas_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("RHEADS_ATLAS", str(tmp_path / "user-atlas"))
    monkeypatch.setenv("RHEADS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "user-atlas"


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return make_run(tmp_path / "runs" / "tiny", fake_gguf(tmp_path / "tiny-model.gguf", b"weights A" * 100))
