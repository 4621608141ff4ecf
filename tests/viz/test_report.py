"""The offline report on synthetic runs: files, self-containedness (no URL, every image a data URI that decodes
to a PNG), what a bare score file cannot show, the `report` command, and a headless-Chromium render that
checks no image is broken and every figure is drawn 400-1280 px wide in a 1280 x 900 window.

The Chromium test needs Debian's `chromium`: apt-get update && apt-get install -y chromium"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from retrieval_heads.errors import RHeadsError
from retrieval_heads.viz.report.build import build_report
from retrieval_heads.version import __version__
from synthetic import cli, gemma_like, make_run

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,900"]

# Appended to a copy of the page: after load, write what the images did into <body data-...> for --dump-dom.
PROBE = """<script>window.addEventListener('load', () => {
  const im = [...document.images], b = document.body;
  b.dataset.images = im.length;
  b.dataset.broken = im.filter(i => !i.complete || i.naturalWidth === 0).length;
  b.dataset.widths = im.map(i => Math.round(i.getBoundingClientRect().width)).join(',');
  b.dataset.natural = im.map(i => i.naturalWidth).join(',');
  b.dataset.scrollwidth = document.documentElement.scrollWidth;
  b.dataset.viewport = window.innerWidth;
});</script>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    t = tmp_path_factory.mktemp("report")
    base = make_run(t / "smollm2", L=30, H=9, KV=3, seed=0,
                    retrieval={"17-4": 1.0, "18-7": 0.95, "21-5": 0.6, "22-7": 0.8, "23-2": 0.7, "29-7": 0.2})
    make_run(t / "smollm2-longctx", L=30, H=9, KV=3, seed=1,
             retrieval={"17-4": 1.0, "18-7": 0.85, "21-5": 0.7, "24-4": 0.6, "23-2": 0.5})
    gemma_like(t / "gemma")
    qwen = make_run(t / "qwen-src", L=24, H=14, KV=2, seed=4, retrieval={"10-3": 0.9, "12-5": 0.7, "20-1": 0.6})
    (t / "qwen_paper.json").write_text((qwen / "scores.json").read_text())
    assert base.exists()
    return build_report([t / "smollm2", t / "smollm2-longctx", t / "gemma", t / "qwen_paper.json"], t / "out")


def test_report_files_and_sections(report: Path):
    out = report.parent
    assert report.name == "index.html"
    for f in ("summary.md", "report.json"):
        assert (out / f).is_file()
    page = report.read_text()
    for section in ("universal", "sparse", "dynamic", "intrinsic", "runs"):
        assert f'id="{section}"' in page
    for name in ("smollm2", "smollm2-longctx", "gemma", "qwen_paper"):
        assert name in page
    assert f"retrieval-heads {__version__}" in page and "UTC" in page
    assert page.count("<details>") == 5  # four run configs and the report config
    doc = json.loads((out / "report.json").read_text())
    assert doc["version"] == 1 and doc["toolkit"] == __version__ and len(doc["runs"]) == 4
    assert [(p["a"], p["b"]) for p in doc["pairs"]] == [("smollm2", "smollm2-longctx")]  # the same-shape pair
    md = (out / "summary.md").read_text()
    assert "| smollm2 |" in md and "## gemma" in md and "unavailable" in md
    for link in re.findall(r"\]\(([^)]+\.png)\)", md):
        assert (out / link).is_file()


