"""Hub ids: a wrong or unreachable one fails in one line within seconds, naming `rheads models`; a cached one
loads without network. No test needs network access (the decisions are tested on a faked cache and Hub)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from retrieval_heads.errors import RHeadsError
from retrieval_heads.models import hub


@pytest.fixture(autouse=True)
def _fresh():
    hub.check_hub.cache_clear()
    yield
    hub.check_hub.cache_clear()


def _fake(monkeypatch, cached: bool, probe: str | None, offline: bool = False):
    from huggingface_hub import constants

    calls = []
    monkeypatch.setattr(hub, "_cached", lambda repo: cached)
    monkeypatch.setattr(hub, "_probe", lambda repo: calls.append(repo) or probe)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    return calls


@pytest.mark.parametrize("cached, probe, offline, local_only, calls", [
    (True, None, False, False, 1),  # online: transformers loads and checks for updates as usual
    (True, "ConnectError: no route", False, True, 1),  # the Hub is out of reach: the cache only, no retries
    (True, "missing", False, True, 1),
    (True, None, True, True, 0),  # HF_HUB_OFFLINE: no request at all
    (False, None, False, False, 1),
])
def test_check_hub_loads_what_it_can(monkeypatch, cached, probe, offline, local_only, calls):
    made = _fake(monkeypatch, cached, probe, offline)
    assert hub.check_hub("org/name") is local_only
    assert len(made) == calls
    hub.check_hub("org/name")
    assert len(made) == calls  # one check per id and process


@pytest.mark.parametrize("probe, offline, words", [
    ("missing", False, "no model 'org/name' on the Hugging Face Hub"),
    ("gated", False, "is gated"),
    ("ConnectError: [Errno -2] Name or service not known", False, "the Hub cannot be reached (ConnectError"),
    (None, True, "HF_HUB_OFFLINE is set"),
])
def test_check_hub_refuses_in_one_line_naming_the_offline_models(monkeypatch, probe, offline, words):
    made = _fake(monkeypatch, False, probe, offline)
    with pytest.raises(RHeadsError, match="rheads models") as e:
        hub.check_hub("org/name")
    assert words in str(e.value) and "\n" not in str(e.value)
    assert len(made) == (0 if offline else 1)


def _env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return {**env, "HF_HUB_CACHE": str(tmp_path / "hub"), "OMP_NUM_THREADS": "1", **extra}


@pytest.mark.parametrize("offline", [False, True])
def test_an_unknown_hub_id_fails_in_one_line_within_seconds(tmp_path, offline):
    env = _env(tmp_path, **({"HF_HUB_OFFLINE": "1"} if offline else {}))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "retrieval_heads.cli.main", "detect", "--model", "nobody/no-such-model",
                        "--out", str(out)], capture_output=True, text=True, timeout=20, env=env)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("rheads: error: model 'nobody/no-such-model'") and "`rheads models`" in lines[0]
    assert not out.exists()


def test_a_cached_hub_model_loads_without_the_hub(tmp_path):
    """A hub id in the local cache loads whether the Hub answers or not (this machine may have no network)."""
    from tiny import bpe_tokenizer, tiny_model, word_haystack

    snap = tmp_path / "hub" / "models--someorg--tiny-model" / "snapshots" / ("0" * 40)  # the hub cache's layout
    tiny_model("llama").save_pretrained(snap)
    bpe_tokenizer([word_haystack(20)], vocab_size=64).save_pretrained(snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0" * 40)
    code = ("from retrieval_heads.models.loading import load_model; m, t = load_model('someorg/tiny-model'); "
            "print('layers', m.config.num_hidden_layers)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=_env(tmp_path))
    assert r.returncode == 0 and "layers 3" in r.stdout, r.stderr[-2000:]
    assert "Retrying" not in r.stderr
