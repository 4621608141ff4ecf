"""Every setting is checked before anything is written: a bad `rheads monitor bench`, `rheads monitor score` or
`rheads monitor` leaves --out (or --html / --json) absent, and the corrected command then runs in the same place;
a folder given for a file says so; library checks name parameters, not flags."""

from __future__ import annotations

import json

import pytest

from retrieval_heads.config import ModelConfig
from retrieval_heads.errors import ParamError
from retrieval_heads.monitor import Monitor
from retrieval_heads.monitor.bench.run import BenchConfig, prepare
from test_batch_cli import CONTEXT, QUESTION, _one_error, _run, _write


def _bench(model_dir, hay, out, *extra):
    return ["monitor", "bench", "--model", str(model_dir), "--scores", str(model_dir / "scores.json"),
            "--haystack", str(hay), "--depths", "0,50", "--niah-per-cell", "0", "--cf-per-cell", "1", "--limit", "2",
            "--max-new-tokens", "3", "--random-seeds", "1", "--out", str(out), *extra]


@pytest.mark.parametrize("bad,says", [(["--lengths", "99999"], "99999"),
                                      (["--lengths", "254"], "context of 256"),
                                      (["--lengths", "200", "--cf-per-cell", "-1"], "-1"),
                                      (["--lengths", "200", "--limit", "0"], "0"),
                                      (["--lengths", "30"], "too small"),
                                      (["--lengths", "200", "--threshold", "0.95"], "scores above 0.95")])
def test_a_bad_bench_run_writes_nothing_and_the_fixed_one_runs(model_dir, haystack, tmp_path, capsys, bad, says):
    hay = tmp_path / "hay.txt"
    hay.write_text(haystack)
    out = tmp_path / "bench"
    code, _, err = _run(_bench(model_dir, hay, out, *bad), capsys)
    assert code == 2 and says in _one_error(err)
    assert not out.exists() or not any(out.iterdir())
    if bad[:2] == ["--lengths", "99999"]:  # the corrected command runs in the same --out, no --overwrite
        code, stdout, err = _run(_bench(model_dir, hay, out, "--lengths", "200"), capsys)
        assert code == 0 and "results in" in stdout, err
        assert json.loads((out / "config.json").read_text())["config"]["lengths"] == [200]


def test_a_score_file_of_another_model_writes_nothing(model_dir, haystack, tmp_path, capsys):
    hay = tmp_path / "hay.txt"
    hay.write_text(haystack)
    out = tmp_path / "bench"
    argv = _bench(model_dir, hay, out, "--lengths", "200")
    argv[argv.index("--scores") + 1] = str(model_dir / "other.json")
    code, _, err = _run(argv, capsys)
    assert code == 2 and "has 5 layers x 4 heads but the model has 3 x 4" in _one_error(err) and not out.exists()


def test_a_bad_score_input_writes_nothing_and_the_fixed_one_runs(model_dir, tmp_path, capsys):
    good = {"context": CONTEXT, "question": QUESTION, "answer": "under a tile"}
    inp = _write(tmp_path / "in.jsonl", [good, {**good, "context": " ".join([CONTEXT] * 40)}])
    out = tmp_path / "mon"
    argv = ["monitor", "score", "--model", str(model_dir), "--scores", str(model_dir / "scores.json"),
            "--input", str(inp), "--out", str(out)]
    code, _, err = _run(argv, capsys)
    assert code == 2 and "line 2" in _one_error(err) and "over the model's context of 256" in err
    assert not out.exists()
    _write(inp, [good, {**good, "answer": "in Paris"}])
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert (out / "items.jsonl").is_file() and json.loads((out / "summary.json").read_text())["n"] == 2


def test_folders_given_for_files_say_so(model_dir, tmp_path, capsys):
    base = ["monitor", "--model", str(model_dir), "--scores", str(model_dir / "scores.json"), "--question", QUESTION]
    code, _, err = _run(base + ["--context", str(tmp_path)], capsys)
    assert code == 2 and _one_error(err).endswith(f"context file {tmp_path} is a folder: give a UTF-8 text file")
    ctx = tmp_path / "doc.txt"
    ctx.write_text(CONTEXT)
    (tmp_path / "page").mkdir()
    for flag in ("--html", "--json"):
        code, _, err = _run(base + ["--context", str(ctx), flag, str(tmp_path / "page")], capsys)
        assert code == 2 and f"{flag} {tmp_path / 'page'} is a folder" in _one_error(err)
    code, _, err = _run(["monitor", "score", "--model", str(model_dir), "--scores", str(model_dir / "scores.json"),
                         "--input", str(tmp_path), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "is a folder" in _one_error(err) and not (tmp_path / "o").exists()


def test_a_prompt_over_the_context_writes_no_html(model_dir, tmp_path, capsys):
    long = tmp_path / "long.txt"
    long.write_text(" ".join([CONTEXT] * 40))
    page, js = tmp_path / "sub" / "a.html", tmp_path / "sub" / "a.json"
    code, _, err = _run(["monitor", "--model", str(model_dir), "--scores", str(model_dir / "scores.json"),
                         "--context", str(long), "--question", QUESTION, "--html", str(page), "--json", str(js)],
                        capsys)
    assert code == 2 and "over the model's context of 256" in _one_error(err) and not (tmp_path / "sub").exists()


def test_library_checks_name_parameters(model, tok, scores, haystack, tmp_path):
    with pytest.raises(ParamError) as e:
        Monitor(model, tok, scores, max_new_tokens=0)
    assert e.value.param == "max_new_tokens" and "--" not in str(e.value)
    with pytest.raises(ParamError) as e:
        Monitor(model, tok, scores, threshold=0.99)
    assert e.value.param == "threshold" and "--" not in str(e.value)
    with pytest.raises(ParamError) as e:
        Monitor(model, tok, scores).run(CONTEXT, QUESTION, max_new_tokens=-1)
    assert e.value.param == "max_new_tokens"
    with pytest.raises(ParamError) as e:
        Monitor(model, tok, scores).score(" ", QUESTION, "x")
    assert e.value.param == "context" and "--" not in str(e.value)
    hay = tmp_path / "hay.txt"
    hay.write_text(haystack)
    sc = tmp_path / "scores.json"
    scores.save(sc)
    cfg = BenchConfig(model=ModelConfig(model="tiny"), scores=str(sc), lengths=[200, 300], depths=[0, 50],
                      haystack=str(hay), max_new_tokens=4, random_seeds=[0])
    with pytest.raises(ParamError) as e:
        prepare(model, tok, cfg)
    assert e.value.param == "lengths" and "up to 252" in str(e.value) and "--" not in str(e.value)
    assert e.value.for_cli({"lengths": "--lengths", "max_new_tokens": "--max-new-tokens"}).startswith(
        "--lengths [200, 300]: ")
