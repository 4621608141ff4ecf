"""Chain-of-thought vs closed-book knowledge with retrieval heads masked, and what the heads do during CoT.

The claim tested (Wu et al. 2024): retrieval heads matter for chain-of-thought, where the model keeps
referring back to the question and to its own earlier steps, and much less when it answers from its own
knowledge. `run_cot_experiment(model, tokenizer, config, out)` runs, on one loaded model:

1. accuracy for three modes: `cot` and `direct` on a reasoning task (gsm8k by default, or the generated
   vartrack / wordproblems) and `closedbook` on closedbook-facts; each unmasked (K=0), with the top-K
   retrieval heads masked, and with K random non-retrieval heads masked (`random_seeds` draws, seeds
   `mask_seed ..`). Every run is an `evaluate.run_eval` directory, `<mode>/k0-baseline`, `<mode>/top-k<K>`,
   `<mode>/random-k<K>-seed<s>`, each resumable, so the whole experiment resumes. `only` runs a subset of
   them, so that processes sharing `out` can split the runs (one per core or GPU); do not give two processes
   the same part.
2. the copy analysis (`copy_share`): one unmasked CoT pass with top-1 capture (batch 1) over the first
   `copy_items` items. A generated token is a *repeat* when the same token id occurs in the test question
   (its token span in the prompt; few-shot exemplars and the template do not count) or earlier in the
   generation. A head *copies* a repeat when its top-1 attention position at that step holds the same
   token inside the question span or the earlier generation. Reported: the share of repeats copied by at
   least one retrieval head (score > threshold), the same share for equally many random non-retrieval
   heads (the `random:K` draws with K = number of retrieval heads, one per seed; mean and std), for all
   non-retrieval heads together (a larger set, for reference), split by where the repeated token occurs
   (question / earlier steps), and every head's copy rate (copies / repeats) against its retrieval score.
   EOS/end-of-turn tokens are not counted; every other token is, punctuation included.

Outputs in `out`: config.json; summary.json (`results`: [{task, mode, mask, k, accuracy, n, ...}] where mask
is none, top or random, random accuracy being the mean over seeds, plus `relative_drop` = (base - acc) /
base, null when the baseline is 0); drop.png (relative accuracy drop vs K, per mode, top vs random);
copy_share.jsonl (per item, resumable), copy_share.json and copy_share.png.

Left out on purpose: significance tests, other head-selection baselines, and masking during the copy pass
(the copy analysis describes the unmasked model).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .attention import AttentionController, check_model
from .config import ModelConfig
from .errors import RHeadsError
from .evaluate import EvalConfig, prepare, run_eval
from .generation import eos_ids, greedy, model_dims
from .masks import MaskSpec, load_sweep_scores, select_heads
from .plots import pyplot, save_figure
from .results import FORMAT_VERSION, HeadScores, JsonlWriter, atomic_write_json, claim_run_dir, read_jsonl
from .tasks import get_task

MODES = ("cot", "direct", "closedbook")
MODE_COLORS = {"cot": "#d73027", "direct": "#4575b4", "closedbook": "#1a9850"}


@dataclass
class CotConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    scores: str = ""  # score file (scores.json or the paper's); required
    ks: list[int] = field(default_factory=lambda: [0, 10, 20, 50])
    random_seeds: int = 3  # random-K draws per K
    mask_seed: int = 0  # first seed of the random draws
    ablation: str = "zero"  # as niah/ablate
    threshold: float = 0.1  # retrieval set = heads scoring above it
    task: str = "gsm8k"  # the reasoning task, run in cot and direct modes
    data: str | None = None  # its data (None: the task's default source)
    limit: int | None = 200  # its first N items
    shots: int | None = None  # its few-shot exemplars (None: the task's default)
    fewshot_file: str | None = None
    steps: int = 3  # generated reasoning tasks
    seed: int = 0  # generated reasoning tasks
    closedbook_task: str = "closedbook-facts"
    closedbook_data: str | None = None
    closedbook_limit: int | None = None
    closedbook_shots: int | None = None
    chat: bool | None = None
    max_new_tokens_cot: int | None = None  # None: the task's defaults
    max_new_tokens_direct: int | None = None
    max_new_tokens_closedbook: int | None = None
    mean_ref_prompts: int = 8  # ablation mean: see EvalConfig
    copy_items: int = 20  # items of the unmasked CoT capture pass (0: skip the copy analysis)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CotConfig":
        return cls(model=ModelConfig(**d.get("model", {})),
                   **{f.name: d[f.name] for f in fields(cls) if f.name != "model" and f.name in d})

    def seeds(self) -> list[int]:
        return [self.mask_seed + i for i in range(self.random_seeds)]

    def eval_config(self, mode: str, mask: str = "none", seed: int = 0) -> EvalConfig:
        """The evaluate config of one run of the experiment."""
        common = dict(model=self.model, mode=mode, chat=self.chat, mask=mask, scores=self.scores or None,
                      ablation=self.ablation, threshold=self.threshold, mask_seed=seed,
                      mean_ref_prompts=self.mean_ref_prompts)
        if mode == "closedbook":
            return EvalConfig(task=self.closedbook_task, data=self.closedbook_data, limit=self.closedbook_limit,
                              shots=self.closedbook_shots, max_new_tokens=self.max_new_tokens_closedbook, **common)
        return EvalConfig(task=self.task, data=self.data, limit=self.limit, shots=self.shots,
                          fewshot_file=self.fewshot_file, steps=self.steps, seed=self.seed,
                          max_new_tokens=self.max_new_tokens_cot if mode == "cot" else self.max_new_tokens_direct,
                          **common)


def plan(config: CotConfig) -> list[tuple[str, int, str, str, int]]:
    """The runs, in order: (mode, k, subdir, mask spec, mask seed)."""
    runs = []
    for mode in MODES:
        runs.append((mode, 0, f"{mode}/k0-baseline", "none", 0))
        for k in sorted(set(config.ks) - {0}):
            runs.append((mode, k, f"{mode}/top-k{k}", f"top:{k}", 0))
            runs += [(mode, k, f"{mode}/random-k{k}-seed{s}", f"random:{k}", s) for s in config.seeds()]
    return runs


def _validate(config: CotConfig, num_layers: int, num_heads: int) -> HeadScores:
    """Fail before running anything: scores of the model's shape, drawable K, tasks with the needed modes."""
    if not config.scores:
        raise RHeadsError("rheads cot-experiment needs --scores: a scores.json from `rheads detect` or a paper score file")
    if not config.ks or any(k < 0 for k in config.ks):
        raise RHeadsError(f"bad --k {config.ks}: give K values >= 0, e.g. 0,10,20,50")
    if config.random_seeds < 1:
        raise RHeadsError("--random-seeds must be at least 1")
    AttentionController(mode=config.ablation)  # unknown mode -> one-line error
    task, cb = get_task(config.task), get_task(config.closedbook_task)
    if not {"cot", "direct"} <= set(task.modes):
        raise RHeadsError(f"task {config.task!r} has modes {', '.join(task.modes)}: the reasoning task needs cot and "
                          "direct (gsm8k, vartrack, wordproblems)")
    if "closedbook" not in cb.modes:
        raise RHeadsError(f"task {config.closedbook_task!r} has no closedbook mode: use closedbook-facts or qa")
    return load_sweep_scores(config.scores, config.ks, num_layers, num_heads, threshold=config.threshold)


