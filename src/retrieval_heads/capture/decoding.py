"""Greedy decoding under an attention controller: one prompt, or a left-padded batch, with optional text stops.

`generate_batch` returns, per prompt, its new tokens cut at the first EOS or text stop, and why it ended
(`eos`, `stop` or `length`: the token limit). A text stop is a predicate on the row's decoded new text,
checked after every step (`TextStop`), so rows stop one by one.

Left out on purpose: sampling (scores and NIAH cells are defined on greedy output).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .controller import AttentionController


@dataclass
class Generation:
    tokens: list[int]  # new tokens, up to and including the EOS or the token that completed the stop
    reason: str  # "eos", "stop" or "length"


class TextStop:
    """A `StoppingCriteria`: a row is done once `should_stop(decoded new text)` holds; records the step."""

    def __init__(self, tokenizer, width: int, should_stop: Callable[[str], bool]):
        self.tokenizer, self.width, self.should_stop = tokenizer, width, should_stop
        self.stopped_at: dict[int, int] = {}  # row -> number of new tokens when it stopped

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)  # [B]
        n = input_ids.shape[1] - self.width
        for b in range(input_ids.shape[0]):
            if b in self.stopped_at:
                done[b] = True
            elif self.should_stop(self.tokenizer.decode(input_ids[b, self.width:], skip_special_tokens=True)):
                self.stopped_at[b] = n
                done[b] = True
        return done


def text_stop(stops: list[str]) -> Callable[[str], bool] | None:
    """A stop predicate: any of `stops` occurs after the first non-space character (a leading newline does not
    stop an answer before it starts); None for no stops."""
    stops = [x for x in stops if x]
    if not stops:
        return None
    return lambda text: any(x in text.lstrip() for x in stops)


def default_stop(template) -> list[str]:
    """The paper's stop for plain prompts, a newline; chat turns end with their own end-of-turn token."""
    return [] if template.chat else ["\n"]


class StepStreamer:
    """A transformers streamer that calls `on_step(t, tokens [B])` once generated token t exists, when every
    recorder holds row t (`Recorder.step(t)`): results can be read while `generate` runs."""

    def __init__(self, on_step: Callable[[int, torch.Tensor], None]):
        self.on_step, self.t = on_step, -1

    def put(self, value: torch.Tensor) -> None:
        if self.t < 0:  # generate first hands over the prompt
            self.t = 0
            return
        self.on_step(self.t, value.reshape(-1).cpu())  # [B]
        self.t += 1

    def end(self) -> None:
        pass


def new_cache(model):
    """A fresh `DynamicCache` for the model (sliding-window layers keep only their window), whatever cache type
    its generation_config asks for: the capture maps key indices to positions through it."""
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def greedy_kwargs(model, cache=None) -> dict:
    """The `model.generate` arguments of greedy decoding on our own cache (`cache`, default `new_cache`), whatever
    the model's generation_config asks for: no sampling, no compilation, and no `cache_implementation` (a
    "static" one there would clash with the cache passed in). The model's generation_config is not changed."""
    return dict(do_sample=False, temperature=None, top_p=None, top_k=None, disable_compile=True,
                cache_implementation=None, cache=new_cache(model) if cache is None else cache)


def generate_batch(model, prompts: list[list[int]], max_new_tokens: int, eos: list[int], ctl: AttentionController,
                   pad: int, *, tokenizer=None, stop: Callable[[str], bool] | None = None,
                   cache=None, on_step: Callable[[int, torch.Tensor], None] | None = None) -> list[Generation]:
    """Greedy-decode prompts together (left-padded, masked) with `ctl` active; see the module docstring.

    `cache`: a callable (model, batch size) -> a fresh cache for this call (e.g. a KV policy's); default
    `new_cache`. `on_step(t, tokens [B])`: called after each step (`StepStreamer`). Compilation is disabled: the
    controller's Python side effects must run at every step. A `cache_implementation` in the model's
    generation_config (e.g. "static") is ignored: decoding uses the cache above, with the same results."""
    B, width = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((B, width), pad, dtype=torch.long)  # [B, W] left-padded
    mask = torch.zeros((B, width), dtype=torch.long)  # [B, W] 1 = real token
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    extra = {}
    text_stop = None
    if stop is not None:
        from transformers import StoppingCriteriaList

        text_stop = TextStop(tokenizer, width, stop)
        extra["stopping_criteria"] = StoppingCriteriaList([text_stop])
    if on_step is not None:
        extra["streamer"] = StepStreamer(on_step)
    device = model.get_input_embeddings().weight.device
    with ctl.activate(model), torch.no_grad():
        seq = model.generate(ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                             eos_token_id=eos or None, pad_token_id=pad,
                             **greedy_kwargs(model, cache(model, B) if cache else None), **extra)
    gen = seq[:, width:].cpu().tolist()  # [B, T]
    ends = set(eos)
    out = []
    for b, row in enumerate(gen):
        cut_eos = next((t + 1 for t, tok in enumerate(row) if tok in ends), None)
        cut_stop = text_stop.stopped_at.get(b) if text_stop else None
        if cut_eos is not None and (cut_stop is None or cut_eos <= cut_stop):
            out.append(Generation(row[:cut_eos], "eos"))
        elif cut_stop is not None:
            out.append(Generation(row[:cut_stop], "stop"))
        else:
            out.append(Generation(row[:max_new_tokens], "length"))
    return out


def greedy(model, input_ids: list[int], max_new_tokens: int, eos: list[int] | None,
           ctl: AttentionController, cache=None) -> torch.Tensor:
    """Greedy-decode one prompt with `ctl` active (prefill and every step). Returns generated ids [T]."""
    g = generate_batch(model, [input_ids], max_new_tokens, list(eos or []), ctl, (eos or [0])[0], cache=cache)[0]
    return torch.tensor(g.tokens, dtype=torch.long)  # [T]


def greedy_with_capture(model, input_ids: list[int], max_new_tokens: int, eos: list[int] | None = None):
    """Greedy-decode one prompt with top-1 capture. Returns (generated ids [T], top-1 positions [T, L, H])."""
    ctl = AttentionController(capture=True)
    gen = greedy(model, input_ids, max_new_tokens, eos, ctl)  # [T]
    return gen, ctl.top1_positions()[:len(gen), :, 0, :]  # [T, L, B=1, H] -> [T, L, H]


def pad_id(tokenizer, eos: list[int]) -> int:
    pid = getattr(tokenizer, "pad_token_id", None)
    return int(pid) if pid is not None else (eos[0] if eos else 0)


def default_batch_size(model) -> int:
    return 8 if next(model.parameters()).device.type == "cuda" else 4
