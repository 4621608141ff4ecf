"""Build atlas entries: from a detection run directory, and from the paper's published score files.

- `entry_from_run(run_dir)`: config.json (the model's shape, the probe, the tool version), summary.json (counted
  samples) and scores.json of a `rheads detect` run; the weights' sha256 when the run's model is one GGUF file
  still on this machine (a named model or a .gguf path) and is the file the run loaded (its name is in the run's
  `name_or_path`); else the weights are left unknown and the entry matches by dimensions only.
- `add_run(run_dir, name)`: that entry, written into the user's atlas folder (`rheads atlas add`).
- `paper_entries(git_dir)`: the seven files of nightdessert/Retrieval_Head's `head_score/` read from a git
  checkout or bare clone, reduced to per-head means and counts, each checked against the model's known shape.
- `build_shipped(runs_root, paper_git)`: rewrite the shipped entries (the lead runs this when a run lands):

      python -m retrieval_heads.atlas.build --runs docs/runs [--paper /path/to/Retrieval_Head/.git]

Left out on purpose: any code or raw per-sample file of the paper's repository (only derived means are kept),
and downloads (the paper's repository is read from a local clone).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParamError, RHeadsError
from ..heads.scores import HeadScores
from .entry import AtlasEntry, check_name, read_entry, write_entry
from .match import file_sha256, weights_file
from .store import SHIPPED_DIR, entry_path, user_dir

PAPER_REPO = "https://github.com/nightdessert/Retrieval_Head"
PAPER_LICENSE = "none: the repository has no license file (scores kept as derived per-head means, with attribution)"
# score file -> (entry name, model, family, layers, query heads, KV heads, parameters in billions)
PAPER_MODELS: dict[str, tuple[str, str, str, int, int, int, float]] = {
    "Mistral-7B-v0.2-hf.json": ("paper-mistral-7b-v0.2", "Mistral-7B-v0.2", "mistral", 32, 32, 8, 7.2),
    "Mixtral-8x7B-v0.1.json": ("paper-mixtral-8x7b-v0.1", "Mixtral-8x7B-v0.1", "mixtral", 32, 32, 8, 46.7),
    "Qwen1.5-14B.json": ("paper-qwen1.5-14b", "Qwen1.5-14B", "qwen2", 40, 40, 40, 14.2),
    "Qwen1.5-14B-Chat.json": ("paper-qwen1.5-14b-chat", "Qwen1.5-14B-Chat", "qwen2", 40, 40, 40, 14.2),
    "Yi-6B-200K.json": ("paper-yi-6b-200k", "Yi-6B-200K", "llama", 32, 32, 4, 6.1),
    "llama-2-13b-64k.json": ("paper-llama-2-13b-64k", "Llama-2-13B-64K", "llama", 40, 40, 40, 13.0),
    "llama-2-7b-80k.json": ("paper-llama-2-7b-80k", "Llama-2-7B-80K", "llama", 32, 32, 32, 6.7),
}
PAPER_NOTES = {"Mistral-7B-v0.2-hf.json": "the file is named Mistral-7B-v0.2-hf; the repository does not say "
                                          "whether the base or the Instruct v0.2 model was scored"}
PAPER_PROBE = {"recorded": False, "script": "retrieval_head_detection.py",
               "note": "the files hold no settings; the script's defaults at this commit: needles of "
                       "haystack_for_detect/, lengths 1000-50000 tokens (20 steps), depths 0-100% (10 steps), a "
                       "sample counted when the answer's ROUGE-1 recall is > 50"}
# docs/runs folder -> entry name (the named model it ran); a missing folder is skipped
SHIPPED_RUNS = {"smollm2": "smollm2-135m", "gemma": "gemma3-270m", "qwen": "qwen2.5-coder-0.5b",
                "qwen15": "qwen2.5-coder-1.5b"}
PARAMS_B = {"smollm2-135m": 0.135, "gemma3-270m": 0.27, "qwen2.5-coder-0.5b": 0.49, "qwen2.5-coder-1.5b": 1.5}


def means_of_paper(raw: Any, source: str) -> tuple[np.ndarray, np.ndarray]:
    """([L, H] mean, [L, H] sample count) of a paper-format score file, each mean as `HeadScores.mean` computes it
    (the one reader of the format, with its one-line errors); a head the file lacks has mean 0 over 0 samples."""
    scores = HeadScores.from_paper(raw, source)
    count = np.zeros((scores.num_layers, scores.num_heads), dtype=int)
    for (l, h), v in scores.per_sample.items():
        count[l, h] = len(v)
    return scores.mean(), count


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RHeadsError(f"{path.parent} has no {path.name}: pass a finished `rheads detect` run ({what})") from None
    except json.JSONDecodeError as e:
        raise RHeadsError(f"{path} is not valid JSON ({e.msg}): pass a finished `rheads detect` run") from None


def _default_name(run_dir: Path, spec: str | None) -> str:
    base = spec if spec and "/" not in spec and not spec.endswith(".gguf") else run_dir.resolve().name
    return re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-._") or "run"


def _weights(spec: str | None, name_or_path: str | None, cache_dir=None) -> dict[str, Any]:
    """{"file", "sha256"} of the GGUF the run loaded, when it is on this machine; the file name alone otherwise."""
    path = weights_file(spec, cache_dir) if spec else None
    loaded = Path(str(name_or_path or "")).name  # converted/<gguf stem>-<16 hex key> for GGUF loads
    if path is None or not path.is_file():
        return {"file": None, "sha256": None}
    if loaded and not re.fullmatch(re.escape(path.stem) + r"-[0-9a-f]{16}", loaded):
        return {"file": None, "sha256": None, "note": f"the run loaded {loaded}, not {path.name}"}
    return {"file": path.name, "sha256": file_sha256(path, cache_dir)}


def entry_from_run(run_dir: str | Path, name: str | None = None, cache_dir=None) -> AtlasEntry:
    """The atlas entry of a finished `rheads detect` run directory (see the module docstring)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RHeadsError(f"{run_dir} is not a directory: pass the run directory of `rheads detect`")
    meta = _read_json(run_dir / "config.json", "config.json")
    summary = _read_json(run_dir / "summary.json", "summary.json") if (run_dir / "summary.json").exists() else {}
    raw = _read_json(run_dir / "scores.json", "scores.json")
    mean, samples = means_of_paper(raw, str(run_dir / "scores.json"))
    model = dict(meta.get("model") or {})
    config = dict(meta.get("config") or {})
    spec = (config.get("model") or {}).get("model")
    dims = (model.get("num_layers"), model.get("num_heads"))
    if dims != mean.shape:
        raise RHeadsError(f"{run_dir}: config.json's model is {dims[0]} x {dims[1]} but scores.json has "
                          f"{mean.shape[0]} x {mean.shape[1]} heads: rerun `rheads detect` there")
    name = check_name(name or _default_name(run_dir, spec))
    keep = ("family", "num_layers", "num_heads", "num_kv_heads", "max_context", "sliding_window", "layer_types")
    entry_model = {"name": spec or run_dir.name, **{k: model.get(k) for k in keep if k in model}}
    if name in PARAMS_B or spec in PARAMS_B:
        entry_model["params_b"] = PARAMS_B.get(name, PARAMS_B.get(spec))
    dtype = model.get("dtype")
    n = summary.get("n_counted", int(samples.max()))
    detection = {k: config[k] for k in ("max_new_tokens", "threshold", "rouge_threshold") if k in config}
    return AtlasEntry(
        name=name, model=entry_model, weights=_weights(spec, model.get("name_or_path"), cache_dir),
        dtype=str(dtype).removeprefix("torch.") if dtype else None, probe=config.get("probe"), n_samples=int(n),
        tool_version=f"retrieval-heads {meta.get('toolkit', '?')}",
        source={"kind": "run", "run": run_dir.as_posix(), "model_spec": spec, "detection": detection},
        mean=mean, samples=samples)


