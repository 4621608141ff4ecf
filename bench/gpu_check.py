"""The GPU check: every CUDA path of the toolkit in one short run (at most ~5 minutes on one GPU), one JSON report.

Parts (each in its own try/except: a failure is recorded in the report and the other parts still run):
- `oracle`: on tiny random Llama, Qwen2, Mistral and Gemma 3 models, per dtype, the `rheads` capture against eager
  attention with `output_attentions` (top-1 slots where the scores are not near-tied, the Entropy recorder, the
  logits of the captured generation), capture leaving generation alone (plain SDPA `generate`), and head masking
  (`zero`, `uniform`) against a reference made of hooks on an untouched SDPA model (prefill and decoding);
- `overhead`: `generate` of a few new tokens with top-1 capture on every head (what `rheads detect` records)
  against plain SDPA `generate`, at 8K and 32K tokens, on a random-weight model shaped like Llama-3.1-8B (bf16);
- `memory`: at 32K tokens, the full cache (transformers' DynamicCache) against the retrieval cache
  (`RetrievalHeadCache` of random scores, top 10% of the query heads) and the hybrid one at a budget of 0.5:
  `torch.cuda.max_memory_allocated` above the weights, and the cache's own bytes against the analytic formula;
- `batch`: a left-padded batch of 4 prompts (`generate_batch`) gives each prompt the tokens and top-1 slots it
  gets alone.

    python bench/gpu_check.py                 # CUDA: float32, bfloat16, float16; writes bench/results/gpu_check.json
    python bench/gpu_check.py --quick         # CPU, tiny configs, float32 and bfloat16 (CI runs this)

`--quick` runs the same code paths on the CPU with tiny configs (a 2-layer Llama-3.1-shaped model, 256 and 512
tokens); float16 is skipped on the CPU (recorded so), CUDA memory is replaced by the caches' own byte counts and
the overhead ratio is recorded but not judged (a tiny model's time is Python overhead). Tolerances: `TOLERANCES`
below and docs/gpu-check.md. The exit code is 1 when any check failed.

Left out on purpose: multi-GPU layouts, flash/flex kernels (capture needs rows of scores), real weights (the
oracles compare implementations, not model quality) and throughput tables (bench_detect.py, bench_kv.py).
torch is imported inside the functions, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

FORMAT, VERSION = "rheads-gpu-check", 1
RESULTS = Path(__file__).parent / "results"
FAMILIES = ("llama", "qwen2", "mistral", "gemma3")
PARTS = ("oracle", "overhead", "memory", "batch")
TIME_LIMIT_S = 300  # the full run on one GPU


@dataclass(frozen=True)
class Tol:
    """Tolerances of one dtype. `logits_rel`: max |ours - reference| <= logits_rel * max |reference| (logits of
    the same tokens); `entropy_atol`: nats. Top-1 ties are decided by the dtype's eps (`TIE_ULPS`, `is_clear`)."""

    logits_rel: float
    entropy_atol: float


TOLERANCES = {
    "float32": Tol(logits_rel=1e-4, entropy_atol=1e-4),
    "bfloat16": Tol(logits_rel=0.05, entropy_atol=0.05),  # 8 significant bits
    "float16": Tol(logits_rel=0.01, entropy_atol=0.01),  # 11 significant bits
}
TIE_ULPS = 2  # a top-1 closer than this many units in the last place of its dtype to the runner-up is a tie
TOP1_CHECKED_MIN = 0.5  # at least this share of top-1 slots must be clear of ties, or the oracle proves little


@dataclass
class Settings:
    """What one run measures; `settings_for` fills it for --quick (CPU, tiny) or the full GPU run."""

    quick: bool
    device: str
    dtypes: list[str]  # oracle and batch dtypes
    skipped_dtypes: dict[str, str]  # dtype -> why it does not run here
    big: dict  # LlamaConfig kwargs of the overhead/memory model
    big_dtype: str
    lengths: list[int]  # overhead prompt lengths
    new_tokens: int
    memory_length: int
    sink: int = 4
    recent: int = 256
    retrieval_share: float = 0.1  # the retrieval cache keeps the KV heads of this share of query heads
    max_overhead: float | None = 1.5  # capture / plain time; None: recorded, not judged
    oracle_len: int = 40
    oracle_new: int = 6
    batch_lengths: tuple[int, ...] = (25, 18, 31, 12)
    batch_new: int = 6


LLAMA31_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192, "rope_theta": 500000.0}
LLAMA31_8B = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                  intermediate_size=14336, vocab_size=128256, max_position_embeddings=131072,
                  rope_parameters=LLAMA31_ROPE)
