"""What detect and niah share: a probe grid prepared for one model, and its samples decoded in batches.

`prepare(model, tokenizer, probe, max_new_tokens, stop, batch_size)` checks the model and the grid against the
model's context and loads what the grid probes: haystack, needles, resolved template, samples, EOS ids and the
stop rule (`stop` None: a newline after the answer for plain templates, none with a chat template).
`decode(...)` builds a batch of samples' probes and greedily decodes them together, left-padded, under a
controller. `run_batches(...)` walks the samples not done yet, a batch at a time, with a progress bar, writing
each record as it comes.

Left out on purpose: what each experiment records about a sample (detect: copies; niah: the judged answer).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from tqdm.auto import tqdm

from ..config import ProbeConfig
from ..errors import ParamError
from ..io.jsonl import JsonlWriter
from ..models.info import eos_ids, model_dims
from ..probes.build import Probe, build_probe
from ..probes.grid import Sample, check_grid, data_sha, grid
from ..probes.haystack import get_haystack
from ..probes.needles import Needle, get_needles
from ..probes.templates import ResolvedTemplate, resolve_template
from ..capture.attention import check_model
from ..capture.controller import AttentionController
from ..capture.decoding import Generation, default_stop, generate_batch, pad_id, text_stop
from ..kvcache.cache import prefill_chunking


@dataclass
class Grid:
    probe: ProbeConfig
    haystack: str
    needles: list[Needle]
    template: ResolvedTemplate
    samples: list[Sample]
    eos: list[int]
    stop: Callable[[str], bool] | None
    num_layers: int
    num_heads: int
    max_ctx: int

    @property
    def data_sha(self) -> str:
        return data_sha(self.haystack, self.needles)


def prepare(model, tokenizer, probe: ProbeConfig, max_new_tokens: int, stop: list[str] | None,
            batch_size: int) -> Grid:
    """One-line errors first (model not on the registered attention, batch size, grid, context), then the data."""
    check_model(model)
    if batch_size < 1:
        raise ParamError("batch_size", batch_size, "must be at least 1")
    L, H, max_ctx = model_dims(model)
    check_grid(probe, max_new_tokens, max_ctx)
    needles = get_needles(probe.needles)
    template = resolve_template(probe.template, tokenizer, probe.chat)
    return Grid(probe, get_haystack(probe.haystack), needles, template, grid(probe, len(needles)),
                eos_ids(model, tokenizer), text_stop(stop if stop is not None else default_stop(template)),
                L, H, max_ctx)


def decode(model, tokenizer, g: Grid, samples: list[Sample], max_new_tokens: int, ctl: AttentionController,
           cache=None, prefill_chunk: int | None = None) -> tuple[list[Probe], list[Generation], float]:
    """The samples' probes, their generations, and the seconds per sample of decoding them together."""
    probes = [build_probe(tokenizer, g.haystack, g.needles[s.needle_index], s.length, s.depth, template=g.template,
                          chat=g.probe.chat, max_context=g.max_ctx or None) for s in samples]
    t0 = time.perf_counter()
    with prefill_chunking(model, prefill_chunk):
        gens = generate_batch(model, [p.input_ids for p in probes], max_new_tokens, g.eos, ctl,
                              pad_id(tokenizer, g.eos), tokenizer=tokenizer, stop=g.stop, cache=cache)
    return probes, gens, (time.perf_counter() - t0) / len(samples)


def run_batches(samples: list[Sample], done: dict[str, dict], batch_size: int,
                records: Callable[[list[Sample]], list[dict]], writer: JsonlWriter | None, desc: str, progress: bool,
                postfix: Callable[[dict[str, dict]], dict[str, Any]]) -> list[dict]:
    """Records of every sample in grid order: `done` ones as they are, the others from `records(batch)`."""
    todo = [s for s in samples if s.id not in done]
    bar = tqdm(total=len(samples), initial=len(samples) - len(todo), desc=desc, unit="sample", disable=not progress)
    for i in range(0, len(todo), batch_size):
        for rec in records(todo[i:i + batch_size]):
            done[rec["id"]] = rec
            if writer:
                writer.write(rec)
        bar.update(min(batch_size, len(todo) - i))
        bar.set_postfix(**postfix(done))
    bar.close()
    return [done[s.id] for s in samples]