def add_run(run_dir: str | Path, name: str | None = None, *, overwrite: bool = False, cache_dir=None) -> AtlasEntry:
    """Register a detection run in the user's atlas folder; refuses a shipped name, and an existing one unless
    `overwrite`."""
    entry = entry_from_run(run_dir, name, cache_dir)
    entry.source["run"] = Path(run_dir).resolve().as_posix()
    if entry_path(entry.name, SHIPPED_DIR).is_file():
        raise ParamError("name", entry.name, "is a shipped atlas entry: give this run another {name}")
    target = entry_path(entry.name, user_dir())
    if target.exists() and not overwrite:
        raise ParamError("name", entry.name, f"{target} exists: give another {{name}}, or replace it ({{overwrite}})")
    write_entry(entry, target)
    return entry


def _git(git_dir: Path, *args: str) -> str:
    r = subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, text=True)
    if r.returncode:
        raise RHeadsError(f"git {' '.join(args)} failed in {git_dir}: {r.stderr.strip().splitlines()[-1:]}")
    return r.stdout


def paper_entry(raw: Any, file: str, commit: str) -> AtlasEntry:
    """The entry of one of the paper's score files (`file` as in PAPER_MODELS), checked against its model's shape."""
    base = Path(file).name
    if base not in PAPER_MODELS:
        raise RHeadsError(f"{file} is not one of the paper's seven score files ({', '.join(PAPER_MODELS)})")
    name, model, family, L, H, kv, params = PAPER_MODELS[base]
    mean, samples = means_of_paper(raw, file)
    if mean.shape != (L, H):
        raise RHeadsError(f"{file} has {mean.shape[0]} x {mean.shape[1]} heads but {model} has {L} x {H}")
    source = {"kind": "paper", "repository": PAPER_REPO, "commit": commit, "file": f"head_score/{base}",
              "paper": "Wu et al. 2024, Retrieval Head Mechanistically Explains Long-Context Factuality "
                       "(arXiv:2404.15574)", "license": PAPER_LICENSE}
    if base in PAPER_NOTES:
        source["note"] = PAPER_NOTES[base]
    return AtlasEntry(name=name, model={"name": model, "family": family, "num_layers": L, "num_heads": H,
                                        "num_kv_heads": kv, "params_b": params},
                      weights={"file": None, "sha256": None}, dtype=None, probe=PAPER_PROBE,
                      n_samples=int(samples.max()), tool_version=f"Retrieval_Head@{commit[:12]}", source=source,
                      mean=mean, samples=samples)