LLAMA31_QUICK = dict(LLAMA31_8B, hidden_size=128, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
                     intermediate_size=256, vocab_size=512)  # the same GQA ratio (4) and rope


def settings_for(quick: bool, max_overhead: float | None) -> Settings:
    if quick:
        return Settings(quick=True, device="cpu", dtypes=["float32", "bfloat16"],
                        skipped_dtypes={"float16": "skipped on CPU"}, big=LLAMA31_QUICK, big_dtype="bfloat16",
                        lengths=[256, 512], new_tokens=8, memory_length=512, recent=64, max_overhead=None)
    return Settings(quick=False, device="cuda", dtypes=["float32", "bfloat16", "float16"], skipped_dtypes={},
                    big=LLAMA31_8B, big_dtype="bfloat16", lengths=[8192, 32768], new_tokens=16,
                    memory_length=32768, max_overhead=max_overhead)


# ------------------------------------------------------------------------------------------- the report


class Part:
    """One part's record: its checks (name, passed, measured numbers), wall seconds, and any error."""

    def __init__(self, name: str, device: str, dtypes: list[str]):
        self.name, self.device, self.dtypes = name, device, list(dtypes)
        self.checks: list[dict] = []
        self.skipped: dict[str, str] = {}
        self.info: dict = {}
        self.errors: list[str] = []
        self.seconds = 0.0

    def check(self, name: str, passed: bool, **measured) -> bool:
        self.checks.append({"name": name, "passed": bool(passed), **measured})
        return bool(passed)

    @contextmanager
    def guard(self, label: str):
        """Run a case; an exception becomes a failed check `label` with the error (the part goes on)."""
        try:
            yield
        except Exception as e:  # noqa: BLE001 - recorded, the rest still runs
            msg = f"{type(e).__name__}: {e}"
            self.errors.append(f"{label}: {msg}\n{traceback.format_exc(limit=6)}")
            self.check(label, False, error=msg)

    def to_dict(self) -> dict:
        return {"device": self.device, "dtypes": self.dtypes, "seconds": round(self.seconds, 2),
                "passed": bool(self.checks) and all(c["passed"] for c in self.checks),
                "checks": self.checks, "skipped": self.skipped, "info": self.info, "errors": self.errors}


# ------------------------------------------------------------------------------------------- comparisons


def close(ours, ref, rel: float) -> tuple[bool, dict]:
    """max |ours - ref| <= rel * max |ref| (both as float64); returns (passed, the measured numbers). Tensors of
    different shapes fail."""
    if tuple(ours.shape) != tuple(ref.shape):
        return False, {"shape": list(ours.shape), "ref_shape": list(ref.shape), "rel_limit": rel}
    ours, ref = ours.double(), ref.double()
    diff = float((ours - ref).abs().max()) if ours.numel() else 0.0
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    return diff <= rel * max(scale, 1e-12), {"max_abs_diff": diff, "ref_max_abs": scale, "rel_limit": rel}


def is_clear(gap, scale, eps: float):
    """bool [...]: a top-1 whose attention logit beats the runner-up by `gap` [...] (log(p1 / p2)) is no tie when
    gap > TIE_ULPS * eps * (scale + 1), `scale` [...] being the row's largest |logit| (`margins`): logits computed
    in the dtype are off by about eps * scale each, and probabilities rounded to the dtype add about eps."""
    return gap.double() > TIE_ULPS * eps * (scale.double() + 1)


def eager_top1(probs):
    """probs [..., k] (eager attention weights): (argmax [...], log(p1 / p2) [...]; inf when p2 is 0)."""
    top2 = probs.double().topk(2, dim=-1).values  # [..., 2]
    return probs.double().argmax(-1), top2[..., 0].log() - top2[..., 1].clamp_min(1e-300).log()


def first_divergence(a: list[int], b: list[int]) -> int | None:
    """The first step where two token lists differ (a length difference counts), None when equal."""
    for t, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return t
    return None if len(a) == len(b) else min(len(a), len(b))


def _dtype(name: str):
    import torch

    return getattr(torch, name)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------- models


def tiny_config(family: str):
    """The tests' tiny configs (tests/tiny.py), rebuilt here: GQA Llama, MQA Qwen2 (q/k/v bias), MHA Mistral with
    a sliding window, Gemma 3 with alternating sliding and full layers."""
    from transformers import Gemma3TextConfig, LlamaConfig, MistralConfig, Qwen2Config

    common = dict(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                  max_position_embeddings=256)
    if family == "llama":
        return LlamaConfig(**common, num_key_value_heads=2)
    if family == "qwen2":
        return Qwen2Config(**common, num_key_value_heads=1)
    if family == "mistral":
        return MistralConfig(**common, num_key_value_heads=4, sliding_window=6)
    return Gemma3TextConfig(**{**common, "num_hidden_layers": 4}, num_key_value_heads=2, head_dim=16,
                            sliding_window=5, layer_types=["sliding_attention", "full_attention"] * 2)


