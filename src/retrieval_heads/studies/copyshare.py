"""Who copies during chain-of-thought: one unmasked CoT pass with top-1 capture, repeats and their copiers.

`copy_share`: one unmasked CoT pass with top-1 capture (batch 1) over the first
   `copy_items` items. A generated token is a *repeat* when the same token id occurs in the test question
   (its token span in the prompt; few-shot exemplars and the template do not count) or earlier in the
   generation. A head *copies* a repeat when its top-1 attention position at that step holds the same
   token inside the question span or the earlier generation. Reported: the share of repeats copied by at
   least one retrieval head (score > threshold), the same share for equally many random non-retrieval
   heads (the `random:K` draws with K = number of retrieval heads, one per seed; mean and std), for all
   non-retrieval heads together (a larger set, for reference), split by where the repeated token occurs
   (question / earlier steps), and every head's copy rate (copies / repeats) against its retrieval score.
   EOS/end-of-turn tokens are not counted; every other token is, punctuation included.

Outputs: copy_share.jsonl (per item, resumable), copy_share.json and copy_share.png.

Left out on purpose: masking during the copy pass (the analysis describes the unmasked model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import RHeadsError
from ..heads.masks import MaskSpec, select_heads
from ..heads.scores import HeadScores
from ..io.jsonl import JsonlWriter, atomic_write_json, read_jsonl
from ..io.rundir import config_diff
from ..models.info import eos_ids, model_dims
from ..capture.decoding import greedy_with_capture
from ..version import FORMAT_VERSION, __version__
from ..viz.cot import copy_share_plot
from ..evals.taskeval import EvalConfig, prepare


def copy_events(top1: torch.Tensor, prompt_ids: list[int], gen: torch.Tensor, question_span: tuple[int, int],
                skip: set[int]) -> dict[str, Any]:
    """The repeats of one generation and which heads copied each.

    top1: [T, L, H] cache positions of each head's top-1 at the step that produced gen[t].
    Returns {"n_tokens", "sources": ["q" | "s" | "qs" per repeat], "copiers": [[flat head l*H+h, ...] per repeat]}.
    """
    T, L, H = top1.shape
    N = len(prompt_ids)
    seq = torch.cat([torch.tensor(prompt_ids, dtype=gen.dtype), gen])  # [N + T]
    qs, qe = question_span
    question = set(prompt_ids[qs:qe])
    pos = top1.long().clamp(0, seq.numel() - 1)  # [T, L, H]
    same = seq[pos] == gen[:, None, None]  # [T, L, H] the attended token is the generated one
    in_source = ((pos >= qs) & (pos < qe)) | (pos >= N)  # [T, L, H] question span or earlier generation
    copied = (same & in_source).view(T, L * H)  # [T, L*H]
    sources, copiers, seen = [], [], set()
    for t in range(T):
        tok = int(gen[t])
        if tok not in skip:
            where = ("q" if tok in question else "") + ("s" if tok in seen else "")
            if where:
                sources.append(where)
                copiers.append(torch.nonzero(copied[t]).flatten().tolist())
        seen.add(tok)
    return {"n_tokens": T, "sources": sources, "copiers": copiers}


def copy_share(model, tokenizer, ecfg: EvalConfig, scores: HeadScores, out: str | Path, *, n_items: int,
               seeds: list[int], threshold: float, title: str, progress: bool = True) -> dict[str, Any]:
    """The copy analysis of one unmasked CoT pass over the first `n_items` items of `ecfg` (see the module
    docstring); writes copy_share.{jsonl,json,png} into `out`."""
    L, H, _ = model_dims(model)
    ecfg = ecfg.resolved()
    ecfg.limit = min(n_items, ecfg.limit) if ecfg.limit else n_items
    items, prompts = prepare(tokenizer, ecfg)
    eos = eos_ids(model, tokenizer)
    out = Path(out)
    path = out / "copy_share.jsonl"
    records = read_jsonl(path)
    header = {"type": "header", "version": FORMAT_VERSION, "eval_config": ecfg.to_dict()}
    if records and config_diff(records[0].get("eval_config") or {}, header["eval_config"],
                               type(ecfg)().to_dict()):  # a field added later, at its default, is the same config
        raise RHeadsError(f"{path} was made with another config: delete it to redo the copy analysis")
    done = {r["id"]: r for r in records if r.get("type") == "item"}
    with JsonlWriter(path) as writer:
        if not records:
            writer.write(header)
        for item, prompt in tqdm(list(zip(items, prompts)), desc="cot copy analysis", unit="item", disable=not progress):
            if item.id in done:
                continue
            gen, top1 = greedy_with_capture(model, prompt.input_ids, ecfg.max_new_tokens or 256, eos)  # [T], [T, L, H]
            ev = copy_events(top1, prompt.input_ids, gen, prompt.question_span, set(eos))
            rec = {"type": "item", "id": item.id, "question_span": list(prompt.question_span),
                   "generation": tokenizer.decode(gen, skip_special_tokens=True).strip(), **ev}
            writer.write(rec)
            done[item.id] = rec
    share = aggregate_copies([done[it.id] for it in items], scores, threshold, seeds, ecfg.task, L, H)
    atomic_write_json(out / "copy_share.json", share)
    copy_share_plot(share, out / "copy_share.png", title)
    return share


def _share(copiers: list[list[int]], heads: set[int]) -> float | None:
    if not copiers:
        return None
    return sum(1 for c in copiers if heads.intersection(c)) / len(copiers)


def aggregate_copies(records: list[dict], scores: HeadScores, threshold: float, seeds: list[int], task: str, L: int,
                     H: int) -> dict[str, Any]:
    """copy_share.json from the per-item records: shares by head set and source, per-head copy rates."""
    retrieval = {l * H + h for l, h in scores.above(threshold)}
    other = set(range(L * H)) - retrieval
    matched = []
    if retrieval and len(retrieval) <= len(other):
        for s in seeds:
            drawn = select_heads(MaskSpec("random", k=len(retrieval)), L, H, scores=scores, threshold=threshold,
                                 seed=s)
            matched.append({l * H + h for l, h in drawn})
    copiers = [c for r in records for c in r["copiers"]]
    sources = [s for r in records for s in r["sources"]]
    counts = np.zeros(L * H)
    for c in copiers:
        counts[c] += 1
    rates = counts / max(1, len(copiers))  # [L*H]

    def shares(sel: list[list[int]]) -> dict[str, Any]:
        rnd = [_share(sel, m) for m in matched]
        rnd_ok = [x for x in rnd if x is not None]
        return {"n": len(sel), "retrieval": _share(sel, retrieval) if retrieval else None,
                "random_matched": float(np.mean(rnd_ok)) if rnd_ok else None,
                "random_matched_std": float(np.std(rnd_ok, ddof=1)) if len(rnd_ok) > 1 else 0.0,
                "random_matched_seeds": rnd, "all_other": _share(sel, other)}

    by_source = {
        "question": shares([c for c, s in zip(copiers, sources) if "q" in s]),
        "earlier_steps": shares([c for c, s in zip(copiers, sources) if s == "s"]),
    }
    mean_scores = scores.mean().reshape(-1)  # [L*H]
    order = np.argsort(-rates, kind="stable")[:20]
    corr = float(np.corrcoef(mean_scores, rates)[0, 1]) if rates.std() > 0 and mean_scores.std() > 0 else None
    total = shares(copiers)
    return {
        "version": FORMAT_VERSION, "toolkit": __version__, "task": task, "threshold": threshold,
        "n_items": len(records), "n_generated": int(sum(r["n_tokens"] for r in records)), "n_repeat": len(copiers),
        "n_retrieval_heads": len(retrieval), "seeds": seeds,
        "definition": "share of repeated generated tokens (same token id in the test question or earlier in the "
                      "generation) whose top-1 attention position in at least one head of the set holds that token "
                      "there; random_matched: as many random non-retrieval heads as retrieval heads, mean over seeds; "
                      "all_other: every non-retrieval head (a larger set)",
        **{k: total[k] for k in ("retrieval", "random_matched", "random_matched_std", "random_matched_seeds",
                                 "all_other")},
        "by_source": by_source,
        "head_copy_rate": {f"{i // H}-{i % H}": round(float(rates[i]), 6) for i in range(L * H)},
        "head_score": {f"{i // H}-{i % H}": round(float(mean_scores[i]), 6) for i in range(L * H)},
        "mean_rate_retrieval": float(rates[sorted(retrieval)].mean()) if retrieval else None,
        "mean_rate_other": float(rates[sorted(other)].mean()) if other else None,
        "corr_score_rate": corr,
        "top_copying_heads": [{"head": f"{i // H}-{i % H}", "rate": round(float(rates[i]), 6),
                               "score": round(float(mean_scores[i]), 6), "retrieval": int(i) in retrieval}
                              for i in order],
    }
