"""JSONL and JSON files that survive a killed process, and never lose a record to a bad line."""

import json
import threading
import warnings

from retrieval_heads.io.jsonl import JsonlWriter, atomic_write_json, read_jsonl


def _write(f, *records):
    with JsonlWriter(f) as w:
        for r in records:
            w.write(r)


def _one_line(err: str, words: str) -> None:
    """The notice is one plain line on stderr: no Python warning, no source line."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and words in lines[0], err
    assert "UserWarning" not in err and ".py:" not in err


def test_torn_last_line_is_skipped_then_cut_before_the_next_append(tmp_path, capfd):
    f = tmp_path / "x.jsonl"
    _write(f, {"a": 1}, {"a": 2})
    with open(f, "a") as fh:
        fh.write('{"a": 3, "b"')  # a write killed half-way
    before = f.read_bytes()
    assert read_jsonl(f) == [{"a": 1}, {"a": 2}]
    assert f.read_bytes() == before  # reading never modifies the file
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Python warning any more
        _write(f, {"a": 3})
    _one_line(capfd.readouterr().err, "cut a torn last record (12 bytes)")
    assert read_jsonl(f) == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_record_complete_but_for_its_newline_is_kept_not_glued(tmp_path):
    f = tmp_path / "x.jsonl"
    _write(f, {"a": 1})
    with open(f, "a") as fh:
        fh.write('{"a": 2}')  # killed between the record and its newline
    _write(f, {"a": 3})  # the old writer glued this onto the line above; the next resume then cut both
    assert f.read_text().splitlines() == ['{"a": 1}', '{"a": 2}', '{"a": 3}']
    assert read_jsonl(f) == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_bad_line_in_the_middle_is_reported_and_later_records_kept(tmp_path, capfd):
    f = tmp_path / "x.jsonl"
    f.write_text('{"a": 1}\nnot json\n{"a": 2}{"a": 3}\n{"a": 4}\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        recs = read_jsonl(f)
    _one_line(capfd.readouterr().err, f"{f}, line 2: not valid JSON, skipped")
    assert recs == [{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}]  # a glued pair from an old writer is recovered too
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_atomic_writes_use_unique_temporaries(tmp_path):
    target = tmp_path / "summary.json"
    errors = []

    def write(i):
        try:
            for j in range(30):
                atomic_write_json(target, {"writer": i, "n": j, "pad": "x" * 2000})
        except Exception as e:  # a shared temporary name races: one rename finds its file gone
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert json.loads(target.read_text())["n"] == 29
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary left behind