def tiny_model(family: str, attn: str, dtype: str, device: str, seed: int = 0):
    """A seeded random tiny model (built in float32 on the CPU, so every attention gets the same weights) whose
    q/k projections are scaled up so attention is peaked; then moved to `device` in `dtype`."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family), attn_implementation=attn, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "q_proj.weight" in name or "k_proj.weight" in name:
                p.mul_(6.0)
    return model.to(device=device, dtype=_dtype(dtype)).eval()


def random_llama(s: Settings):
    """The random-weight Llama-3.1-shaped model (`s.big`), built directly on the device in `s.big_dtype`."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    with torch.device(s.device):
        model = AutoModelForCausalLM.from_config(LlamaConfig(**s.big), attn_implementation="sdpa",
                                                 dtype=_dtype(s.big_dtype))
    return model.eval()


def random_ids(n: int, vocab: int, seed: int, batch: int = 1):
    """[batch, n] token ids in 3..vocab-1 (0-2 are pad/bos/eos: generate would treat them specially)."""
    import torch

    return torch.randint(3, vocab, (batch, n), generator=torch.Generator().manual_seed(seed))


def _generate(model, ids, new: int, ctl=None, cache=None):
    """Greedy `generate` of exactly `new` tokens on the model's device (with `ctl` active when given); returns
    (sequences [B, n + new] on the CPU, step logits [new, B, V] on the CPU)."""
    import torch

    from retrieval_heads.capture.decoding import greedy_kwargs

    dev = model.get_input_embeddings().weight.device
    ids = ids.to(dev)
    with torch.no_grad(), (ctl.activate(model) if ctl is not None else nullcontext()):
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                             pad_token_id=0, output_logits=True, return_dict_in_generate=True,
                             **greedy_kwargs(model, cache))
    return out.sequences.cpu(), torch.stack(out.logits).float().cpu()  # [B, N], [new, B, V]


# ------------------------------------------------------------------------------------------- oracle: capture


def margins():
    """A recorder of each recorded row's top-1 logit gap to the runner-up and its largest finite |logit|: float32
    [B, R, h, 2] (for `is_clear`); defined here so that torch loads only when a check runs."""
    import torch

    from retrieval_heads.capture.recorders import Recorder

    class Margins(Recorder):
        def reduce(self, rows):
            lg = rows.logits  # [B, h, R, k], masked keys -inf
            top2 = lg.topk(min(2, lg.shape[-1]), dim=-1).values  # [B, h, R, 2]
            gap = top2[..., 0] - top2[..., -1] if lg.shape[-1] > 1 else torch.full_like(top2[..., 0], float("inf"))
            scale = torch.where(torch.isfinite(lg), lg.abs(), 0.0).amax(-1)  # [B, h, R]
            return torch.stack([gap, scale], -1).transpose(1, 2)  # [B, h, R, 2] -> [B, R, h, 2]

    return Margins()


