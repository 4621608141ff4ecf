"""Recorders: per-step reducers of attention rows, for chosen layers and query heads, computed on the device.

While a controller is active, the `rheads` attention hands every recorded layer the attention of the rows it
records (the last query row of each forward call while generating; a span of rows when teacher-forcing) as
a `Rows` object: `probs` [B, h, R, k] (float32 softmax over the keys the mask lets each head see), `logits`
(the same before softmax, masked keys at -inf), and the cache slot of every key and row. A recorder reduces
that to a small tensor [B, R, h, ...] and keeps it on the device; `result()` moves everything to the CPU at
once, so a generation syncs only when someone reads. Built in:
- `Top1`: the cache slot of each head's top-1 key (the paper's copy test reads the token there);
- `SpanMass(spans)`: each head's attention mass on given slot ranges per row (context, generated text, ...);
- `Entropy`: each head's attention entropy (nats);
- `PrevToken`: each head's attention on the previous position (the RAUQ signal).

A `Rows.slots` value is a cache slot: the index of the token in the (left-padded) sequence the model has
processed since the controller was activated. Slots are checked to lie in range when read.

Left out on purpose: gradients, and anything that needs every row of a long prefill (memory would grow with
the square of the context).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Rows:
    """What a recorder sees for one layer and one forward call (tensors on the layer's device)."""

    layer: int
    logits: torch.Tensor  # [B, h, R, k] float32, masked keys -inf
    probs: torch.Tensor  # [B, h, R, k] float32
    key_offset: int  # cache slot of key index 0
    row_slots: torch.Tensor  # [R] cache slot of each recorded query row
    seen: int  # tokens in the cache after this call


class Recorder:
    """Base: which layers and query heads to record, and per-call results kept per layer.

    `heads`: {layer: [query heads]}; None records every head of every layer. Subclasses implement `reduce`.
    """

    def __init__(self, heads: dict[int, list[int]] | None = None):
        self.heads = None if heads is None else {int(l): sorted(set(hs)) for l, hs in heads.items() if hs}
        self.data: dict[int, list[torch.Tensor]] = {}
        self._idx: dict[tuple[int, torch.device], torch.Tensor] = {}
        self.seen: dict[int, int] = {}

    def wants(self, layer: int) -> bool:
        return self.heads is None or layer in self.heads

    def head_index(self, layer: int, num_heads: int, device: torch.device) -> torch.Tensor | None:
        """The query heads recorded in `layer` as an index tensor on `device` (None: all of them)."""
        if self.heads is None:
            return None
        key = (layer, device)
        if key not in self._idx:
            self._idx[key] = torch.tensor(self.heads[layer], device=device)
        return self._idx[key]

    def reset(self) -> None:
        self.data, self.seen = {}, {}

    def record(self, rows: Rows) -> None:
        self.data.setdefault(rows.layer, []).append(self.reduce(rows))
        self.seen[rows.layer] = rows.seen

    def reduce(self, rows: Rows) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def result(self, device: str | torch.device = "cpu") -> dict[int, torch.Tensor]:
        """{layer: [B, T, h, ...]} on `device`, T = rows recorded so far in that layer (calls concatenated).
        Layers may live on different devices (`device_map`): each piece moves before anything is joined."""
        return {l: torch.cat([t.to(device) for t in ts], dim=1) for l, ts in sorted(self.data.items())}

    def step(self, t: int) -> dict[int, torch.Tensor]:
        """{layer: [B, h, ...]} of recorded row `t` only (for reading during generation)."""
        out = {}
        for l, ts in sorted(self.data.items()):
            n = 0
            for x in ts:
                if t < n + x.shape[1]:
                    out[l] = x[:, t - n].to("cpu")
                    break
                n += x.shape[1]
        return out


class Top1(Recorder):
    """The cache slot of each head's top-1 key: int32 [B, R, h]."""

    def reduce(self, rows: Rows) -> torch.Tensor:
        return (rows.logits.argmax(-1) + rows.key_offset).transpose(1, 2).to(torch.int32)  # [B, h, R] -> [B, R, h]

    def result(self, device: str | torch.device = "cpu") -> dict[int, torch.Tensor]:
        out = super().result(device)
        for l, t in out.items():
            if t.device.type == "meta":
                continue
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.seen[l]):
                raise RuntimeError(f"layer {l}: a captured top-1 slot lies outside 0..{self.seen[l] - 1}: the cache "
                                   "did not grow as the capture assumes (a pre-filled or unsupported cache)")
        return out


class SpanMass(Recorder):
    """Attention mass of each head on slot ranges: float32 [B, R, h, S].

    `spans`: [B, S, 2] start/end cache slots per row of the batch (end exclusive; an end past the sequence
    reaches its last token, so (N, 10**9) is "everything generated after the prompt")."""

    def __init__(self, spans: torch.Tensor, heads: dict[int, list[int]] | None = None):
        super().__init__(heads)
        self.spans = spans.long()  # [B, S, 2]

    def reduce(self, rows: Rows) -> torch.Tensor:
        k = rows.probs.shape[-1]
        slots = torch.arange(k, device=rows.probs.device) + rows.key_offset  # [k]
        sp = self.spans.to(rows.probs.device)
        inside = (slots >= sp[..., :1]) & (slots < sp[..., 1:])  # [B, S, k]
        mass = torch.einsum("bhrk,bsk->brhs", rows.probs, inside.to(rows.probs.dtype))  # [B, R, h, S]
        return mass


class Entropy(Recorder):
    """Entropy of each head's attention (nats): float32 [B, R, h]."""

    def reduce(self, rows: Rows) -> torch.Tensor:
        p = rows.probs
        return -(p * torch.log(p.clamp_min(1e-30))).sum(-1).transpose(1, 2)  # [B, h, R] -> [B, R, h]


class PrevToken(Recorder):
    """Each head's attention on the position just before the row's own: float32 [B, R, h]."""

    def reduce(self, rows: Rows) -> torch.Tensor:
        idx = (rows.row_slots - 1 - rows.key_offset).clamp_min(0)  # [R] key index of the previous position
        picked = rows.probs.gather(-1, idx.view(1, 1, -1, 1).expand(*rows.probs.shape[:3], 1))  # [B, h, R, 1]
        return picked[..., 0].transpose(1, 2)  # [B, R, h]
