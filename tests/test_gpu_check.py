"""bench/gpu_check.py: its --quick run (the CPU, tiny configs) passes every part and writes the versioned report; a
deliberately wrong reference fails it (exit code 1); a part that raises is recorded while the others still run;
--help loads no torch."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # its dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    return mod


def _run(*args, timeout=240):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def test_quick_run_passes_every_part_on_the_cpu(tmp_path):
    out = tmp_path / "report.json"
    proc = _run("--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert (r["format"], r["version"], r["mode"], r["device"]) == ("rheads-gpu-check", 1, "quick", "cpu")
    assert r["torch"] == torch.__version__ and r["transformers"] and r["passed"] and r["failed"] == []
    assert list(r["parts"]) == ["oracle", "overhead", "memory", "batch"]
    for name, part in r["parts"].items():
        assert part["device"] == "cpu" and part["passed"] and part["errors"] == [], name
        assert part["checks"] and all(c["passed"] for c in part["checks"]), name
        assert part["seconds"] > 0 and part["dtypes"]
    oracle = r["parts"]["oracle"]
    assert oracle["dtypes"] == ["float32", "bfloat16"] and oracle["skipped"] == {"float16": "skipped on CPU"}
    names = {c["name"] for c in oracle["checks"]}
    for family in ("llama", "qwen2", "mistral", "gemma3"):
        for dtype in ("float32", "bfloat16"):
            assert {f"capture/{family}/{dtype}/top1", f"capture/{family}/{dtype}/logits_vs_eager",
                    f"masking/{family}/{dtype}/uniform/decode"} <= names
    assert {c["name"] for c in r["parts"]["overhead"]["checks"]} >= {"overhead/256/ratio", "overhead/512/ratio"}
    memory = r["parts"]["memory"]
    assert "memory/retrieval/below_full" in {c["name"] for c in memory["checks"]}
    assert "hybrid" in memory["info"]["caches"] or memory["skipped"] == {"hybrid": "hybrid: not registered yet"}
    assert r["total_seconds"] >= sum(p["seconds"] for p in r["parts"].values())
    assert "PASSED" in proc.stdout


def test_a_wrong_reference_is_reported_as_failed(tmp_path):
    out = tmp_path / "report.json"
    proc = _run("--quick", "--parts", "oracle", "--self-test-fail", "--out", str(out))
    assert proc.returncode == 1
    r = json.loads(out.read_text())
    assert not r["passed"] and not r["parts"]["oracle"]["passed"]
    assert r["failed"] and all(f.endswith("/logits_vs_eager") for f in r["failed"])
    assert len(r["failed"]) == 8  # 4 families x 2 dtypes; every other check still passes
    assert "FAILED" in proc.stdout


def test_comparisons_fail_on_different_tensors():
    g = _load()
    a = torch.linspace(-1, 1, 50)
    assert g.close(a, a.clone(), 1e-4)[0]
    ok, m = g.close(a + 0.01, a, 1e-4)
    assert not ok and m["max_abs_diff"] == pytest.approx(0.01, rel=1e-4)
    assert not g.close(a[:10], a[:20], 1.0)[0]  # shapes differ
    assert g.first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert g.first_divergence([1, 2, 3], [1, 5, 3]) == 1 and g.first_divergence([1, 2], [1, 2, 3]) == 2
    eps = torch.finfo(torch.bfloat16).eps
    clear = g.is_clear(torch.tensor([0.0, 2.5 * eps, 1.0]), torch.tensor([0.0, 0.0, 3.0]), eps)
    assert clear.tolist() == [False, True, True]


def test_a_part_that_raises_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    g = _load()

    def broken(s, part, self_test_fail):
        raise RuntimeError("CUDA error: an illegal memory access")

    def fine(s, part):
        part.check("batch/stub", True, value=1)

    monkeypatch.setattr(g, "part_oracle", broken)
    monkeypatch.setattr(g, "part_batch", fine)
    args = g.parse_args(["--quick", "--parts", "oracle,batch", "--out", str(tmp_path / "r.json")])
    r = g.run(args)
    oracle = r["parts"]["oracle"]
    assert not oracle["passed"] and oracle["checks"][0]["name"] == "oracle/ran"
    assert "illegal memory access" in oracle["checks"][0]["error"] and "RuntimeError" in oracle["errors"][0]
    assert r["parts"]["batch"]["passed"] and r["failed"] == ["oracle: oracle/ran"] and not r["passed"]
    assert "FAILED oracle: oracle/ran" in g.summary(r)


def test_help_loads_no_torch_and_bad_parts_are_refused():
    code = ("import runpy, sys\nsys.argv = ['gpu_check.py', '--help']\ntry:\n"
            f"    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('TORCH', 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
    assert "--quick" in proc.stdout and "TORCH False" in proc.stdout
    bad = _run("--quick", "--parts", "oracle,speed", timeout=60)
    assert bad.returncode == 2 and "--parts speed" in bad.stderr