def capture_case(part: Part, family: str, dtype: str, s: Settings, self_test_fail: bool) -> None:
    """Capture (Top1 + Entropy on every head) against eager `output_attentions` on the same tokens, and capture
    against plain SDPA generation."""
    import torch

    from retrieval_heads.capture.attention import use_rheads
    from retrieval_heads.capture.controller import AttentionController
    from retrieval_heads.capture.recorders import Entropy

    tol, tag = TOLERANCES[dtype], f"capture/{family}/{dtype}"
    ours = use_rheads(tiny_model(family, "sdpa", dtype, s.device))
    eager = tiny_model(family, "eager", dtype, s.device)
    plain = tiny_model(family, "sdpa", dtype, s.device)
    ids = random_ids(s.oracle_len, 64, seed=1)  # [1, n]
    n = ids.shape[1]
    ent, marg = Entropy(), margins()
    ctl = AttentionController(capture=True, recorders=[ent, marg])
    seq, logits = _generate(ours, ids, s.oracle_new, ctl)  # [1, n + T], [T, 1, V]
    got = ctl.top1_positions()[:, :, 0]  # [T, L, 1, H] -> [T, L, H]
    with torch.no_grad():
        ref = eager(seq[:, :-1].to(s.device), output_attentions=True)
    eps = float(torch.finfo(_dtype(dtype)).eps)
    clear_n = agree_n = 0
    ent_diff = 0.0
    for layer, a in enumerate(ref.attentions):  # L x [1, H, n + T - 1, k]
        rows = a[0, :, n - 1:, :].float().cpu()  # [H, T, k] the rows that produced each new token
        want, gap = eager_top1(rows)  # [H, T]
        clear = is_clear(gap, marg.result()[layer][0, :, :, 1].T, eps)  # scales [T, H] -> [H, T]
        mine = got[:, layer].T.long()  # [T, H] -> [H, T]
        clear_n += int(clear.sum())
        agree_n += int((mine[clear] == want[clear]).sum())
        p = rows.double()
        want_ent = -(p * p.clamp_min(1e-30).log()).sum(-1).T  # [T, H]
        ent_diff = max(ent_diff, float((ent.result()[layer][0].double() - want_ent).abs().max()))
    total = got.numel()
    part.check(f"{tag}/top1", clear_n >= TOP1_CHECKED_MIN * total and agree_n == clear_n,
               compared=clear_n, agreed=agree_n, slots=total, min_compared_share=TOP1_CHECKED_MIN,
               tie_ulps=TIE_ULPS)
    part.check(f"{tag}/entropy", ent_diff <= tol.entropy_atol, max_abs_diff=ent_diff, atol=tol.entropy_atol)
    want_logits = ref.logits[0, n - 1:].float().cpu()  # [T, V] eager logits at the generated steps
    if self_test_fail:
        want_logits = want_logits + 1.0  # a deliberately wrong reference: this check must fail
    ok, m = close(logits[:, 0], want_logits, tol.logits_rel)
    part.check(f"{tag}/logits_vs_eager", ok, **m)
    ref_seq, ref_logits = _generate(plain, ids, s.oracle_new)  # plain SDPA, no controller
    cut = first_divergence(seq[0, n:].tolist(), ref_seq[0, n:].tolist())
    steps = s.oracle_new if cut is None else cut + 1  # steps whose inputs agree
    ok, m = close(logits[:steps], ref_logits[:steps], tol.logits_rel)
    part.check(f"{tag}/same_as_plain_generate", ok, steps_compared=steps, **m)


# ------------------------------------------------------------------------------------------- oracle: masking


