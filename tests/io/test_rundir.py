"""Run directories: resume only the same run (config, model, data), refuse others in one line advising
overwrite (--overwrite in the CLI), accept options added later at their defaults, refuse a newer format."""

import json
import os
import socket

import pytest

from retrieval_heads.cli.flags import cli_message
from retrieval_heads.errors import RHeadsError
from retrieval_heads.io.rundir import claim_run_dir, config_diff, open_run
from retrieval_heads.version import FORMAT_VERSION

MODEL = {"spec": "smollm2-135m", "family": "llama", "num_layers": 30, "num_heads": 9, "num_kv_heads": 3,
         "dtype": "torch.float32"}


def _meta(**kw):
    return {"version": FORMAT_VERSION, "config": {"a": 1, "nested": {"b": 2}}, "model_key": MODEL,
            "data_sha": "abc", **kw}


KEYS = ("config", "model_key", "data_sha")


def test_same_run_resumes_with_its_records(tmp_path):
    done, w = open_run(tmp_path, _meta(), keys=KEYS, jsonl="s.jsonl", kind="sample")
    w.write({"type": "sample", "id": "x", "v": 1})
    w.close()
    done, w = open_run(tmp_path, _meta(), keys=KEYS, jsonl="s.jsonl", kind="sample")
    w.close()
    assert done == {"x": {"type": "sample", "id": "x", "v": 1}}


@pytest.mark.parametrize("change, what", [
    ({"config": {"a": 2, "nested": {"b": 2}}}, "different config (a)"),
    ({"model_key": {**MODEL, "dtype": "torch.bfloat16"}}, "different model (dtype torch.float32 vs torch.bfloat16)"),
    ({"model_key": {**MODEL, "spec": "qwen2.5-coder-0.5b"}}, "different model (spec"),
    ({"data_sha": "def"}, "different data"),
])
def test_another_run_is_refused_in_one_line_naming_overwrite(tmp_path, change, what):
    claim_run_dir(tmp_path, _meta(), keys=KEYS)
    with pytest.raises(RHeadsError, match=r"start over there \(overwrite\)") as e:
        claim_run_dir(tmp_path, _meta(**change), keys=KEYS)
    assert what in str(e.value) and "\n" not in str(e.value) and "--" not in str(e.value)  # no flag in the library
    assert cli_message(e.value).startswith(f"--out {tmp_path}: holds a run with a different ")
    assert cli_message(e.value).endswith("start over there (--overwrite) or use another --out")
    (tmp_path / "keep.txt").write_text("x")
    claim_run_dir(tmp_path, _meta(**change), keys=KEYS, overwrite=True)  # starts over
    assert not (tmp_path / "keep.txt").exists()


def test_options_added_later_are_accepted_at_their_default(tmp_path):
    claim_run_dir(tmp_path, _meta(), keys=KEYS)
    new = _meta(config={"a": 1, "nested": {"b": 2, "c": None}, "d": [1]})
    defaults = {"config": {"a": 0, "nested": {"b": 0, "c": None}, "d": [1]}}
    claim_run_dir(tmp_path, new, keys=KEYS, defaults=defaults)  # c and d at their defaults: the old behaviour
    with pytest.raises(RHeadsError, match=r"config \(d\)"):
        claim_run_dir(tmp_path, _meta(config={"a": 1, "nested": {"b": 2, "c": None}, "d": [2]}), keys=KEYS,
                      defaults=defaults)
    assert config_diff({"a": 1}, {"a": 1, "b": 2}, {"b": 3}) == ["b"]


def test_directories_from_before_the_model_key_check_the_stored_shape(tmp_path):
    legacy = {"version": 1, "config": {"a": 1, "nested": {"b": 2}},
              "model": {**{k: v for k, v in MODEL.items() if k != "spec"}, "name_or_path": "/old/cache/path"}}
    (tmp_path / "config.json").write_text(json.dumps(legacy))
    claim_run_dir(tmp_path, _meta(), keys=KEYS)  # same shape and dtype; no data hash stored: accepted
    (tmp_path / "config.json").write_text(json.dumps(legacy))
    with pytest.raises(RHeadsError, match="num_heads 9 vs 14"):
        claim_run_dir(tmp_path, _meta(model_key={**MODEL, "num_heads": 14}), keys=KEYS)


def test_newer_format_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**_meta(), "version": FORMAT_VERSION + 1}))
    with pytest.raises(RHeadsError, match="newer retrieval-heads"):
        claim_run_dir(tmp_path, _meta(), keys=KEYS)


# ------------------------------------------------------------------------------------------- the writer's lock


def _live_process():
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def _hold(tmp_path, pid):
    from retrieval_heads.io.rundir import LOCK, _start_time

    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "start": _start_time(pid)}))


def test_open_run_locks_until_the_writer_closes(tmp_path):
    from retrieval_heads.io.rundir import LOCK

    done, w = open_run(tmp_path, _meta(), keys=KEYS, jsonl="s.jsonl", kind="sample")
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    done, w2 = open_run(tmp_path, _meta(), keys=KEYS, jsonl="s.jsonl", kind="sample")  # the same process may
    w2.close()
    w.close()
    assert not (tmp_path / LOCK).exists()


def test_a_live_writer_makes_the_run_busy_even_with_overwrite(tmp_path):
    from retrieval_heads.io.rundir import RunBusy

    p = _live_process()
    try:
        _hold(tmp_path, p.pid)
        for overwrite in (False, True):
            with pytest.raises(RunBusy, match=f"process {p.pid}: wait for it") as e:
                open_run(tmp_path, _meta(), keys=KEYS, jsonl="s.jsonl", kind="sample", overwrite=overwrite)
            assert e.value.what == f"{tmp_path} is being written by process {p.pid}" and "--" not in str(e.value)
        assert (tmp_path / "config.json").exists() is False  # nothing touched
    finally:
        p.kill()
        p.wait()
    done, w = open_run(tmp_path, _meta(), keys=KEYS, jsonl="s.jsonl", kind="sample")  # its process ended: stale
    w.close()


def test_a_lock_from_another_host_is_refused(tmp_path):
    from retrieval_heads.io.rundir import LOCK, RunBusy

    tmp_path.mkdir(exist_ok=True)
    (tmp_path / LOCK).write_text(json.dumps({"host": "elsewhere", "pid": 1, "start": None}))
    with pytest.raises(RunBusy, match="host elsewhere.*delete"):
        open_run(tmp_path, _meta(), keys=KEYS, jsonl="s.jsonl", kind="sample")