def run_cot_experiment(model, tokenizer, config: CotConfig, out: str | Path, *, batch_size: int | None = None,
                       progress: bool = True, only: list[str] | None = None) -> dict[str, Any] | None:
    """Run the whole experiment on a loaded model into `out`; returns the summary (also out/summary.json).

    `only` (names from `plan`, e.g. "cot/top-k50", or "copy" for the copy analysis) runs just those parts and
    returns None, so several processes with the same config can share one `out`, each with different parts;
    a last run without `only` finds them done and writes the summary."""
    check_model(model)
    L, H, _ = model_dims(model)
    scores = _validate(config, L, H)
    parts = plan(config)
    names = [sub for _, _, sub, _, _ in parts] + ["copy"]
    unknown = sorted(set(only or []) - set(names))
    if only is not None and not only:
        raise RHeadsError(f"--only names no part; the parts are {','.join(names)}")
    if unknown:
        raise RHeadsError(f"--only {','.join(unknown)}: not a part of this experiment; the parts are {','.join(names)}")
    for mode in MODES:  # data problems surface before the first run starts
        prepare(tokenizer, config.eval_config(mode).resolved())
    out = claim_run_dir(out, {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict()})

    runs: dict[str, dict] = {}
    todo = [r for r in parts if only is None or r[2] in only]
    for i, (mode, k, sub, mask, seed) in enumerate(todo, 1):
        if progress:
            print(f"[{i}/{len(todo)}] {sub}", flush=True)
        runs[sub] = run_eval(model, tokenizer, config.eval_config(mode, mask, seed), out / sub, batch_size=batch_size,
                             progress=progress)

    if only is not None:
        if "copy" in only and config.copy_items > 0:
            copy_share(model, tokenizer, config, scores, out, progress=progress)
        return None
    summary = summarize(config, runs, len(scores.above(config.threshold)), L * H)
    if config.copy_items > 0:
        share = copy_share(model, tokenizer, config, scores, out, progress=progress)
        summary["copy_share"] = {k: share[k] for k in ("n_items", "n_repeat", "n_retrieval_heads", "retrieval",
                                                       "random_matched", "all_other")}
    atomic_write_json(out / "summary.json", summary)
    drop_plot(summary["results"], out / "drop.png",
              f"{config.model.model}: accuracy drop with heads masked ({config.ablation})")
    return summary