def paper_entries(git_dir: str | Path) -> list[AtlasEntry]:
    """The seven entries of the paper's `head_score/` at the HEAD of a local clone (bare or not)."""
    git_dir = Path(git_dir)
    if (git_dir / ".git").exists():
        git_dir = git_dir / ".git"
    commit = _git(git_dir, "rev-parse", "HEAD").strip()
    return [paper_entry(json.loads(_git(git_dir, "show", f"HEAD:head_score/{f}")), f, commit) for f in PAPER_MODELS]


def build_shipped(runs_root: str | Path | None = "docs/runs", paper_git: str | Path | None = None,
                  out: str | Path = SHIPPED_DIR) -> list[Path]:
    """Rewrite the shipped entries of the runs under `runs_root` that exist (SHIPPED_RUNS) and, given a clone of
    the paper's repository, its seven entries; other files in `out` stay."""
    out, written = Path(out), []
    if runs_root is not None:
        for folder, name in SHIPPED_RUNS.items():
            run = Path(runs_root) / folder
            if (run / "scores.json").is_file():
                written.append(write_entry(entry_from_run(run, name), entry_path(name, out)))
    if paper_git is not None:
        written += [write_entry(e, entry_path(e.name, out)) for e in paper_entries(paper_git)]
    for p in written:
        read_entry(p)  # what was written reads back
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m retrieval_heads.atlas.build", description=build_shipped.__doc__)
    p.add_argument("--runs", default="docs/runs", help="folder of the detection runs (default: %(default)s)")
    p.add_argument("--paper", default=None, help="a local clone (or bare git dir) of nightdessert/Retrieval_Head")
    p.add_argument("--out", default=str(SHIPPED_DIR), help="entry folder (default: the package's data folder)")
    a = p.parse_args(argv)
    try:
        for path in build_shipped(a.runs, a.paper, a.out):
            print(path)
    except RHeadsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