class Reference:
    """Hooks on a plain SDPA model that replace chosen heads' slices of the o_proj input (tests/capture/
    test_ablation.py's reference): `zero` writes 0; `uniform` the mean of the head's V over the keys it may see
    (causal; the last `window` positions on sliding layers), V from a v_proj hook kept across decoding steps."""

    def __init__(self, model, ablate: dict[int, list[int]], mode: str):
        cfg = model.config
        self.model, self.ablate, self.mode = model, ablate, mode
        self.H, self.KV = cfg.num_attention_heads, cfg.num_key_value_heads
        self.D = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.H
        window = getattr(cfg, "sliding_window", None)
        types = getattr(cfg, "layer_types", None) or \
            ["sliding_attention" if window else "full_attention"] * cfg.num_hidden_layers
        self.windows = [window if t == "sliding_attention" else None for t in types]
        self.v: dict = {}  # layer -> [B, N so far, KV, D]
        self.handles: list = []

    def __enter__(self):
        for layer in self.ablate:
            attn = self.model.model.layers[layer].self_attn
            self.handles.append(attn.v_proj.register_forward_hook(self._v_hook(layer)))
            self.handles.append(attn.o_proj.register_forward_pre_hook(self._o_hook(layer)))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.v = {}

    def _v_hook(self, layer):
        import torch

        def hook(mod, args, out):
            B, q, _ = out.shape
            v = out.view(B, q, self.KV, self.D)  # [B, q, KV*D] -> [B, q, KV, D]
            self.v[layer] = v if layer not in self.v else torch.cat([self.v[layer], v], dim=1)

        return hook

    def _o_hook(self, layer):
        def hook(mod, args):
            x = args[0]
            B, q, _ = x.shape
            x = x.view(B, q, self.H, self.D).clone()  # [B, q, H*D] -> [B, q, H, D]
            for h in self.ablate[layer]:
                if self.mode == "zero":
                    x[:, :, h] = 0
                else:  # uniform
                    v = self.v[layer][:, :, h // (self.H // self.KV)]  # [B, N, D]
                    N, w = v.shape[1], self.windows[layer]
                    for r in range(q):
                        i = N - q + r  # absolute position of this query
                        lo = 0 if w is None else max(0, i - w + 1)
                        x[:, r, h] = v[:, lo:i + 1].mean(dim=1)
            return (x.view(B, q, self.H * self.D),)  # [B, q, H, D] -> [B, q, H*D]

        return hook


MASK = {0: [1], 2: [0, 3]}  # layers and query heads masked in the masking oracle


def masking_case(part: Part, family: str, dtype: str, s: Settings) -> None:
    """Ablation (zero, uniform) against `Reference`: prefill logits of every position, then a generation."""
    import torch

    from retrieval_heads.capture.attention import use_rheads
    from retrieval_heads.capture.controller import AttentionController

    tol = TOLERANCES[dtype]
    ref = tiny_model(family, "sdpa", dtype, s.device)
    ours = use_rheads(tiny_model(family, "sdpa", dtype, s.device))
    ids = random_ids(30, 64, seed=1).to(s.device)  # [1, 30]
    with torch.no_grad():
        unmasked = ref(ids).logits.float().cpu()  # [1, 30, V]
    for mode in ("zero", "uniform"):
        tag = f"masking/{family}/{dtype}/{mode}"
        with torch.no_grad(), Reference(ref, MASK, mode):
            want = ref(ids).logits.float().cpu()
        with torch.no_grad(), AttentionController(ablate=MASK, mode=mode).activate(ours):
            got = ours(ids).logits.float().cpu()
        ok, m = close(got, want, tol.logits_rel)
        moved = float((want - unmasked).abs().max())  # the mask must change the logits, or this proves nothing
        part.check(f"{tag}/prefill", ok and moved > 10 * m["max_abs_diff"], mask_effect=moved, **m)
        with Reference(ref, MASK, mode):
            ref_seq, ref_logits = _generate(ref, ids, s.oracle_new)
        seq, logits = _generate(ours, ids, s.oracle_new, AttentionController(ablate=MASK, mode=mode))
        n = ids.shape[1]
        cut = first_divergence(seq[0, n:].tolist(), ref_seq[0, n:].tolist())
        steps = s.oracle_new if cut is None else cut + 1
        ok, m = close(logits[:steps], ref_logits[:steps], tol.logits_rel)
        part.check(f"{tag}/decode", ok, steps_compared=steps, **m)


def part_oracle(s: Settings, part: Part, self_test_fail: bool) -> None:
    part.skipped.update(s.skipped_dtypes)
    for dtype in s.dtypes:
        for family in FAMILIES:
            with part.guard(f"capture/{family}/{dtype}"):
                capture_case(part, family, dtype, s, self_test_fail)
            with part.guard(f"masking/{family}/{dtype}"):
                masking_case(part, family, dtype, s)


# ------------------------------------------------------------------------------------------- overhead


def timed_generate(model, ids, new: int, device: str, ctl=None) -> tuple[float, list[int]]:
    """Wall seconds of one greedy `generate` of `new` tokens (synchronised), and the new tokens."""
    _sync(device)
    t0 = time.perf_counter()
    seq, _ = _generate(model, ids, new, ctl)
    _sync(device)
    return time.perf_counter() - t0, seq[0, ids.shape[1]:].tolist()


def part_overhead(s: Settings, part: Part, model) -> None:
    """Top-1 capture on every head (detection's recorder) against plain SDPA generate, 1 run after a warm-up."""
    from retrieval_heads.capture.attention import use_rheads
    from retrieval_heads.capture.controller import AttentionController

    cfg = model.config
    vocab = cfg.vocab_size
    part.info.update(model="random Llama-3.1-8B shape" if not s.quick else "random Llama-3.1 shape, tiny",
                     config={k: v for k, v in s.big.items() if k != "rope_parameters"}, new_tokens=s.new_tokens,
                     max_overhead=s.max_overhead)
    warm = random_ids(min(s.lengths), vocab, seed=7)
    model.set_attn_implementation("sdpa")
    timed_generate(model, warm, 2, s.device)
    use_rheads(model)
    timed_generate(model, warm, 2, s.device, AttentionController(capture=True))
    for n in s.lengths:
        with part.guard(f"overhead/{n}"):
            ids = random_ids(n, vocab, seed=n)  # [1, n]
            model.set_attn_implementation("sdpa")
            plain_1, _ = timed_generate(model, ids, 1, s.device)  # prefill (+ one token)
            plain_s, plain_tok = timed_generate(model, ids, s.new_tokens, s.device)
            use_rheads(model)
            cap_1, _ = timed_generate(model, ids, 1, s.device, AttentionController(capture=True))
            ctl = AttentionController(capture=True)
            cap_s, cap_tok = timed_generate(model, ids, s.new_tokens, s.device, ctl)
            top1 = ctl.top1_positions()  # [T, L, 1, H] (its slots are checked to lie in range)
            want = (s.new_tokens, cfg.num_hidden_layers, 1, cfg.num_attention_heads)
            part.check(f"overhead/{n}/capture_shape", tuple(top1.shape) == want, shape=list(top1.shape),
                       expected=list(want))
            same = sum(a == b for a, b in zip(plain_tok, cap_tok)) / max(1, len(plain_tok))
            ratio = cap_s / plain_s
            steps = max(1, s.new_tokens - 1)
            decode = {k: round(1000 * (t - t1) / steps, 3) for k, t, t1 in
                      (("plain_decode_ms", plain_s, plain_1), ("capture_decode_ms", cap_s, cap_1))}
            judged = s.max_overhead is not None
            part.check(f"overhead/{n}/ratio", ratio <= s.max_overhead if judged else True, judged=judged,
                       plain_s=round(plain_s, 4), capture_s=round(cap_s, 4), ratio=round(ratio, 4),
                       limit=s.max_overhead, plain_prefill_s=round(plain_1, 4), capture_prefill_s=round(cap_1, 4),
                       **decode, same_tokens_share=round(same, 3))
    model.set_attn_implementation("sdpa")


# ------------------------------------------------------------------------------------------- memory


def random_scores(model, seed: int = 0):
    """[L, H] random retrieval scores (uniform in 0..1): the top share picks random heads, which is all a memory
    measurement needs."""
    import numpy as np

    cfg = model.config
    return np.random.default_rng(seed).random((cfg.num_hidden_layers, cfg.num_attention_heads))


def measure_cache(model, ids, new: int, cache, device: str) -> dict:
    """Decode with `cache`; its own bytes, and on CUDA the peak allocated above what was held before."""
    import torch

    from retrieval_heads.kvcache.cache import cache_bytes

    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    _generate(model, ids, new, cache=cache)
    _sync(device)
    out = {"seconds": round(time.perf_counter() - t0, 3),
           "cache_bytes": int(getattr(cache, "peak_bytes", None) or cache_bytes(cache))}
    if cuda:
        out["peak_mib"] = round((torch.cuda.max_memory_allocated() - base) / 2 ** 20, 1)
    return out


def part_memory(s: Settings, part: Part, model) -> None:
    """Full vs retrieval (vs hybrid when registered) cache at `s.memory_length` tokens."""
    import torch

    from retrieval_heads.capture.attention import use_rheads
    from retrieval_heads.kvcache import KVConfig, make_policy, policy_names
    from retrieval_heads.kvcache.cache import build_cache, expected_bytes

    use_rheads(model)  # a compressed cache needs the registered attention (with no controller: SDPA)
    cfg = model.config
    n, new = s.memory_length, s.new_tokens
    T = n + new - 1  # slots held at the end: the last token is never fed back
    ids = random_ids(n, cfg.vocab_size, seed=3)
    bytes_per = torch.finfo(_dtype(s.big_dtype)).bits // 8
    scores = random_scores(model)
    top = max(1, round(s.retrieval_share * scores.size))
    part.info.update(tokens=n, new_tokens=new, sink=s.sink, recent=s.recent, retrieval_top_query_heads=top,
                     measure="torch.cuda.max_memory_allocated above the weights" if s.device == "cuda" else
                     "the caches' own byte counts (no CUDA memory on the CPU)")
    results: dict[str, dict] = {}
    policies = {"full": make_policy("full"), "retrieval": make_policy("retrieval", scores, top=top)}
    if "hybrid" in policy_names():
        with part.guard("memory/hybrid/build"):
            kv = KVConfig(policy="hybrid", sink=s.sink, recent=s.recent, top=top, budget=0.5).validate(scores)
            policies["hybrid"] = kv.build_policy(scores)
    else:
        part.skipped["hybrid"] = "hybrid: not registered yet"
    for name, policy in policies.items():
        with part.guard(f"memory/{name}"):
            cache = build_cache(policy, model, s.sink, s.recent)
            r = results[name] = measure_cache(model, ids, new, cache, s.device)
            del cache  # the next cache is measured without this one held
            full_heads = policy.full_kv_heads(model)  # [L, KV]
            r["full_kv_heads"], r["kv_heads"] = int(full_heads.sum()), int(full_heads.size)
            if name in ("full", "retrieval", "hybrid"):  # the formula of the built-in caches
                if name == "hybrid":  # the budget cache: each KV head's allotment of the prompt, plus the new slots
                    from retrieval_heads.kvcache.select import select_bytes

                    want = select_bytes(cfg, policy.allot(model, n), n, new - 1, dtype_bytes=bytes_per)
                else:
                    want = expected_bytes(cfg, None if name == "full" else full_heads, T, s.sink, s.recent,
                                          dtype_bytes=bytes_per)
                part.check(f"memory/{name}/bytes_formula", r["cache_bytes"] == want, cache_bytes=r["cache_bytes"],
                           expected_bytes=want)
    part.info["caches"] = results
    full = results.get("full")
    for name in [k for k in results if k != "full"]:
        if full is None:
            break
        r = results[name]
        key = "peak_mib" if "peak_mib" in r else "cache_bytes"
        r["share_of_full"] = round(r[key] / full[key], 4)
        part.check(f"memory/{name}/below_full", r[key] < full[key], measure=key, value=r[key], full=full[key],
                   share_of_full=r["share_of_full"], kv_share=round(r["cache_bytes"] / full["cache_bytes"], 4))


# ------------------------------------------------------------------------------------------- batch


def batch_case(part: Part, family: str, dtype: str, s: Settings) -> None:
    """A left-padded batch against each prompt alone: the tokens (a divergence is allowed only at a near-tie of
    the logits, and never in float32), and the top-1 slots (shifted by the padding) of the steps whose inputs
    agree, wherever the prompt alone has no tie (`is_clear`)."""
    import torch

    from retrieval_heads.capture.attention import use_rheads
    from retrieval_heads.capture.controller import AttentionController
    from retrieval_heads.capture.decoding import generate_batch

    tol, tag = TOLERANCES[dtype], f"batch/{family}/{dtype}"
    eps = float(torch.finfo(_dtype(dtype)).eps)
    model = use_rheads(tiny_model(family, "sdpa", dtype, s.device))
    prompts = [random_ids(n, 64, seed=n)[0].tolist() for n in s.batch_lengths]
    width = max(map(len, prompts))
    together_ctl = AttentionController(capture=True)
    together = generate_batch(model, prompts, s.batch_new, [], together_ctl, 0)
    slots = together_ctl.top1_positions()  # [T, L, B, H] slots of the padded batch
    for b, p in enumerate(prompts):
        marg = margins()
        alone_ctl = AttentionController(capture=True, recorders=[marg])
        alone = generate_batch(model, [p], s.batch_new, [], alone_ctl, 0)[0]
        cut = first_divergence(together[b].tokens, alone.tokens)
        explained, margin = True, None
        if cut is not None:
            with torch.no_grad():
                x = torch.tensor([p + alone.tokens[:cut]], device=s.device)  # [1, n + cut]
                last = model(x).logits[0, -1].float()  # [V] the logits of the step that diverged
            top2 = last.topk(2).values
            margin = float(top2[0] - top2[1])
            explained = dtype != "float32" and margin <= 2 * tol.logits_rel * float(last.abs().max())
        steps = s.batch_new if cut is None else cut + 1  # steps whose inputs agree
        mine = slots[:steps, :, b] - (width - len(p))  # [steps, L, H] as positions of the prompt alone
        theirs = alone_ctl.top1_positions()[:steps, :, 0]  # [steps, L, 1, H] -> [steps, L, H]
        m = torch.stack([t[0, :steps] for _, t in sorted(marg.result().items())], dim=1)  # L x [steps, H, 2]
        clear = is_clear(m[..., 0], m[..., 1], eps)  # [steps, L, H]
        agreed = int((mine[clear] == theirs[clear]).sum())
        compared = int(clear.sum())
        part.check(f"{tag}/row{b}", explained and agreed == compared and compared >= TOP1_CHECKED_MIN * clear.numel(),
                   first_divergence=cut, tie_margin=margin, steps_compared=steps, top1_compared=compared,
                   top1_agreed=agreed, top1_slots=int(clear.numel()),
                   top1_equal_share=round(float((mine == theirs).float().mean()), 4))


def part_batch(s: Settings, part: Part) -> None:
    for dtype in s.dtypes:
        for family in ("llama", "gemma3"):  # GQA; sliding windows with padding
            with part.guard(f"batch/{family}/{dtype}"):
                batch_case(part, family, dtype, s)


# ------------------------------------------------------------------------------------------- the run


def environment(device: str) -> dict:
    import torch
    import transformers

    from retrieval_heads.version import __version__

    name = torch.cuda.get_device_name(0) if device == "cuda" else (platform.processor() or platform.machine())
    return {"device": device, "device_name": name, "torch": torch.__version__,
            "transformers": transformers.__version__, "retrieval_heads": __version__,
            "python": platform.python_version(), "cuda": torch.version.cuda,
            "threads": torch.get_num_threads()}


def free_memory(device: str, drop: dict | None = None) -> None:
    """Between parts: forget the shared model when no later part needs it (`drop`), collect, empty CUDA's cache."""
    import gc

    import torch

    if drop is not None:
        drop.pop("model", None)
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def run(args) -> dict:
    """Every selected part, each guarded; returns the report."""
    import torch

    s = settings_for(args.quick, args.max_overhead)
    if s.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here: run with --quick for the CPU check")
    t_start = time.perf_counter()
    report = {"format": FORMAT, "version": VERSION, "mode": "quick" if s.quick else "full",
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **environment(s.device),
              "settings": {k: v for k, v in asdict(s).items() if k != "big"}, "tolerances":
              {k: asdict(v) for k, v in TOLERANCES.items()}, "parts": {}}
    big = {}  # the shared overhead/memory model, built once

    def get_big():
        if "model" not in big:
            t0 = time.perf_counter()
            big["model"] = random_llama(s)
            big["seconds"] = round(time.perf_counter() - t0, 2)
        return big["model"]

    for name in args.parts:
        dtypes = s.dtypes if name in ("oracle", "batch") else [s.big_dtype]
        part = Part(name, s.device, dtypes)
        t0 = time.perf_counter()
        with part.guard(f"{name}/ran"):
            if name == "oracle":
                part_oracle(s, part, args.self_test_fail)
            elif name == "batch":
                part_batch(s, part)
            else:
                model = get_big()
                part.info["model_build_s"] = big["seconds"]
                (part_overhead if name == "overhead" else part_memory)(s, part, model)
        part.seconds = time.perf_counter() - t0
        report["parts"][name] = part.to_dict()
        later = args.parts[args.parts.index(name) + 1:]
        free_memory(s.device, drop=None if {"overhead", "memory"} & set(later) else big)
        print(f"  {name}: {'ok' if report['parts'][name]['passed'] else 'FAILED'} ({part.seconds:.1f} s)",
              file=sys.stderr, flush=True)
    failed = [f"{p}: {c['name']}" for p, d in report["parts"].items() for c in d["checks"] if not c["passed"]]
    total = time.perf_counter() - t_start
    if not s.quick and total > TIME_LIMIT_S:  # the bound on one GPU
        failed.append(f"time: {total:.0f} s > {TIME_LIMIT_S} s")
    report.update(passed=not failed and bool(report["parts"]), failed=failed, total_seconds=round(total, 2),
                  time_limit_s=None if s.quick else TIME_LIMIT_S)
    return report


def summary(report: dict) -> str:
    """A short human summary of a report."""
    lines = [f"rheads GPU check ({report['mode']}) on {report['device']} ({report['device_name']}), torch "
             f"{report['torch']}, transformers {report['transformers']}: "
             f"{'PASSED' if report['passed'] else 'FAILED'} in {report['total_seconds']:.1f} s"]
    for name, d in report["parts"].items():
        n_ok = sum(c["passed"] for c in d["checks"])
        lines.append(f"  {name:9s} {'ok    ' if d['passed'] else 'FAILED'} {n_ok}/{len(d['checks'])} checks, "
                     f"{d['seconds']:.1f} s, dtypes {','.join(d['dtypes'])}"
                     + "".join(f"; {v if v.startswith(k) else f'{k} {v}'}" for k, v in d["skipped"].items()))
        for c in d["checks"]:
            if name == "overhead" and c["name"].endswith("/ratio"):
                lines.append(f"            {c['name']}: plain {c['plain_s']} s, capture {c['capture_s']} s, "
                             f"ratio {c['ratio']}" + ("" if c["judged"] else " (not judged in --quick)"))
            if name == "memory" and c["name"].endswith("/below_full"):
                lines.append(f"            {c['name']}: {c['measure']} {c['value']} vs full {c['full']} "
                             f"({c['share_of_full']:.1%})")
    for f in report["failed"]:
        lines.append(f"  FAILED {f}")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Check every CUDA path of retrieval-heads in one short run; writes one "
                                "JSON report (exit code 1 when a check failed).")
    p.add_argument("--quick", action="store_true", help="the same code paths on the CPU with tiny configs (CI)")
    p.add_argument("--out", type=Path, default=None, help="the JSON report (default bench/results/gpu_check.json, "
                   "with --quick bench/results/gpu_check_quick.json)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    p.add_argument("--max-overhead", type=float, default=1.5,
                   help="largest capture/plain generate time ratio that passes on the GPU (default 1.5: a gross "
                   "regression; bench_detect.py's goal is 1.15)")
    p.add_argument("--self-test-fail", action="store_true", help=argparse.SUPPRESS)  # a wrong reference: must fail
    args = p.parse_args(argv)
    args.parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    bad = [x for x in args.parts if x not in PARTS]
    if bad or not args.parts:
        p.error(f"--parts {','.join(bad) or '(none)'}: use a comma-separated subset of {','.join(PARTS)}")
    if args.out is None:
        args.out = RESULTS / ("gpu_check_quick.json" if args.quick else "gpu_check.json")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(summary(report))
    print(f"report: {args.out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