def test_report_is_self_contained(report: Path):
    page = report.read_text()
    assert "http://" not in page and "https://" not in page and "file:" not in page
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    for r in refs:
        assert base64.b64decode(r.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<script" not in page and "<link" not in page


def test_report_says_what_a_bare_score_file_cannot_show(report: Path):
    doc = json.loads((report.parent / "report.json").read_text())
    qwen = next(r for r in doc["runs"] if r["name"] == "qwen_paper")
    assert qwen["activation"] is None and qwen["length_split"] is None
    assert {"activation", "length_split", "kv_level"} <= set(qwen["unavailable"])
    page = report.read_text()
    assert "a bare score file has none" in page
    gemma = next(r for r in doc["runs"] if r["name"] == "gemma")
    assert gemma["beyond_window"]["n_far"] > 0 and "Retrieval beyond the sliding window" in page


def test_cli_report(tmp_path, capsys):
    run = make_run(tmp_path / "r")
    cli(["report", str(run), str(tmp_path / "r" / "scores.json"), "--out", str(tmp_path / "rep"),
          "--always-on", "0.8", "--split-length", "1500", "--k", "3"])
    assert "index.html" in capsys.readouterr().out
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert doc["config"] == {"threshold": None, "always_on": 0.8, "split_length": 1500.0, "ks": [3]}
    assert doc["runs"][0]["length_split"]["n_short"] == len([r for r in load_counted(run) if r["length"] <= 1500])
    assert [r["name"] for r in doc["runs"]] == ["r", "r-2"]  # a run's own scores.json loads as the run


def load_counted(run: Path) -> list[dict]:
    from retrieval_heads.analysis.runs import load_run

    return load_run(run).counted


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("chromium is not installed: apt-get update && apt-get install -y chromium")
    return exe


def test_report_renders_in_headless_chromium(report: Path, tmp_path):
    exe = _chromium()
    probe = report.parent / "probe.html"
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    common = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, f"no DOM from chromium: {dom.stderr[-2000:]}"
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', body.group(1)))
    n_img = report.read_text().count("<img ")
    assert int(attrs["images"]) == n_img > 10
    assert int(attrs["broken"]) == 0
    widths = [int(w) for w in attrs["widths"].split(",")]
    natural = [int(w) for w in attrs["natural"].split(",")]
    assert all(400 <= w <= 1280 for w in widths), widths
    assert all(w / n >= 0.6 for w, n in zip(widths, natural)), list(zip(widths, natural))  # text not shrunk away
    assert int(attrs["scrollwidth"]) <= int(attrs["viewport"])  # no sideways scrolling

    shot = tmp_path / "shot.png"
    subprocess.run([*common, f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert Image.open(shot).size == (1280, 900)


def _sweep_dirs(tmp_path: Path, png: Path) -> tuple[Path, Path]:
    ab, cot = tmp_path / "ablate-x", tmp_path / "cot-x"
    ab.mkdir()
    cot.mkdir()
    row = lambda k, t, r, l: {"k": k, "top_mean": t, "top_ci95": [t - 5, t + 5], "random_mean": r,  # noqa: E731
                              "random_std": 2.0, "random_ci95": [r - 7, r + 7], "random_layer_mean": l,
                              "random_layer_std": 1.0, "random_layer_ci95": [l - 6, l + 6],
                              "top_minus_random": {"diff": t - r, "ci95": [t - r - 11.25, t - r + 11.25]}
                              if k else None}
    (ab / "summary.json").write_text(json.dumps({
        "baseline_mean": 80.0, "n_cells": 12, "n_retrieval_heads": 19, "n_heads": 270, "missing": [],
        "config": {"model": {"model": "smollm2-135m"}, "ablation": "zero", "random_seeds": 3},
        "results": [row(0, 80.0, 80.0, 80.0), row(20, 12.5, 61.25, 47.5)]}))
    shutil.copyfile(png, ab / "curve.png")
    (cot / "summary.json").write_text(json.dumps({
        "n_retrieval_heads": 80, "missing": ["cot/top-k50"],
        "config": {"model": {"model": "qwen2.5-coder-0.5b"}, "task": "gsm8k", "limit": 150,
                   "closedbook_task": "closedbook-facts", "ablation": "zero"},
        "results": [{"mode": "cot", "k": 0, "mask": "none", "accuracy": 0.42, "ci95": [0.34, 0.5],
                     "relative_drop": 0.0, "cut_off_share": 0.03, "accuracy_uncut": 0.433,
                     "accuracy_cut_right": 0.447, "n": 150},
                    {"mode": "cot", "k": 20, "mask": "random", "accuracy": 0.31, "ci95": [0.22, 0.4],
                     "accuracy_std": 0.02, "relative_drop": 0.2619, "cut_off_share": 0.05, "n": 150,
                     "top_minus": {"diff": -0.11, "ci95": [-0.19, -0.03]}}]}))
    return ab, cot


def test_report_shows_the_causal_curves_and_the_cot_table(report: Path, tmp_path):
    png = next((report.parent / "figures").glob("*.png"))
    ab, cot = _sweep_dirs(tmp_path, png)
    page_path = build_report([], tmp_path / "rep", ablate_paths=[ab], cot_paths=[cot])
    page = page_path.read_text()
    assert 'id="causal"' in page and 'id="cot"' in page
    assert "12.5 [7.5, 17.5]" in page and "61.2 ± 2.0 [54.2, 68.2]" in page and "layer-matched random-K" in page
    assert "0.310 ± 0.020 [0.220, 0.400]" in page and "26%" in page and "cut off by the token limit" in page
    assert "0.433" in page and "0.447" in page and "if every cut answer were right" in page
    assert "top-K minus random-K (paired over cells)" in page and "-48.8 [-60.0, -37.5]" in page
    assert "-0.110 [-0.190, -0.030]" in page
    assert "not finished: 1 runs" in page and page.count("data:image/png;base64,") == 1  # the ablate curve
    md = (tmp_path / "rep" / "summary.md").read_text()
    assert "## Causal: ablate-x" in md and "## Chain-of-thought: cot-x" in md and "| cot | 20 | random |" in md
    with pytest.raises(RHeadsError, match="not a `rheads ablate` directory"):
        build_report([], tmp_path / "rep2", ablate_paths=[cot])
