"""run_suite on a tiny random Llama: the files and their fields, resume without redoing samples, RULER input with
the folder's task name, and the one-line errors (before anything is written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval_heads.config import ModelConfig
from retrieval_heads.errors import ParamError, RHeadsError
from retrieval_heads.evals.suite.common import TaskContext
from retrieval_heads.evals.suite.fit import make_sample
from retrieval_heads.evals.suite.metrics import score
from retrieval_heads.evals.suite.prompt import PromptBuilder
from retrieval_heads.evals.suite.registry import get_task
from retrieval_heads.evals.suite.ruler import write_ruler
from retrieval_heads.evals.suite.run import SuiteConfig, check_config, run_suite
from retrieval_heads.evals.suite.summary import format_table
from retrieval_heads.io.jsonl import read_jsonl
from retrieval_heads.kvcache.config import KVConfig
from suite_helpers import essay_file, fake_qa, tiny_llama, tokenizer

FIELDS = {"task", "index", "length", "input_tokens", "pred", "outputs", "score"}


@pytest.fixture(scope="module")
def tok():
    return tokenizer(chat=True)


@pytest.fixture(scope="module")
def model(tok):
    return tiny_llama(tok, context=1024)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("suite-run")
    qa, held = fake_qa(tmp)
    return {"haystack": essay_file(tmp), "qa_data": qa, "heldout": held}


def _config(files, **kw) -> SuiteConfig:
    base = dict(model=ModelConfig(model="tiny-llama"), tasks=["niah_single_1", "niah_single_2", "qa_2"],
                lengths=[400, 600], samples=2, max_new_tokens=3, **files)
    return SuiteConfig(**{**base, **kw})


def _preds(out: Path) -> list[dict]:
    return [r for r in read_jsonl(out / "predictions.jsonl") if r.get("type") == "prediction"]


def test_run_writes_the_files_and_resumes(model, tok, files, tmp_path):
    out = tmp_path / "run"
    summary = run_suite(model, tok, _config(files), out, progress=False, batch_size=2)
    preds = _preds(out)
    assert len(preds) == 3 * 2 * 2 and all(FIELDS <= set(p) for p in preds)
    for p in preds:
        assert p["input_tokens"] <= p["length"] and p["score"] == score(get_task(p["task"]).metric, p["pred"],
                                                                         p["outputs"])
    on_disk = json.loads((out / "summary.json").read_text())
    assert set(on_disk["tasks"]) == {"niah_single_1", "niah_single_2", "qa_2"}
    cell = on_disk["tasks"]["qa_2"]["600"]
    assert cell["n"] == 2 and set(cell) == {"score", "n", "ci"}
    mine = [p["score"] for p in preds if p["task"] == "qa_2" and p["length"] == 600]
    assert cell["score"] == pytest.approx(sum(mine) / 2, abs=0.01)
    assert {"mean_score", "kv_policy", "kv_bytes", "kv_bytes_full", "families"} <= set(on_disk)
    assert on_disk["kv_policy"] == "full" and on_disk["kv_bytes"] == on_disk["kv_bytes_full"] > 0
    assert set(on_disk["families"]) == {"retrieval", "qa"} and (out / "heatmap.png").stat().st_size > 1000
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["kv"]["policy"] == "full" and config["config"]["model"]["model"] == "tiny-llama"
    assert "qa_2" in format_table(summary)

    # a rerun decodes nothing again; other settings are refused
    lines = (out / "predictions.jsonl").read_text().splitlines()
    again = run_suite(model, tok, _config(files), out, progress=False)
    assert (out / "predictions.jsonl").read_text().splitlines() == lines and again["tasks"] == summary["tasks"]
    with pytest.raises(ParamError, match="different config"):
        run_suite(model, tok, _config(files, samples=3), out, progress=False)


def test_a_busy_folder_is_refused(model, tok, files, tmp_path):
    from retrieval_heads.io.rundir import RunBusy
    import subprocess, sys

    out = tmp_path / "busy"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        from retrieval_heads.io.jsonl import atomic_write_json
        from retrieval_heads.io.rundir import _start_time
        import socket

        atomic_write_json(out / ".lock", {"host": socket.gethostname(), "pid": holder.pid,
                                          "start": _start_time(holder.pid)})
        with pytest.raises(RunBusy):
            run_suite(model, tok, _config(files, tasks=["niah_single_1"], lengths=[400], samples=1), out,
                      progress=False)
    finally:
        holder.kill()
        holder.wait()


def test_ruler_folder_input_takes_the_task_from_the_folder(model, tok, files, tmp_path):
    prompt = PromptBuilder(tok)
    samples = [make_sample(get_task(t), TaskContext(target=500, **files), prompt, 500, i, 0)
               for t in ("niah_single_2", "qa_2") for i in range(2)]
    write_ruler(samples, tmp_path / "ruler")
    out = tmp_path / "from-ruler"
    summary = run_suite(model, tok, _config(files, tasks=None, lengths=None, data=str(tmp_path / "ruler")), out,
                        progress=False)
    preds = _preds(out)
    assert {p["task"] for p in preds} == {"niah_single_2", "qa_2"} and len(preds) == 4
    by_id = {(s.task, s.index): s for s in samples}
    for p in preds:
        s = by_id[(p["task"], p["index"])]
        assert p["outputs"] == s.outputs and p["input_tokens"] == len(s.input_ids)  # the same prompt, rebuilt
        assert p["length"] == max(x.ruler_length for x in samples if x.task == p["task"])
    assert set(summary["tasks"]) == {"niah_single_2", "qa_2"}
    # one file: the task from its folder, or --task-name
    single = tmp_path / "ruler" / "qa_2" / "validation.jsonl"
    assert set(check_config(_config(files, tasks=None, lengths=None, data=str(single)))) == {"qa_2"}
    other = check_config(_config(files, tasks=None, lengths=None, data=str(single), task_name="niah_single_1"))
    assert set(other) == {"niah_single_1"}


@pytest.mark.parametrize("kw, error, match", [
    (dict(tasks=["niah_single_2", "nope"]), ParamError, "unknown suite task"),
    (dict(kv=KVConfig(budget=1.5)), ParamError, "kv.budget"),
    (dict(samples=0), ParamError, "samples"),
    (dict(task_name="vt"), ParamError, "names the task of a RULER file"),
])
def test_bad_configs_are_one_line_errors_before_any_file(model, tok, files, tmp_path, kw, error, match):
    out = tmp_path / "bad"
    with pytest.raises(error, match=match) as e:
        run_suite(model, tok, _config(files, **kw), out, progress=False)
    assert "\n" not in str(e.value) and not out.exists()


def test_a_length_above_the_context_is_refused(model, tok, files, tmp_path):
    out = tmp_path / "long"
    with pytest.raises(ParamError, match="exceeds the model's context of 1024 tokens") as e:
        run_suite(model, tok, _config(files, lengths=[400, 1022]), out, progress=False)
    assert e.value.param == "lengths" and not out.exists()


def test_ruler_files_with_bad_lines_name_the_line_and_field(files, tmp_path):
    folder = tmp_path / "data" / "vt"
    folder.mkdir(parents=True)
    (folder / "validation.jsonl").write_text(json.dumps({"index": 0, "input": "x", "outputs": ["A"]}) + "\n"
                                             + json.dumps({"index": 1, "input": "y"}) + "\n")
    with pytest.raises(RHeadsError, match=r"validation.jsonl line 2: missing field 'outputs'"):
        check_config(_config(files, tasks=None, data=str(tmp_path / "data")))
    (tmp_path / "data" / "mystery").mkdir()
    (tmp_path / "data" / "mystery" / "validation.jsonl").write_text("{}\n")
    with pytest.raises(ParamError, match="folder name 'mystery' is no suite task") as e:
        check_config(_config(files, tasks=None, data=str(tmp_path / "data")))
    assert e.value.param == "data"


def test_a_kv_policy_and_a_mask_reach_the_run(model, tok, files, tmp_path):
    small = dict(tasks=["niah_single_1"], lengths=[600], samples=2)
    kv = run_suite(model, tok, _config(files, **small, kv=KVConfig(policy="streaming", sink=4, recent=32)),
                   tmp_path / "kv", progress=False, batch_size=2)
    assert kv["kv_policy"] == "streaming" and 0 < kv["kv_bytes"] < kv["kv_bytes_full"]
    masked = run_suite(model, tok, _config(files, **small, mask="heads:0-1,2-3"), tmp_path / "mask", progress=False)
    assert masked["n_masked"] == 2 and masked["masked_heads"] and masked["kv_bytes"] == masked["kv_bytes_full"]
    plain = run_suite(model, tok, _config(files, **small), tmp_path / "plain", progress=False)
    preds = {p["id"]: p["pred"] for p in _preds(tmp_path / "plain")}
    assert plain["n_masked"] == 0 and set(preds) == {p["id"] for p in _preds(tmp_path / "mask")}


def test_a_ruler_prompt_above_the_context_names_its_line(model, tok, files, tmp_path):
    folder = tmp_path / "long" / "niah_single_1"
    folder.mkdir(parents=True)
    long_input = "The grass is green. " * 400
    (folder / "validation.jsonl").write_text(json.dumps({"index": 0, "input": "short", "outputs": ["1"]}) + "\n"
                                             + json.dumps({"index": 1, "input": long_input, "outputs": ["1"]}) + "\n")
    out = tmp_path / "long-run"
    with pytest.raises(RHeadsError, match=r"line 2: the prompt takes \d+ tokens, with 3 new tokens above the "
                                          r"model's context of 1024"):
        run_suite(model, tok, _config(files, tasks=None, lengths=None, data=str(tmp_path / "long")), out,
                  progress=False)
    assert not out.exists()
