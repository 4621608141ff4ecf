"""The sink + recent eviction of a compressed KV head: what it keeps, and what a query sees before it is applied.

`SinkRecent(sink, recent)`:
- `keep(store, keys, values, pos, rank, valid)`: of the stored + new entries of a layer's compressed heads,
  keep each batch row's first `sink` real tokens (attention sinks) and the last `recent` cache slots, as
  physically smaller tensors in `store` (`storage.SplitStorage`); everything while there are no more than
  sink + recent entries;
- `visible(p, s, r, v, see_all)`: whether a query at cache slot p sees the entry at slot s (rank r among its row's
  real tokens, v real):  s == p  or  (v and s <= p and (see_all or s >= p - recent or r < sink));
- `window_start(i0, see_all)`, `sink_candidates(real, rank)`: the entries a block of queries needs.
A query therefore sees at most sink + recent + 1 keys; when sink + recent covers the sequence nothing is dropped.

Left out on purpose: other eviction rules (score- or attention-based: a later policy may add its own class here)
and the attention arithmetic (`split.py`).
"""

from __future__ import annotations

import torch

from .storage import NO_RANK, SplitStorage, own


class SinkRecent:
    """Keep each row's first `sink` real tokens and the last `recent` slots (module docstring)."""

    def __init__(self, sink: int, recent: int):
        self.sink, self.recent = int(sink), int(recent)

    def visible(self, p: torch.Tensor, s: torch.Tensor, r: torch.Tensor, v: torch.Tensor, see_all) -> torch.Tensor:
        """[B, q, k] from query slots p [B, q, 1] and entries' slot s, rank r, real v [B, 1, k]."""
        return (s == p) | (v & (s <= p) & (see_all | (s >= p - self.recent) | (r < self.sink)))

    def window_start(self, i0: int, see_all: bool) -> int:
        """The first new entry a block of queries starting at new entry i0 can see (besides sinks)."""
        return 0 if see_all else max(0, i0 - self.recent)  # row i0's window starts at new entry i0 - recent

    def sink_candidates(self, real: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
        """[B, q]: new entries that may be sinks of their row (real, rank below sink)."""
        return real & (rank < self.sink)

    def keep(self, store: SplitStorage, keys: torch.Tensor, values: torch.Tensor, pos: torch.Tensor,
             rank: torch.Tensor, valid: torch.Tensor) -> None:
        """Keep, of the stored + new entries ([B, C, M, D]; pos/rank/valid [B, M]), each row's sinks and the last
        `recent` slots; everything while M <= sink + recent."""
        M = keys.shape[2]
        if M <= self.sink + self.recent:  # nothing to drop; own the storage (kc may be a view of the projection)
            store.set_compressed(own(keys), own(values), pos, rank, valid)
            return
        cut = M - self.recent  # entries [cut, M) are the last `recent` slots
        if store.sinks_done and store.nsink == self.sink:  # the sink part is settled: drop what leaves the window
            sel = [slice(0, self.sink), slice(cut, M)]
            store.set_compressed(torch.cat([keys[:, :, s] for s in sel], dim=2),  # [B, C, sink + recent, D]
                                 torch.cat([values[:, :, s] for s in sel], dim=2),
                                 *(torch.cat([t[:, s] for s in sel], dim=1) for t in (pos, rank, valid)))
            return
        # per row, the first `sink` real slots before the window (their rank < sink); empty entries where fewer
        cand = valid[:, :cut] & (rank[:, :cut] < self.sink)  # [B, cut]
        order = torch.sort((~cand).to(torch.int8), dim=1, stable=True).indices[:, :self.sink]  # [B, sink]
        n = order.shape[1]
        got = cand.gather(1, order)  # [B, n]
        B, C, _, D = keys.shape
        gk = keys.gather(2, order[:, None, :, None].expand(B, C, n, D))  # [B, C, n, D]
        gv = values.gather(2, order[:, None, :, None].expand(B, C, n, values.shape[-1]))
        gpos = torch.where(got, pos.gather(1, order), -1)  # [B, n]
        grank = torch.where(got, rank.gather(1, order), NO_RANK)
        store.set_compressed(torch.cat([gk, keys[:, :, cut:]], dim=2),  # [B, C, n + recent, D]
                             torch.cat([gv, values[:, :, cut:]], dim=2),
                             torch.cat([gpos, pos[:, cut:]], dim=1),  # [B, n + recent]
                             torch.cat([grank, rank[:, cut:]], dim=1),
                             torch.cat([got, valid[:, cut:]], dim=1))
        store.nsink = n
        store.sinks_done = bool(got.all())