def summarize(config: CotConfig, runs: dict[str, dict], n_retrieval: int, n_heads: int) -> dict[str, Any]:
    results = []
    for mode in MODES:
        base = runs[f"{mode}/k0-baseline"]
        b = base["accuracy"]

        def drop(acc: float) -> float | None:
            return round((b - acc) / b, 6) if b > 0 else None

        results.append({"task": base["task"], "mode": mode, "mask": "none", "k": 0, "accuracy": b, "n": base["n"],
                        "relative_drop": 0.0 if b > 0 else None})
        for k in sorted(set(config.ks) - {0}):
            top = runs[f"{mode}/top-k{k}"]
            rand = [runs[f"{mode}/random-k{k}-seed{s}"] for s in config.seeds()]
            accs = [r["accuracy"] for r in rand]
            mean = round(float(np.mean(accs)), 6)
            results.append({"task": top["task"], "mode": mode, "mask": "top", "k": k, "accuracy": top["accuracy"],
                            "n": top["n"], "relative_drop": drop(top["accuracy"]), "masked_heads": top["masked_heads"]})
            results.append({"task": top["task"], "mode": mode, "mask": "random", "k": k, "accuracy": mean,
                            "n": rand[0]["n"], "relative_drop": drop(mean), "accuracy_seeds": accs,
                            "accuracy_std": round(float(np.std(accs, ddof=1)), 6) if len(accs) > 1 else 0.0,
                            "seeds": config.seeds()})
    return {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(), "n_heads": n_heads,
            "n_retrieval_heads": n_retrieval, "threshold": config.threshold, "results": results, "runs": sorted(runs)}


