"""Matching an atlas entry to a model: other dimensions are refused in one line, other weights of the same shape
warn in one line (once), and a model without a weights file (hub id, directory) is matched by dimensions only."""

from __future__ import annotations

import hashlib

import pytest

from retrieval_heads.atlas import check_match, check_model, file_sha256, find_entry
from retrieval_heads.atlas.build import add_run
from retrieval_heads.errors import RHeadsError
from retrieval_heads.heads.scores import HeadScores

from atlas_helpers import fake_gguf, stub_model


def test_other_dimensions_are_refused_in_one_line():
    with pytest.raises(RHeadsError) as err:
        check_model("atlas:paper-llama-2-7b-80k", stub_model(30, 9, "smollm2-135m"))
    msg = str(err.value)
    assert "\n" not in msg and "Llama-2-7B-80K (32 layers x 32 heads)" in msg and "30 x 9" in msg
    with pytest.raises(RHeadsError, match="32 x 32"):  # same layers, other heads
        check_match(find_entry("smollm2-135m"), 32, 32)


def test_a_real_tiny_model_of_other_shape_is_refused():
    from tiny import tiny_model

    with pytest.raises(RHeadsError, match="3 x 4"):
        check_model(HeadScores.load("atlas:gemma3-270m"), tiny_model("llama"))


def test_same_shape_other_weights_warns_once_and_says_so(run_dir, tmp_path, capsys):
    entry = add_run(run_dir, "warn-run")
    other = fake_gguf(tmp_path / "other.gguf", b"weights B" * 100)
    message = check_model("atlas:warn-run", stub_model(3, 4, str(other)))
    err = capsys.readouterr().err.strip().splitlines()
    assert message and "other weights" in message and entry.sha256[:12] in message
    assert err == [f"warning: {message}"]
    assert check_model(HeadScores.load("atlas:warn-run"), stub_model(3, 4, str(other))) == message
    assert capsys.readouterr().err == ""  # once per entry and weights


def test_the_same_weights_and_weightless_models_pass_silently(run_dir, capsys):
    add_run(run_dir, "same-run")
    gguf = run_dir.parent.parent / "tiny-model.gguf"
    assert check_model("atlas:same-run", stub_model(3, 4, str(gguf))) is None
    assert check_model("atlas:same-run", stub_model(3, 4, "some-org/some-model")) is None  # hub id: dims only
    assert check_model("atlas:same-run", stub_model(3, 4)) is None  # no rheads_info at all
    assert check_model("atlas:paper-mistral-7b-v0.2", stub_model(32, 32, str(gguf))) is None  # no hash in the entry
    assert capsys.readouterr().err == ""


def test_scores_that_are_not_atlas_entries_are_not_checked(run_dir):
    assert check_model(str(run_dir / "scores.json"), stub_model(30, 9)) is None
    assert check_model(HeadScores.load(run_dir), stub_model(30, 9)) is None
    assert check_model(None, stub_model(30, 9)) is None


def test_the_hash_is_the_files_sha256_and_is_cached(tmp_path):
    path = fake_gguf(tmp_path / "w.gguf", b"x" * 5000)
    want = hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_sha256(path) == want
    (cached,) = (tmp_path / "cache" / "sha256").glob("w.gguf-*.txt")
    cached.write_text("f" * 64 + "\n")  # the cache answers: the file is not read again
    assert file_sha256(path) == "f" * 64
    path.write_bytes(b"GGUF" + b"y" * 6000)  # a changed file has another key
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
