"""`rheads suite list` and the one-line errors of `rheads suite run`, worded with flags, before any model loads."""

from __future__ import annotations

import json

import pytest

from retrieval_heads.cli.main import main
from retrieval_heads.evals.suite.registry import get_task, task_names


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")  # only classified, never loaded: every error comes first
    return str(d)


def test_suite_list_prints_one_line_per_task(capsys):
    assert main(["suite", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [l.split()[0] for l in lines] == task_names()
    for line in lines:
        name, family, metric = line.split()[:3]
        assert (family, metric) == (get_task(name).family, get_task(name).metric)


@pytest.mark.parametrize("extra, expected", [
    (["--tasks", "niah_single_2,nope"], "--tasks nope: unknown suite task"),
    (["--kv-budget", "1.5"], "--kv-budget 1.5:"),
    (["--samples", "0"], "--samples 0:"),
    (["--lengths", "4000,x"], "--lengths 4000,x:"),
    (["--task-name", "vt"], "--task-name vt: names the task of a RULER file: give --data too"),
    (["--data", "/nonexistent/ruler"], "--data /nonexistent/ruler: no such file or folder"),
])
def test_run_errors_are_one_line_with_flags(model_dir, tmp_path, capsys, extra, expected):
    out = tmp_path / "out"
    assert main(["suite", "run", "--model", model_dir, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and not out.exists()


def test_a_ruler_file_with_a_missing_field_names_the_line(model_dir, tmp_path, capsys):
    f = tmp_path / "niah_single_2" / "validation.jsonl"
    f.parent.mkdir()
    f.write_text(json.dumps({"index": 0, "input": "x", "outputs": ["1"]}) + "\n" + json.dumps({"input": "y"}) + "\n")
    assert main(["suite", "run", "--model", model_dir, "--data", str(f), "--out", str(tmp_path / "o")]) == 2
    assert "line 2: missing field 'index'" in capsys.readouterr().err


def test_suite_list_imports_neither_torch_nor_transformers():
    import subprocess
    import sys

    code = ("import sys, io, contextlib\nfrom retrieval_heads.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['suite', 'list'])\n"
            "print([m for m in ('torch', 'transformers') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
