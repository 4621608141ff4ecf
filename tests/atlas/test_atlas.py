"""The head atlas: shipped entries and their fields, `rheads atlas list/show/add/figure`, `atlas:NAME` wherever
a score file is taken, the entry format's checks, and the paper entries against the paper's raw files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from retrieval_heads.atlas import SHIPPED_DIR, find_entry, list_entries, read_entry, write_entry
from retrieval_heads.atlas.build import PAPER_MODELS, build_shipped, entry_from_run
from retrieval_heads.atlas.match import file_sha256
from retrieval_heads.cli.main import main
from retrieval_heads.errors import RHeadsError
from retrieval_heads.heads.masks import resolve_mask
from retrieval_heads.heads.scores import HeadScores

ROOT = Path(__file__).resolve().parents[2]
MIRROR = Path("/work/.mirror/nightdessert+Retrieval_Head/repo")


def _run(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    got = capsys.readouterr()
    return code, got.out, got.err


def _one_error(err: str) -> str:
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("rheads: error: "), err
    return lines[0]


def test_the_shipped_entries_are_our_runs_and_the_papers_seven():
    entries = {e.name: e for e in list_entries()}
    assert set(entries) == {p.stem for p in SHIPPED_DIR.glob("*.json")}
    assert {"smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"} <= set(entries)
    assert {v[0] for v in PAPER_MODELS.values()} <= set(entries)
    for e in entries.values():
        assert (e.num_layers, e.num_heads) == (e.model["num_layers"], e.model["num_heads"])
        assert e.samples.max() == e.n_samples > 0 and e.mean.min() >= 0
        if e.kind == "paper":
            assert {"repository", "commit", "file", "license"} <= set(e.source) and len(e.source["commit"]) == 40
            _, _, _, L, H, _, _ = PAPER_MODELS[Path(e.source["file"]).name]
            assert (e.num_layers, e.num_heads) == (L, H)  # the model's known shape
        else:
            assert e.kind == "run" and len(e.sha256) == 64 and e.weights["file"].endswith(".gguf")
            run = ROOT / e.source["run"]
            assert json.loads((run / "summary.json").read_text())["n_counted"] == e.n_samples
            assert np.array_equal(e.mean, HeadScores.load(run).mean())


def test_list_shows_every_entry_with_every_field(capsys):
    code, out, _ = _run(["atlas", "list"], capsys)
    assert code == 0
    blocks = {b.splitlines()[0].split()[0]: b for b in out.split("\n\n") if b.startswith("atlas:")}
    entries = list_entries()
    assert set(blocks) == {f"atlas:{e.name}" for e in entries}
    for e in entries:
        block = blocks[f"atlas:{e.name}"]
        for label in ("model", "weights", "dtype", "probe", "samples", "tool", "source"):
            assert f"\n  {label} " in block, (e.name, label)
        assert e.model["name"] in block and f"{e.n_samples} counted" in block and e.tool_version in block
        assert e.source_line() in block
        if e.sha256:
            assert e.sha256 in block and e.weights["file"] in block
        if e.kind == "paper":
            assert e.source["commit"][:12] in block and "no license file" in block
    code, out, _ = _run(["atlas", "list", "--json"], capsys)
    rows = json.loads(out)
    assert code == 0 and len(rows) == len(entries)
    assert all({"model", "weights", "dtype", "probe", "n_samples", "tool_version", "source"} <= set(r) for r in rows)


def test_add_registers_a_run_that_is_then_listed_and_loadable(run_dir, atlas_home, capsys):
    code, out, _ = _run(["atlas", "add", str(run_dir), "--name", "tiny-run"], capsys)
    assert code == 0 and (atlas_home / "tiny-run.json").is_file() and "atlas:tiny-run" in out
    code, out, _ = _run(["atlas", "list"], capsys)
    assert "atlas:tiny-run  (user: " in out and "retrieval-heads 9.9.9" in out and "bfloat16" in out
    from_file, from_atlas = HeadScores.load(run_dir / "scores.json"), HeadScores.load("atlas:tiny-run")
    assert np.array_equal(from_atlas.mean(), from_file.mean()) and from_atlas.n_samples == from_file.n_samples == 5
    assert from_atlas.ranked() == from_file.ranked() and from_atlas.source == "atlas:tiny-run"
    e = find_entry("atlas:tiny-run")
    assert e.sha256 == file_sha256(run_dir.parent.parent / "tiny-model.gguf") and e.probe["seed"] == 7
    # masks take it as they take the file
    assert resolve_mask("top:3", "atlas:tiny-run", 3, 4) == resolve_mask("top:3", str(run_dir / "scores.json"), 3, 4)
    with pytest.raises(RHeadsError, match="30 layers x 9 heads"):
        resolve_mask("top:3", "atlas:smollm2-135m", 3, 4)


def test_add_refuses_a_taken_name_unless_overwritten_and_never_a_shipped_one(run_dir, capsys):
    assert _run(["atlas", "add", str(run_dir), "--name", "tiny-run"], capsys)[0] == 0
    code, _, err = _run(["atlas", "add", str(run_dir), "--name", "tiny-run"], capsys)
    assert code == 2 and "--overwrite" in _one_error(err) and "--name" in err
    assert _run(["atlas", "add", str(run_dir), "--name", "tiny-run", "--overwrite"], capsys)[0] == 0
    code, _, err = _run(["atlas", "add", str(run_dir), "--name", "smollm2-135m"], capsys)
    assert code == 2 and "shipped" in _one_error(err)
    code, _, err = _run(["atlas", "add", str(run_dir.parent), "--name", "x"], capsys)
    assert code == 2 and "config.json" in _one_error(err)
    code, _, err = _run(["atlas", "add", str(run_dir), "--name", "Bad Name"], capsys)
    assert code == 2 and "not valid" in _one_error(err)


def test_a_user_entry_may_repeat_a_shipped_one_but_not_contradict_it(atlas_home):
    shipped = find_entry("smollm2-135m")
    atlas_home.mkdir()
    shutil.copy(shipped.path, atlas_home / "smollm2-135m.json")
    assert find_entry("smollm2-135m").path == shipped.path
    shipped.mean[0, 0] += 0.5
    write_entry(shipped, atlas_home / "smollm2-135m.json")
    with pytest.raises(RHeadsError, match="other scores"):
        HeadScores.load("atlas:smollm2-135m")


def test_unknown_and_malformed_entries_are_one_line_errors(atlas_home, tmp_path):
    with pytest.raises(RHeadsError, match="known: .*smollm2-135m"):
        HeadScores.load("atlas:no-such-model")
    with pytest.raises(RHeadsError, match="needs an entry name"):
        HeadScores.load("atlas:")
    e = find_entry("gemma3-270m")
    raw = e.to_json()
    for change, message in (({"format": "other"}, "not an atlas entry"), ({"version": 99}, "upgrade"),
                            ({"mean": [[0.1, 0.2]]}, "one layer x head shape"), ({"dtype": None, "probe": None}, None)):
        path = tmp_path / "entry.json"
        path.write_text(json.dumps({**raw, **change}))
        if message is None:
            assert read_entry(path).dtype is None
        else:
            with pytest.raises(RHeadsError, match=message):
                read_entry(path)
    bad = dict(raw)
    del bad["samples"]
    path.write_text(json.dumps(bad))
    with pytest.raises(RHeadsError, match="lacks samples"):
        read_entry(path)


def test_means_only_scores_keep_their_means_and_take_no_samples():
    s = HeadScores.load("atlas:qwen2.5-coder-0.5b")
    with pytest.raises(RHeadsError, match="means only"):
        s.add_sample(np.zeros((s.num_layers, s.num_heads)))
    again = HeadScores.from_paper(s.to_paper())
    assert np.array_equal(again.mean(), s.mean()) and again.top(10) == s.top(10)


def test_rebuilding_from_the_run_reproduces_the_shipped_entry(tmp_path):
    shipped = find_entry("smollm2-135m")
    rebuilt = entry_from_run(ROOT / shipped.source["run"], "smollm2-135m")
    assert np.array_equal(rebuilt.mean, shipped.mean) and np.array_equal(rebuilt.samples, shipped.samples)
    assert rebuilt.probe == shipped.probe and rebuilt.n_samples == shipped.n_samples
    if rebuilt.sha256 is not None:  # the GGUF is installed here
        assert rebuilt.weights == shipped.weights
    runs = tmp_path / "runs"
    shutil.copytree(ROOT / shipped.source["run"], runs / "smollm2")
    (path,) = build_shipped(runs, None, tmp_path / "out")
    again = read_entry(path)
    assert path.name == "smollm2-135m.json" and np.array_equal(again.mean, shipped.mean)
    assert again.weights == rebuilt.weights and again.source["run"] == (runs / "smollm2").as_posix()


@pytest.mark.parametrize("file", sorted(PAPER_MODELS))
def test_paper_entries_are_the_means_of_the_raw_files(file):
    if not (MIRROR / "HEAD").exists() or shutil.which("git") is None:
        pytest.skip("needs the local clone of nightdessert/Retrieval_Head")
    git = ["git", f"--git-dir={MIRROR}"]
    raw = json.loads(subprocess.run([*git, "show", f"HEAD:head_score/{file}"], capture_output=True, check=True).stdout)
    entry = find_entry(PAPER_MODELS[file][0])
    assert entry.source["commit"] == subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                                                    check=True).stdout.strip()
    paper, ours = HeadScores.from_paper(raw), HeadScores.load(f"atlas:{entry.name}")
    assert np.array_equal(ours.mean(), paper.mean()) and ours.n_samples == paper.n_samples
    assert ours.above(0.1) == paper.above(0.1) and ours.top(20) == paper.top(20)
    assert {k: len(v) for k, v in raw.items()} == {f"{l}-{h}": int(entry.samples[l, h]) for l in range(entry.num_layers)
                                                   for h in range(entry.num_heads)}


def test_the_figure_is_written(tmp_path, capsys):
    out = tmp_path / "atlas.png"
    code, text, _ = _run(["atlas", "figure", "--out", str(out)], capsys)
    assert code == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"{len(list_entries())} entries" in text
    code, _, err = _run(["atlas", "figure", "--out", str(tmp_path / "b.png"), "--names", "smollm2-135m,nope"], capsys)
    assert code == 2 and "nope" in _one_error(err)


def test_show_lists_the_best_heads(capsys):
    code, out, _ = _run(["atlas", "show", "atlas:smollm2-135m", "--top", "3"], capsys)
    (l, h), *rest = HeadScores.load("atlas:smollm2-135m").top(3)
    assert code == 0 and f"top heads: {l}-{h} " in out
    assert all(f", {l}-{h} " in out.split("top heads: ")[1] for l, h in rest)
