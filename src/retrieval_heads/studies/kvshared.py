"""The KV sweep's shared prefill (`rheads kv-sweep --suite ...`, the default): each batch of suite samples is
prefilled once, and every arm (the full cache and each policy at each budget) decodes from a cache derived from
that prefill (`kvcache/shared.py`), instead of each arm prefilling the same prompts again.

`decode_shared(model, tokenizer, arms, batch_size)`: `arms` are opened suite runs (`evals.suite.run.open_suite`)
of the same samples (the sweep checks their `data_sha`). Per batch of one task and length (left-padded):
1. `generate` with one new token through a `PrefillCapture`: the prompt's forward, and generate's own pick of
   the first token;
2. per arm still missing a sample of the batch: a fresh cache of its policy, filled by `derive_cache`, and
   `generate` on with the prompt plus that first token, up to the task's new-token budget;
3. the arm's records, exactly as `suite run` writes them, plus `prefill_seconds` (the shared prefill, per sample)
   and `decode_seconds`; `seconds` is their sum (what the arm alone would have cost, prefill included).
An arm's answers are the same tokens as one prefill per arm gives (tested); the capture holds one full cache's
keys and values while the arms decode, one at a time, and is freed before the next batch (each arm keeps its
last cache until it builds the next).

Left out on purpose: masks (a masked run has no shared prefill to speak of: masks change the prefill), prefill
chunks and window prefill (refused before anything runs), and the arms' folders and summary (`kvsuite.py`).
"""

from __future__ import annotations

import time

from ..errors import RHeadsError


def check_shareable(arms) -> None:
    """Refuse, in one line, arms that cannot share one prefill."""
    shas = set()
    for run in arms:
        c = run.config
        if c.mask != "none":
            raise RHeadsError("the shared prefill runs unmasked arms only: use --no-shared-prefill with a mask")
        if c.kv.prefill_chunk or c.kv.prefill != "full":
            raise RHeadsError("the shared prefill needs the whole prompt in one forward: drop --prefill-chunk and "
                              "--kv-prefill window, or use --no-shared-prefill")
        shas.add(tuple(s.id for s in run.samples))
    if len(shas) > 1:
        raise RHeadsError("the arms of a shared prefill must hold the same samples: run them with the same suite "
                          "settings")


def decode_shared(model, tokenizer, arms, batch_size: int = 1, progress: bool = True) -> None:
    """Decode every arm's missing samples from one prefill per batch (module docstring)."""
    from tqdm.auto import tqdm

    from ..capture.decoding import Generation, generate_batch, pad_id
    from ..evals.suite.registry import get_task
    from ..evals.suite.run import groups_of, prediction
    from ..kvcache.shared import PrefillCapture, derive_cache
    from ..kvcache.select import SNAP_WINDOW
    from ..models.info import eos_ids

    if not arms:
        return
    check_shareable(arms)
    eos = eos_ids(model, tokenizer)
    ends = set(eos)
    pad = pad_id(tokenizer, eos)
    samples = arms[0].samples
    todo = [s for s in samples if any(s.id not in run.done for run in arms)]
    bar = tqdm(total=len(samples), initial=len(samples) - len(todo), desc="kv-sweep (shared prefill)",
               unit="sample", disable=not progress)
    for (name, _), group in groups_of(todo).items():
        budget = arms[0].config.max_new_tokens or get_task(name).tokens_to_generate
        for i in range(0, len(group), batch_size):
            batch = group[i:i + batch_size]
            prompts = [s.input_ids for s in batch]
            capture = PrefillCapture(model.config, window=SNAP_WINDOW)
            t0 = time.perf_counter()
            firsts = generate_batch(model, prompts, 1, eos, arms[0].ctl, pad, tokenizer=tokenizer,
                                    cache=lambda m, B: capture)
            prefill = (time.perf_counter() - t0) / len(batch)
            first = [f.tokens[0] for f in firsts]
            for run in arms:
                if all(s.id in run.done for s in batch):
                    continue
                t1 = time.perf_counter()
                cache = derive_cache(run.cache(model, len(batch)), capture)
                if budget > 1 and any(t not in ends for t in first):
                    rest = generate_batch(model, [p + [t] for p, t in zip(prompts, first)], budget - 1, eos,
                                          run.ctl, pad, tokenizer=tokenizer, cache=lambda m, B: cache)
                else:
                    rest = [Generation([], "length") for _ in batch]
                decode = (time.perf_counter() - t1) / len(batch)
                kv = run.cache.usage(model, len(batch))
                for s, f, g in zip(batch, firsts, rest):
                    gen = f if (f.tokens[0] in ends or budget == 1) else Generation(f.tokens + g.tokens, g.reason)
                    if s.id in run.done:
                        continue
                    rec = prediction(tokenizer, s, gen, prefill + decode, kv, prefill_seconds=round(prefill, 3),
                                     decode_seconds=round(decode, 3), shared_prefill=True)
                    run.done[s.id] = rec
                    if run.writer:
                        run.writer.write(rec)
            # each batch's prompt keys, values and queries go now, not at a later collection (they piled up to
            # 15 GB after 16 samples of Qwen 0.5B at 8K when the cache's layers pointed back at it: `SelectSettings`)
            capture.captured.clear()
            del capture
            bar.update(len(batch))
    bar.close()
