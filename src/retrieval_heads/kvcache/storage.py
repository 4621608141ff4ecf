"""Storage of one split cache layer: the key/value tensors per KV head, their lengths, and their bytes.

`SplitStorage` holds, for one full-attention layer of a `RetrievalHeadLayer`:
- the full KV heads (`full`): `keys`, `values` [B, F, n, D], growing as a `DynamicLayer`'s;
- the compressed KV heads (the rest): `ck`, `cv` [B, C, m, D] with, per stored entry [B, m], its cache slot
  (`cpos`), its rank among its row's real tokens (`crank`, `NO_RANK` for padding or an empty sink entry) and
  whether it is real (`cvalid`); `nvalid` [B] the real slots seen per row, `all_real` (no padding seen yet),
  `nsink` (leading entries of `ck` that form the sink part) and `sinks_done` (every row's sink part is full).
What is kept and dropped is `eviction.py`'s; who sees what is `split.py`'s.

Left out on purpose: the cache-layer API transformers calls (`layer.py`), offloading, quantization.
"""

from __future__ import annotations

import torch

NO_RANK = 1 << 62  # rank of a padded slot or an empty sink entry: never a sink
TENSORS = ("keys", "values", "ck", "cv", "cpos", "crank", "cvalid", "nvalid")


def as_index(heads: list[int]) -> slice | list[int]:
    """A slice when `heads` is a contiguous run (a view, no copy), else the list."""
    if heads and heads == list(range(heads[0], heads[-1] + 1)):
        return slice(heads[0], heads[-1] + 1)
    return heads


def own(t: torch.Tensor) -> torch.Tensor:
    """`t`, copied when it is a view into a larger storage (so the cache never keeps what it dropped alive)."""
    if t.untyped_storage().nbytes() > t.numel() * t.element_size():
        return t.clone(memory_format=torch.contiguous_format)
    return t


def take(x: torch.Tensor, idx: slice | list[int] | torch.Tensor, dim: int = 1) -> torch.Tensor:
    """The heads `idx` of `x` along `dim` (a view for a slice)."""
    if isinstance(idx, slice):
        return x[(slice(None),) * dim + (idx,)]
    return x.index_select(dim, idx)


class SplitStorage:
    """The tensors of one split layer (module docstring); empty until `allocate`."""

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self.keys = self.values = None  # full KV heads [B, F, seen, D]
        self.ck = self.cv = None  # compressed KV heads [B, C, m, D], m <= max(seen, sink + recent)
        self.cpos = self.crank = self.cvalid = None  # per stored entry [B, m]: slot, rank among real slots, real
        self.nvalid = None  # [B] real slots so far per row
        self.all_real = True  # no padding seen yet
        self.sinks_done = False  # every row's sink part holds `sink` real entries (no gather needed any more)
        self.nsink = 0  # leading entries of ck that form the sink part (0 until the first eviction)

    def allocate(self, key_states: torch.Tensor, value_states: torch.Tensor, F: int, C: int) -> None:
        """Empty tensors shaped after the first call's key_states [B, KV, q, D] (F full, C compressed heads)."""
        B, D, Dv = key_states.shape[0], key_states.shape[-1], value_states.shape[-1]
        device = key_states.device
        self.keys = key_states.new_zeros(B, F, 0, D)  # [B, F, 0, D]
        self.values = value_states.new_zeros(B, F, 0, Dv)
        self.ck = key_states.new_zeros(B, C, 0, D)  # [B, C, 0, D]
        self.cv = value_states.new_zeros(B, C, 0, Dv)
        self.cpos = torch.zeros(B, 0, dtype=torch.long, device=device)  # [B, 0]
        self.crank = torch.zeros(B, 0, dtype=torch.long, device=device)
        self.cvalid = torch.zeros(B, 0, dtype=torch.bool, device=device)
        self.nvalid = torch.zeros(B, dtype=torch.long, device=device)  # [B]

    def append_full(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Grow the full heads by this call's slots k, v [B, F, q, D]."""
        self.keys = torch.cat([self.keys, k], dim=-2)  # [B, F, seen + q, D]
        self.values = torch.cat([self.values, v], dim=-2)

    def set_compressed(self, ck: torch.Tensor, cv: torch.Tensor, cpos: torch.Tensor, crank: torch.Tensor,
                       cvalid: torch.Tensor) -> None:
        """Hold these compressed entries ([B, C, m, D]; per entry [B, m]) from now on."""
        self.ck, self.cv, self.cpos, self.crank, self.cvalid = ck, cv, cpos, crank, cvalid

    def map_batch(self, fn) -> None:
        """Apply `fn` to every tensor along the batch (beam reorder, repeat, select)."""
        for name in TENSORS:
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, fn(t))

    def nbytes(self) -> int:
        """Bytes of the keys and values held now."""
        return sum(t.numel() * t.element_size() for t in (self.keys, self.values, self.ck, self.cv) if t is not None)
