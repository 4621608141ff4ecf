"""Extending a model's context by changing its RoPE: `theta:F` (rope_theta x F, ABF) or `linear:F` (position
interpolation), on a transformers 5 config; the `extend` stage saves the changed copy and checks that the
reloaded copy's rotary embeddings and logits really changed.

Left out on purpose: YaRN and NTK-by-parts scaling.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ...errors import ParamError, RHeadsError
from ...io.jsonl import atomic_write_json
from ...models.loading import load_model
from ...probes.haystack import get_haystack
from .config import IntrinsicConfig


def parse_rope(spec: str) -> tuple[str, float]:
    kind, _, num = spec.partition(":")
    try:
        factor = float(num)
    except ValueError:
        factor = 0.0
    if kind not in ("linear", "theta") or factor <= 1.0:
        raise ParamError("rope", spec, "write linear:F (position interpolation) or theta:F (rope_theta x F), F > 1, "
                         "e.g. linear:4")
    return kind, factor


def extend_rope(config, spec: str, context_factor: float) -> None:
    """Change the RoPE of a transformers 5 config in place (every layer type's dict where it is nested)."""
    kind, factor = parse_rope(spec)
    cfg = config.get_text_config()
    params = cfg.rope_parameters
    if not params:
        raise RHeadsError(f"{cfg.model_type} has no rope_parameters: this experiment needs a RoPE model")
    nested = cfg.nested_rope_parameter_keys(params)
    for d in [params[k] for k in nested] if nested else [params]:
        if d is None:
            continue
        if kind == "theta":
            d["rope_theta"] = float(d["rope_theta"]) * factor
        elif d["rope_type"] == "default":
            d.update(rope_type="linear", factor=factor)
        elif d["rope_type"] == "linear":
            d["factor"] = float(d["factor"]) * factor
        else:
            raise ParamError("rope", f"linear:{factor:g}", f"cannot stack linear scaling on rope_type "
                             f"{d['rope_type']!r}: use theta:F")
    cfg.max_position_embeddings = int(round(cfg.max_position_embeddings * context_factor))


def rope_state(model) -> dict[str, Any]:
    """The rotary embeddings' inv_freq buffers and attention scalings (what the attention actually uses)."""
    bufs = {n: b.detach().float().cpu() for n, b in model.named_buffers() if n.endswith("inv_freq")
            and "original" not in n}
    scal = {f"{n}.{a}": float(v) for n, m in model.named_modules() if "Rotary" in type(m).__name__
            for a, v in vars(m).items() if a.endswith("attention_scaling") and isinstance(v, (int, float))}
    return {"inv_freq": bufs, "attention_scaling": scal}


def _probe_ids(tok, text: str, n: int = 128) -> torch.Tensor:
    return torch.tensor([tok(text[:20000], add_special_tokens=False)["input_ids"][:n]])  # [1, n]


def stage_extend(cfg: IntrinsicConfig, out: Path) -> None:
    model, tok = load_model(cfg.model.model, dtype="float32", attn_implementation="sdpa")
    ids = _probe_ids(tok, get_haystack(cfg.train.text))
    with torch.no_grad():
        logits0 = model(ids).logits  # [1, n, V]
    rope0, before = rope_state(model), copy.deepcopy(model.config.get_text_config().rope_parameters)
    max0 = model.config.get_text_config().max_position_embeddings
    extend_rope(model.config, cfg.rope, cfg.context_factor)
    tmp, dest = out / "extended.tmp", out / "extended"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    del model
    ext, _ = load_model(str(tmp), dtype="float32", attn_implementation="sdpa")  # rotary embeddings built anew
    rope1 = rope_state(ext)
    with torch.no_grad():
        dlogit = float((ext(ids).logits - logits0).abs().max())
    ratios = {n: (rope0["inv_freq"][n] / rope1["inv_freq"][n]) for n in rope0["inv_freq"]}  # [head_dim/2] each
    if all(torch.allclose(r, torch.ones_like(r)) for r in ratios.values()) and \
            rope0["attention_scaling"] == rope1["attention_scaling"]:
        raise ParamError("rope", cfg.rope, "did not change the rotary embeddings of the reloaded model: this "
                         "transformers version reads RoPE settings elsewhere")
    if dlogit < 1e-4:
        raise ParamError("rope", cfg.rope, f"changed inv_freq but not the logits (max diff {dlogit:.1e})")
    info = {"rope": cfg.rope, "rope_parameters_before": before, "rope_parameters_after":
            dict(ext.config.get_text_config().rope_parameters), "max_position_embeddings": [max0,
            ext.config.get_text_config().max_position_embeddings],
            "inv_freq_ratio": {n: [round(float(r.min()), 4), round(float(r.max()), 4)] for n, r in ratios.items()},
            "attention_scaling": [rope0["attention_scaling"], rope1["attention_scaling"]],
            "max_abs_logit_change": dlogit, "probe_tokens": ids.shape[1]}
    atomic_write_json(tmp / "rheads-extend.json", info)
    os.replace(tmp, dest)
    print(f"extended: {before} -> {info['rope_parameters_after']}, max positions {info['max_position_embeddings']}, "
          f"inv_freq ratio {info['inv_freq_ratio']}, max logit change {dlogit:.3g}")
