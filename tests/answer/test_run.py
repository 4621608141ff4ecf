"""`rheads answer` end to end on the tiny model: the file formats, resuming without redoing pairs, a busy folder,
the registry in `list` and `--methods all`, and one-line errors for bad input before anything is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from answer_helpers import items
from retrieval_heads.answer import register_method, unregister_method
from retrieval_heads.answer.loop import Answerer
from retrieval_heads.answer.methods.greedy import Greedy
from retrieval_heads.answer.run import AnswerConfig, run_answer
from retrieval_heads.cli.main import main
from retrieval_heads.errors import ParamError, RHeadsError
from retrieval_heads.io.rundir import RunBusy

KEYS = {"id", "method", "answer", "abstained", "hallucination_score", "mean_logprob", "new_tokens", "seconds",
        "correct"}


def write_items(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(scores_path, methods, **kw):
    return AnswerConfig(scores=str(scores_path), methods=methods, max_new_tokens=6, **kw)


def lines(out):
    return [json.loads(x) for x in (out / "answers.jsonl").read_text().splitlines()]


def test_files_and_summary(model, tok, model_dir, tmp_path):
    its = items(2)
    its[1]["answers"] = None  # no gold: correct is null
    out = tmp_path / "run"
    summary = run_answer(model, tok, config(model_dir / "scores.json", ["greedy", "abstain", "cad"]), out, its,
                         progress=False)
    recs = lines(out)
    assert recs[0]["type"] == "header"
    answers = recs[1:]
    assert len(answers) == 6 and {(r["id"], r["method"]) for r in answers} == {
        (i["id"], m) for i in its for m in ("greedy", "abstain", "cad")}
    for r in answers:
        assert KEYS <= set(r)
        assert r["seconds"] > 0 and r["new_tokens"] <= 6
        assert (r["correct"] is None) == (r["id"] == "q1")
        if r["abstained"]:
            assert r["answer"] == "I cannot answer from the context." and r["correct"] in (False, None)
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["methods"] == ["greedy", "abstain", "cad"] and cfg["params"]["cad"] == {"a": 0.5}
    assert AnswerConfig.from_dict(cfg).params == cfg["params"]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["methods"] == summary["methods"]
    for m, s in summary["methods"].items():
        mine = [r for r in answers if r["method"] == m]
        assert s["n"] == 2 and s["n_gold"] == 1
        gold = [r for r in mine if r["correct"] is not None]
        assert s["accuracy"] == float(gold[0]["correct"])
        assert s["abstention_rate"] == sum(r["abstained"] for r in mine) / 2
        kept = [r for r in gold if not r["abstained"]]
        assert s["selective_accuracy"] == (float(kept[0]["correct"]) if kept else None)
        assert s["mean_seconds"] == pytest.approx(sum(r["seconds"] for r in mine) / 2, abs=1e-3)


def test_hallucination_score_is_the_monitor_score_of_the_generated_answer(model, tok, model_dir, tmp_path,
                                                                            answerer):
    its = items(1)
    out = tmp_path / "run"
    run_answer(model, tok, config(model_dir / "scores.json", ["greedy"]), out, its, progress=False)
    r = lines(out)[1]
    want = answerer.monitor.score(its[0]["context"], its[0]["question"], r["generated"]).hallucination_score
    assert r["hallucination_score"] == pytest.approx(want, abs=1e-6) or r["new_tokens"] == 0


def test_resume_redoes_nothing_finished(model, tok, model_dir, tmp_path, monkeypatch):
    its = items(2)
    out = tmp_path / "run"
    cfg = lambda: config(model_dir / "scores.json", ["greedy", "cad"])  # noqa: E731
    first = run_answer(model, tok, cfg(), out, its, progress=False)
    text = (out / "answers.jsonl").read_text().splitlines()
    (out / "answers.jsonl").write_text("\n".join(text[:-1]) + "\n")  # the last pair was interrupted
    calls = []
    real = Answerer.answer

    def counted(self, method, context, question, *a, **kw):
        calls.append(method.name)
        return real(self, method, context, question, *a, **kw)

    monkeypatch.setattr(Answerer, "answer", counted)
    again = run_answer(model, tok, cfg(), out, its, progress=False)
    assert calls == ["cad"] and len(lines(out)) == 5
    assert {m: {k: v for k, v in s.items() if k != "mean_seconds"} for m, s in again["methods"].items()} == \
        {m: {k: v for k, v in s.items() if k != "mean_seconds"} for m, s in first["methods"].items()}
    run_answer(model, tok, cfg(), out, its, progress=False)
    assert calls == ["cad"]
    with pytest.raises(ParamError, match="different setup"):
        run_answer(model, tok, AnswerConfig(scores=str(model_dir / "scores.json"), methods=["greedy"],
                                            max_new_tokens=7), out, its, progress=False)
    with pytest.raises(ParamError, match="other parameters"):
        run_answer(model, tok, config(model_dir / "scores.json", ["cad"], params={"cad": {"a": 1.0}}), out, its,
                   progress=False)


def test_a_later_run_adds_its_methods_to_the_folder(model, tok, model_dir, tmp_path, monkeypatch):
    its = items(2)
    out = tmp_path / "run"
    run_answer(model, tok, config(model_dir / "scores.json", ["greedy", "cad"]), out, its, progress=False)
    calls = []
    real = Answerer.answer
    monkeypatch.setattr(Answerer, "answer", lambda self, m, *a, **kw: calls.append(m.name) or real(self, m, *a, **kw))
    summary = run_answer(model, tok, config(model_dir / "scores.json", ["cad", "abstain"]), out, its, progress=False)
    assert calls == ["abstain", "abstain"]
    assert list(summary["methods"]) == ["greedy", "cad", "abstain"]
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["methods"] == ["greedy", "cad", "abstain"] and set(cfg["params"]) == {"greedy", "cad", "abstain"}
    assert {(r["id"], r["method"]) for r in lines(out)[1:]} == {(i["id"], m) for i in its
                                                                for m in ("greedy", "cad", "abstain")}


def test_a_parameter_gained_since_an_old_run_counts_as_its_default(model, tok, model_dir, tmp_path):
    its = items(1)
    out = tmp_path / "run"
    run_answer(model, tok, config(model_dir / "scores.json", ["abstain"]), out, its, progress=False)
    meta = json.loads((out / "config.json").read_text())
    del meta["config"]["params"]["abstain"]["max_score"]  # as written before abstain had max_score
    (out / "config.json").write_text(json.dumps(meta))
    run_answer(model, tok, config(model_dir / "scores.json", ["abstain", "greedy"]), out, its, progress=False)
    with pytest.raises(ParamError, match="other parameters"):
        run_answer(model, tok, config(model_dir / "scores.json", ["abstain"], params={"abstain": {"max_score": 0.5}}),
                   out, its, progress=False)


def test_busy_folder_is_refused(model, tok, model_dir, tmp_path):
    import socket

    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (out / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid, "start": None}))
        with pytest.raises(RunBusy):
            run_answer(model, tok, config(model_dir / "scores.json", ["greedy"]), out, items(1), progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "answers.jsonl").exists()


def test_a_registered_method_shows_in_list_and_all(model_dir, tmp_path, capsys):
    @register_method("test_echo")
    class Echo(Greedy):
        help = "a test method"
        baseline = False

    try:
        assert main(["answer", "list"]) == 0
        listed = capsys.readouterr().out.splitlines()
        names = [x.split()[0] for x in listed]
        assert "test_echo" in names and len(names) == len(set(names))
        assert all((" baseline " in x) == (x.split()[0] in ("greedy", "cad", "decore")) for x in listed)
        src = write_items(tmp_path / "items.jsonl", items(1))
        out = tmp_path / "run"
        assert main(["answer", "--model", str(model_dir), "--scores", str(model_dir / "scores.json"), "--input",
                     str(src), "--methods", "all", "--max-new-tokens", "4", "--out", str(out)]) == 0
        done = {r["method"] for r in lines(out)[1:]}
        assert "test_echo" in done and {"greedy", "cad", "decore", "copy", "gated", "abstain"} <= done
        assert "| test_echo |" in capsys.readouterr().out
    finally:
        unregister_method("test_echo")


BAD = [
    ('{"context": "a b", "question": "q"}\nnot json\n', "line 2 is not valid JSON"),
    ('{"context": "a b"}\n', "line 1 has no 'question'"),
    ('{"context": "", "question": "q"}\n', "line 1: 'context' must be a non-empty string"),
    ('{"context": "a", "question": "q", "answers": [1]}\n', "line 1: 'answers' must be a list"),
    ('{"id": "x", "context": "a", "question": "q"}\n{"id": "x", "context": "a", "question": "q"}\n',
     "line 2: id 'x' is used twice"),
    ('\n\n', "holds no items"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_input_is_one_line_before_anything_is_written(model_dir, tmp_path, capsys, text, message):
    src = tmp_path / "items.jsonl"
    src.write_text(text)
    out = tmp_path / "run"
    code = main(["answer", "--model", str(model_dir), "--scores", str(model_dir / "scores.json"), "--input",
                 str(src), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err and str(src) in err
    assert not out.exists()


def test_bad_methods_and_params_name_their_flags(model_dir, tmp_path, capsys):
    src = write_items(tmp_path / "items.jsonl", items(1))
    base = ["answer", "--model", str(model_dir), "--scores", str(model_dir / "scores.json"), "--input", str(src),
            "--out", str(tmp_path / "run")]
    for extra, flag in ((["--methods", "greedy,nope"], "--methods nope"), (["--param", "cad.b=1", "--methods", "cad"],
                        "--param cad.b"), (["--param", "cad"], "--param cad"),
                        (["--param", "copy:k01.k=10", "--methods", "copy,copy:k1"], "--param copy:k01.k")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and flag in err, err
    assert not (tmp_path / "run").exists()


def test_a_prompt_over_the_context_names_its_line(model, tok, model_dir, tmp_path):
    its = items(1) + [{"id": "long", "line": 7, "context": "river " * 400, "question": "q", "answers": None}]
    with pytest.raises(RHeadsError, match="line 7"):
        run_answer(model, tok, config(model_dir / "scores.json", ["greedy"], input="x.jsonl"), tmp_path / "r", its,
                   progress=False)
    assert not (tmp_path / "r").exists()


def test_help_and_list_import_no_torch():
    code = ("import sys, contextlib, io\nfrom retrieval_heads.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    main(['answer', 'list'])\n"
            "print([m for m in ('torch', 'transformers') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-800:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
