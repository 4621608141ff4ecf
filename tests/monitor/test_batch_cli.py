"""`rheads monitor score` and the `rheads monitor` command on a tiny model saved to a directory: JSONL in and out
in input order, resuming, and the one-line errors the issue lists (an empty context, a question missing from the
input, a context longer than the model's, a score file from another model) plus bad JSONL lines by number."""

from __future__ import annotations

import json

import pytest

from retrieval_heads.cli.main import main
from retrieval_heads.errors import RHeadsError
from retrieval_heads.io.jsonl import read_jsonl
from retrieval_heads.monitor.batch import read_items

CONTEXT = "The key to the Ashcombe observatory is kept under a loose floor tile. The river town had an old market."
QUESTION = "Where is the key to the Ashcombe observatory kept?"


def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def _run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_error(err: str) -> str:
    """The error line of a failed command (model loading may draw progress bars on stderr before it)."""
    lines = [l for l in err.replace("\r", "\n").splitlines() if l.startswith("rheads")]
    assert len(lines) == 1 and lines[0].startswith("rheads: error: "), err
    return lines[0]


def test_read_items_names_the_bad_line(tmp_path):
    good = {"context": CONTEXT, "question": QUESTION, "answer": "under a tile"}
    cases = [("{not json", "line 2 is not valid JSON"),
             (json.dumps({"context": CONTEXT, "answer": "x"}), "line 2 has no 'question'"),
             (json.dumps({**good, "context": " "}), "line 2: 'context' must be a non-empty string"),
             (json.dumps([1, 2]), "line 2 is not a JSON object"),
             (json.dumps({**good, "id": "line-1"}), "id 'line-1' is used twice")]
    for bad, msg in cases:
        p = _write(tmp_path / "in.jsonl", [good, bad])
        with pytest.raises(RHeadsError, match=msg) as e:
            read_items(p)
        assert "\n" not in str(e.value)
    with pytest.raises(RHeadsError, match="holds no items"):
        read_items(_write(tmp_path / "empty.jsonl", [""]))


def test_monitor_score_writes_records_in_input_order_and_resumes(model_dir, tmp_path, capsys):
    rows = [{"id": "b", "context": CONTEXT, "question": QUESTION, "answer": "under a loose floor tile"},
            {"context": CONTEXT, "question": QUESTION, "answer": "in a drawer in Paris"},
            {"id": "a", "context": CONTEXT, "question": QUESTION, "answer": ""}]
    inp = _write(tmp_path / "items.jsonl", rows)
    out = tmp_path / "mon"
    argv = ["monitor", "score", "--model", str(model_dir), "--scores", str(model_dir / "scores.json"),
            "--input", str(inp), "--out", str(out)]
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    recs = [r for r in read_jsonl(out / "items.jsonl") if r.get("type") == "item"]
    assert [r["id"] for r in recs] == ["b", "line-2", "a"]
    for r in recs[:2]:
        assert len(r["tokens"]) == len(r["token_scores"]) == r["n_tokens"] > 0
        assert 0 <= r["hallucination_score"] <= 1 and r["mean_logprob"] <= 0 and r["min_logprob"] <= r["mean_logprob"]
        assert r["max_entropy"] >= r["mean_entropy"] > 0 and "".join(r["tokens"]) == rows[recs.index(r)]["answer"]
    assert recs[2]["n_tokens"] == 0 and recs[2]["hallucination_score"] is None
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 3 and sum(summary["verdicts"].values()) == 3
    # resuming scores nothing twice; another input in the same directory is refused
    assert _run(argv, capsys)[0] == 0
    assert len([r for r in read_jsonl(out / "items.jsonl") if r.get("type") == "item"]) == 3
    _write(inp, rows[:2])
    code, _, err = _run(argv, capsys)
    assert code == 2 and "different items" in err


def test_the_issue_errors_are_one_line(model_dir, tmp_path, capsys):
    base = ["monitor", "--model", str(model_dir), "--scores", str(model_dir / "scores.json")]
    ctx = tmp_path / "doc.txt"
    ctx.write_text("   \n")
    code, _, err = _run(base + ["--context", str(ctx), "--question", QUESTION], capsys)
    assert code == 2 and "context file" in _one_error(err) and "is empty" in err
    ctx.write_text(CONTEXT)
    code, _, err = _run(base + ["--context", str(ctx)], capsys)
    assert code == 2 and "needs --question" in _one_error(err)
    long = tmp_path / "long.txt"
    long.write_text(" ".join([CONTEXT] * 40))
    code, _, err = _run(base + ["--context", str(long), "--question", QUESTION], capsys)
    assert code == 2 and "over the model's context of 256" in _one_error(err)
    code, _, err = _run(["monitor", "--model", str(model_dir), "--scores", str(model_dir / "other.json"),
                         "--context", str(ctx), "--question", QUESTION], capsys)
    assert code == 2 and "has 5 layers x 4 heads but the model has 3 x 4" in _one_error(err)
    inp = _write(tmp_path / "q.jsonl", [{"context": CONTEXT, "answer": "x"}])
    code, _, err = _run(["monitor", "score", "--model", str(model_dir), "--scores", str(model_dir / "scores.json"),
                         "--input", str(inp), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "line 1 has no 'question'" in _one_error(err)


def test_monitor_generates_and_writes_html_and_json(model_dir, tmp_path, capsys):
    ctx = tmp_path / "doc.txt"
    ctx.write_text(CONTEXT)
    page, js = tmp_path / "a.html", tmp_path / "a.json"
    code, out, err = _run(["monitor", "--model", str(model_dir), "--scores", str(model_dir / "scores.json"),
                           "--context", str(ctx), "--question", QUESTION, "--max-new-tokens", "6", "--html", str(page),
                           "--json", str(js)], capsys)
    assert code == 0, err
    assert "hallucination score:" in out and "verdict:" in out and page.is_file()
    rep = json.loads(js.read_text())
    assert rep["question"] == QUESTION and len(rep["tokens"]) <= 6 and rep["verdict"] in out


def test_monitor_bench_command_with_unanswerable_items(model_dir, haystack, tmp_path, capsys):
    hay = tmp_path / "hay.txt"
    hay.write_text(haystack)
    out = tmp_path / "bench"
    code, stdout, _ = _run(["monitor", "bench", "--model", str(model_dir), "--scores", str(model_dir / "scores.json"),
                            "--haystack", str(hay), "--lengths", "200", "--depths", "0,50", "--niah-per-cell", "0",
                            "--cf-per-cell", "0", "--unanswerable-per-cell", "1", "--limit", "3",
                            "--max-new-tokens", "4", "--random-seeds", "1", "--out", str(out)], capsys)
    assert code == 0 and "results in" in stdout
    recs = [r for r in read_jsonl(out / "items.jsonl") if r.get("type") == "item"]
    assert len(recs) == 3 and {r["kind"] for r in recs} == {"unanswerable"} and {r["gold"] for r in recs} == {""}
    assert json.loads((out / "config.json").read_text())["config"]["unanswerable_per_cell"] == 1
