"""KVConfig: one validation with parameter names, the CLI's rewording, the registry's face, and every committed
run config under docs/runs read through the nested config (old flat `kv_*` fields included). No model needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from retrieval_heads.cli.flags import PARAM_FLAGS, cli_message
from retrieval_heads.errors import ParamError, RHeadsError
from retrieval_heads.evals.niah import NiahConfig
from retrieval_heads.kvcache import KVConfig, KVPolicy, get_policy_class, policy_names, register_policy
from retrieval_heads.kvcache.config import nest_kv
from retrieval_heads.studies.kvsweep import KVSweepConfig

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize("kw, scores, masked, param", [
    (dict(sink=-1), None, False, "kv.sink"),
    (dict(recent=-1), None, False, "kv.recent"),
    (dict(sink=0, recent=0), None, False, "kv.recent"),
    (dict(policy="lru"), None, False, "kv.policy"),
    (dict(policy="retrieval"), None, False, "kv.policy"),  # needs scores
    (dict(policy="retrieval", top=-1), "s.json", False, "kv.top"),
    (dict(policy="random", top=-2), "s.json", False, "kv.top"),
    (dict(prefill="half"), None, False, "kv.prefill"),
    (dict(prefill_chunk=-1), None, False, "kv.prefill_chunk"),
    (dict(policy="streaming", prefill_chunk=64), None, False, "kv.prefill_chunk"),  # a chunk needs the window mode
    (dict(budget=0.5), None, False, "kv.budget"),  # reserved
    (dict(policy="streaming"), None, True, "kv.policy"),  # ablation needs the full cache
])
def test_validate_names_the_parameter(kw, scores, masked, param):
    with pytest.raises(ParamError) as e:
        KVConfig(**kw).validate(scores, masked=masked)
    assert e.value.param == param and "\n" not in str(e.value)
    assert "--" not in str(e.value)  # library messages name parameters, not flags
    assert cli_message(e.value).startswith(f"{PARAM_FLAGS[param]} ")  # the CLI rewords it with the flag


def test_valid_configs_pass():
    assert KVConfig().validate() == KVConfig()
    KVConfig(prefill_chunk=64).validate()  # the full cache drops nothing: chunks need no window
    KVConfig(policy="streaming", prefill="window", prefill_chunk=64, sink=0, recent=1).validate()
    KVConfig(policy="random", top=3, seed=2).validate("s.json")


def test_cli_errors_come_from_the_library(capsys):
    from retrieval_heads.cli.main import main

    for argv, want in ((["niah", "--kv", "streaming", "--recent", "-1"], "--recent -1: "),
                       (["niah", "--kv", "retrieval", "--scores", "s.json", "--kv-top", "-1"], "--kv-top -1: "),
                       (["niah", "--kv", "streaming", "--prefill-chunk", "8"], "use --kv-prefill window"),
                       (["kv-sweep", "--scores", "s.json", "--recent-windows", "64,-3"], "--recent-windows -3: "),
                       (["kv-sweep", "--policies", "full,streaming"], "--scores None: the matched streaming")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert want in err and err.count("\n") == 1


def test_registry_face():
    assert policy_names()[:4] == ["full", "retrieval", "random", "streaming"]  # by `order`, built-ins first
    assert get_policy_class("retrieval").needs_scores and not get_policy_class("full").compresses
    with pytest.raises(ParamError, match="unknown KV policy: use one of full, retrieval"):
        get_policy_class("lru")
    with pytest.raises(RHeadsError, match="already registered"):
        @register_policy("full")
        class Other(KVPolicy):
            pass
    with pytest.raises(RHeadsError, match="lower-case"):
        register_policy("my-policy")
    assert "full" in policy_names() and get_policy_class("full").__name__ == "FullPolicy"


def test_the_registry_and_the_parser_need_no_torch():
    code = ("import sys; from retrieval_heads.cli.main import build_parser; import retrieval_heads.kvcache as k; "
            "build_parser(); k.policy_names(); assert 'torch' not in sys.modules, 'torch'; "
            "assert 'transformers' not in sys.modules, 'transformers'")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_flat_fields_nest():
    flat = {"mask": "none", "kv": "random", "kv_sink": 8, "kv_recent": 64, "kv_threshold": 0.2, "kv_top": 5,
            "kv_seed": 3, "kv_prefill": "window", "prefill_chunk": 32}
    c = NiahConfig.from_dict(flat)
    assert c.kv == KVConfig(policy="random", sink=8, recent=64, threshold=0.2, top=5, seed=3, prefill="window",
                            prefill_chunk=32)
    assert NiahConfig.from_dict(c.to_dict()) == c and nest_kv(c.to_dict()) == c.to_dict()
    s = KVSweepConfig.from_dict({"policies": ["full", "streaming"], "sink": 2, "recent": [8, 16], "kv_top": 4,
                                 "kv_threshold": 0.3, "kv_seed": 1, "kv_prefill": "window", "prefill_chunk": 16})
    assert s.recent_windows == [8, 16] and s.kv == KVConfig(sink=2, top=4, threshold=0.3, seed=1, prefill="window",
                                                             prefill_chunk=16)
    assert KVSweepConfig.from_dict(s.to_dict()) == s


def _committed_configs() -> list[tuple[Path, dict]]:
    out = []
    for path in sorted((ROOT / "docs" / "runs").rglob("config.json")):
        cfg = json.loads(path.read_text()).get("config")
        if isinstance(cfg, dict):
            out.append((path, cfg))
    return out


def test_every_committed_run_config_loads():
    """NIAH run dirs (a probe and a mask) and kv-sweep dirs (policies and matched_streaming) under docs/runs read
    through the nested config with every KV field kept."""
    niah = sweep = 0
    for path, cfg in _committed_configs():
        if "policies" in cfg and "matched_streaming" in cfg:
            c = KVSweepConfig.from_dict(cfg)
            sweep += 1
            assert c.policies == cfg["policies"], path
            if isinstance(cfg.get("kv"), dict):  # written with the nested config
                assert c.recent_windows == cfg["recent_windows"], path
                assert c.kv.to_dict() == {**KVConfig().to_dict(), **cfg["kv"]}, path
            else:  # an older, flat config
                assert c.recent_windows == cfg["recent"], path
                for old, new in (("sink", "sink"), ("kv_threshold", "threshold"), ("kv_top", "top"),
                                 ("kv_seed", "seed"), ("kv_prefill", "prefill"), ("prefill_chunk", "prefill_chunk")):
                    assert getattr(c.kv, new) == cfg.get(old, getattr(KVConfig(), new)), (path, old)
        elif "probe" in cfg and "mask" in cfg:
            c = NiahConfig.from_dict(cfg)
            niah += 1
            assert c.mask == cfg["mask"], path
            if isinstance(cfg.get("kv"), dict):  # a run written with the nested config: every field as written
                assert c.kv.to_dict() == {**KVConfig().to_dict(), **cfg["kv"]}, path
            else:  # an older, flat config: kv is the policy name and kv_* the fields
                assert c.kv.policy == cfg.get("kv", "full"), path
                for old, new in (("kv_sink", "sink"), ("kv_recent", "recent"), ("kv_threshold", "threshold"),
                                 ("kv_top", "top"), ("kv_seed", "seed"), ("kv_prefill", "prefill"),
                                 ("prefill_chunk", "prefill_chunk")):
                    assert getattr(c.kv, new) == cfg.get(old, getattr(KVConfig(), new)), (path, old)
            c.kv.validate(c.scores)  # a committed run's settings are still valid
        else:
            continue
        assert type(c).from_dict(c.to_dict()) == c, path
    assert niah >= 100 and sweep >= 3  # (150+ NIAH run dirs and 3 sweeps are committed)
