"""Helpers of the atlas tests: a fake GGUF file, a fake detection run directory, a stub of a loaded model."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from retrieval_heads.heads.scores import HeadScores


def fake_gguf(path: Path, payload: bytes) -> Path:
    """A file that `resolve_spec` takes for a GGUF model (the header is all it reads)."""
    path.write_bytes(b"GGUF" + payload)
    return path


def make_run(root: Path, gguf: Path, *, layers: int = 3, heads: int = 4, samples: int = 5) -> Path:
    """A finished-looking `rheads detect` run: config.json, summary.json and scores.json (per-sample scores)."""
    root.mkdir(parents=True)
    per = {(l, h): [((l * heads + h) * (s + 1)) % 7 / 10 for s in range(samples)]
           for l in range(layers) for h in range(heads)}
    HeadScores(layers, heads, per).save(root / "scores.json")
    probe = {"haystack": "paul-graham", "needles": "detect", "lengths": [500, 1000], "depths": [0, 50, 100],
             "needles_per_cell": 1, "template": "default", "chat": None, "seed": 7}
    config = {"model": {"model": str(gguf), "device": "cpu", "dtype": "auto", "device_map": None}, "probe": probe,
              "max_new_tokens": 16, "threshold": 0.1, "rouge_threshold": 0.5}
    model = {"family": "llama", "num_layers": layers, "num_heads": heads, "num_kv_heads": 2,
             "name_or_path": f"/cache/converted/{gguf.stem}-0123456789abcdef", "dtype": "torch.bfloat16"}
    (root / "config.json").write_text(json.dumps({"version": 1, "toolkit": "9.9.9", "config": config, "model": model}))
    (root / "summary.json").write_text(json.dumps({"version": 1, "n_samples": samples + 2, "n_counted": samples}))
    return root


def stub_model(layers: int, heads: int, spec: str | None = None):
    """What `check_model` reads of a loaded model: its text config's shape and `rheads_info` (spec, name)."""
    cfg = SimpleNamespace(num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=256)
    model = SimpleNamespace(config=SimpleNamespace(get_text_config=lambda: cfg))
    if spec is not None:
        model.rheads_info = SimpleNamespace(spec=spec, name=Path(spec).stem)
    return model