def format_table(summary: dict) -> str:
    """Per mode and K: top-K accuracy, random-K accuracy +- std, and their relative drops."""
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.0f}%"

    lines = [f"retrieval heads (score > {summary['threshold']}): {summary['n_retrieval_heads']} of {summary['n_heads']}",
             "", f"{'mode':<11}{'K':>4}  {'top-K':>7}  {'random-K':>15}  {'drop top':>8}  {'drop rand':>9}   n"]
    rows = summary["results"]
    for r in rows:
        if r["mask"] == "random":
            continue
        if r["mask"] == "none":
            lines.append(f"{r['mode']:<11}{0:>4}  {r['accuracy']:>7.3f}  {'(baseline)':>15}  {'':>8}  {'':>9}   {r['n']}")
            continue
        rnd = next(x for x in rows if x["mode"] == r["mode"] and x["k"] == r["k"] and x["mask"] == "random")
        lines.append(f"{r['mode']:<11}{r['k']:>4}  {r['accuracy']:>7.3f}  "
                     f"{rnd['accuracy']:>7.3f} +- {rnd['accuracy_std']:.3f}  {pct(r['relative_drop']):>8}  "
                     f"{pct(rnd['relative_drop']):>9}   {r['n']}")
    if "copy_share" in summary:
        c = summary["copy_share"]
        fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
        lines += ["", f"CoT copy share ({c['n_repeat']} repeated tokens in {c['n_items']} items): retrieval heads "
                  f"{fmt(c['retrieval'])}, {c['n_retrieval_heads']} random non-retrieval heads "
                  f"{fmt(c['random_matched'])}, all non-retrieval heads {fmt(c['all_other'])}"]
    return "\n".join(lines)


def drop_plot(results: list[dict], path: str | Path, title: str) -> Path:
    """Relative accuracy drop against K: one colour per mode, top-K solid, random-K dashed (std error bars)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for mode in MODES:
        rows = [r for r in results if r["mode"] == mode]
        base = next(r for r in rows if r["mask"] == "none")
        if not base["accuracy"]:
            continue  # a zero baseline has no relative drop
        for kind, style in (("top", "o-"), ("random", "s--")):
            pts = sorted([(0, 0.0, 0.0)] + [(r["k"], r["relative_drop"], r.get("accuracy_std", 0.0) / base["accuracy"])
                                            for r in rows if r["mask"] == kind])
            ks, drops, errs = zip(*pts)
            label = f"{mode}: top-K retrieval heads" if kind == "top" else f"{mode}: K random other heads"
            ax.errorbar(ks, drops, yerr=errs if kind == "random" else None, fmt=style, color=MODE_COLORS[mode],
                        capsize=3, label=label, alpha=1.0 if kind == "top" else 0.7)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("K (heads masked)")
    ax.set_ylabel("relative accuracy drop (base - acc) / base")
    ax.grid(alpha=0.3)
    zero = [m for m in MODES if not next(r for r in results if r["mode"] == m and r["mask"] == "none")["accuracy"]]
    if zero:
        ax.text(0.02, 0.02, f"baseline accuracy 0 (no relative drop): {', '.join(zero)}", transform=ax.transAxes,
                fontsize=8, color="#555555")
    if len(zero) < len(MODES):
        ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------- copy analysis


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


def copy_share(model, tokenizer, config: CotConfig, scores: HeadScores, out: str | Path,
               progress: bool = True) -> dict[str, Any]:
    """The copy analysis of one unmasked CoT pass (see the module docstring); writes copy_share.{jsonl,json,png}."""
    L, H, _ = model_dims(model)
    ecfg = config.eval_config("cot").resolved()
    ecfg.limit = min(config.copy_items, ecfg.limit) if ecfg.limit else config.copy_items
    items, prompts = prepare(tokenizer, ecfg)
    eos = eos_ids(model, tokenizer)
    out = Path(out)
    path = out / "copy_share.jsonl"
    records = read_jsonl(path)
    header = {"type": "header", "version": FORMAT_VERSION, "eval_config": ecfg.to_dict()}
    if records and records[0].get("eval_config") != header["eval_config"]:
        raise RHeadsError(f"{path} was made with another config: delete it to redo the copy analysis")
    done = {r["id"]: r for r in records if r.get("type") == "item"}
    with JsonlWriter(path) as writer:
        if not records:
            writer.write(header)
        for item, prompt in tqdm(list(zip(items, prompts)), desc="cot copy analysis", unit="item", disable=not progress):
            if item.id in done:
                continue
            ctl = AttentionController(capture=True)
            gen = greedy(model, prompt.input_ids, ecfg.max_new_tokens or 256, eos, ctl)  # [T]
            top1 = ctl.top1_positions()[:, :, 0, :]  # [T, L, B=1, H] -> [T, L, H]
            ev = copy_events(top1, prompt.input_ids, gen, prompt.question_span, set(eos))
            rec = {"type": "item", "id": item.id, "question_span": list(prompt.question_span),
                   "generation": tokenizer.decode(gen, skip_special_tokens=True).strip(), **ev}
            writer.write(rec)
            done[item.id] = rec
    share = aggregate_copies([done[it.id] for it in items], scores, config, L, H)
    atomic_write_json(out / "copy_share.json", share)
    copy_share_plot(share, out / "copy_share.png", f"{config.model.model}: who copies during CoT ({config.task})")
    return share


def _share(copiers: list[list[int]], heads: set[int]) -> float | None:
    if not copiers:
        return None
    return sum(1 for c in copiers if heads.intersection(c)) / len(copiers)


def aggregate_copies(records: list[dict], scores: HeadScores, config: CotConfig, L: int, H: int) -> dict[str, Any]:
    """copy_share.json from the per-item records: shares by head set and source, per-head copy rates."""
    retrieval = {l * H + h for l, h in scores.above(config.threshold)}
    other = set(range(L * H)) - retrieval
    matched = []
    if retrieval and len(retrieval) <= len(other):
        for s in config.seeds():
            drawn = select_heads(MaskSpec("random", k=len(retrieval)), L, H, scores=scores, threshold=config.threshold,
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
        "version": FORMAT_VERSION, "toolkit": __version__, "task": config.task, "threshold": config.threshold,
        "n_items": len(records), "n_generated": int(sum(r["n_tokens"] for r in records)), "n_repeat": len(copiers),
        "n_retrieval_heads": len(retrieval), "seeds": config.seeds(),
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


def copy_share_plot(share: dict[str, Any], path: str | Path, title: str) -> Path:
    """Left: share of repeated tokens copied by retrieval vs matched random vs all other heads, by source.
    Right: each head's copy rate against its retrieval score."""
    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    groups = [("all repeats", {**share, "n": share["n_repeat"]}), ("from question", share["by_source"]["question"]),
              ("from earlier steps", share["by_source"]["earlier_steps"])]
    sets = [("retrieval", f"retrieval heads ({share['n_retrieval_heads']})", "#d73027"),
            ("random_matched", f"{share['n_retrieval_heads']} random other heads", "#4575b4"),
            ("all_other", "all other heads", "#8c8c8c")]
    x = np.arange(len(groups))
    w = 0.27
    for j, (key, label, color) in enumerate(sets):
        vals = [g[key] if g[key] is not None else np.nan for _, g in groups]
        err = [g.get("random_matched_std", 0.0) if key == "random_matched" else 0.0 for _, g in groups]
        ax.bar(x + (j - 1) * w, vals, w, yerr=err, capsize=3, color=color, label=label)
    ax.set_xticks(x, [f"{n}\n(n={g['n']})" for n, g in groups])
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of repeated tokens copied")
    ax.legend(fontsize=8)
    ax.set_title("repeated CoT tokens copied by top-1 attention", fontsize=9)
    rates = share["head_copy_rate"]
    xs = [share["head_score"][h] for h in rates]
    ax2.set_title("per head: CoT copy rate vs retrieval score", fontsize=9)
    ax2.scatter(xs, list(rates.values()), s=10, c=["#d73027" if v > share["threshold"] else "#4575b4" for v in xs])
    ax2.axvline(share["threshold"], color="k", lw=0.6, ls=":")
    ax2.set_xlabel("retrieval score")
    ax2.set_ylabel("copy rate (copies / repeats)")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
