"""The constancy kernel: how many weights stayed constant from one epoch to the next.

The initial weights are epoch 0. A weight w is *constant* between epochs e-1 and e at tolerance
tol when

    |w_e - w_{e-1}| <= tol * |w_ref|

with w_ref = w_{e-1} for basis "previous" (the seed text's formula, read with the magnitude) or
w_ref = w_e for basis "next" (what ``np.isclose(w_{e-1}, w_e, rtol=tol, atol=0)`` computes, which
made the published figures). Both are evaluated exactly as ``np.isclose(other, w_ref, rtol=tol,
atol=0)`` does, in the weights' dtype: tol 0 means exactly equal, -0.0 equals +0.0, a NaN is never
constant and an infinite weight is constant only when it stays the same infinity.

All tolerances are counted in one pass over the weights, on their device, with exact integer
counts. The predicate is monotone in tol, so each weight gets the index of the smallest tolerance
at which it is constant (a branch-free binary search over the sorted tolerances, exact because it
evaluates the very predicate above); a histogram of those indices, summed cumulatively, gives
every tolerance's count. Work is done in fixed-size chunks so the extra memory is one snapshot of
the measured weights plus a small workspace, whatever the number of epochs.

``measure_within`` also counts, per tensor, the weights constant at the *first* tolerance (exactly
equal when it is 0) that lie inside each of some given masks, from the same pass: the engine uses
it for the weights that a dead ReLU unit explains and those that got no gradient all epoch
(worker/engine/train.py).

The weights may be float32 or float64 (one dtype per meter): the rule is evaluated in theirs.
"""

from collections.abc import Sequence
from typing import Literal

import torch

Basis = Literal["previous", "next"]


class _Workspace:
    """Chunk-sized scratch buffers, allocated once per meter."""

    def __init__(self, size: int, dtype: torch.dtype, device: torch.device) -> None:
        self.diff = torch.empty(size, dtype=dtype, device=device)
        self.ref = torch.empty(size, dtype=dtype, device=device)
        self.threshold = torch.empty(size, dtype=dtype, device=device)
        self.position = torch.empty(size, dtype=torch.int32, device=device)
        self.probe = torch.empty(size, dtype=torch.int32, device=device)
        self.mask = torch.empty(size, dtype=torch.bool, device=device)
        self.exact = torch.empty(size, dtype=torch.bool, device=device)
        self.ones = torch.ones(size, dtype=torch.int32, device=device)


class _Search:
    """Sorted tolerances padded to 2**k - 1 entries for the branch-free binary search."""

    def __init__(
        self, tolerances: Sequence[float], dtype: torch.dtype, device: torch.device
    ) -> None:
        if not tolerances or list(tolerances) != sorted(tolerances) or min(tolerances) < 0:
            raise ValueError("tolerances must be a non-empty ascending list of numbers >= 0")
        self.count = len(tolerances)
        self.size = (1 << self.count.bit_length()) - 1
        # Padding repeats the largest tolerance so the predicate stays monotone over the
        # padded list; positions >= count mean "not constant at any tolerance".
        padded = list(tolerances) + [tolerances[-1]] * (self.size - self.count)
        # In the weights' dtype: NumPy casts the Python-float rtol to the array's dtype.
        self.values = torch.tensor(padded, dtype=dtype, device=device)


def _count_chunk(
    prev: torch.Tensor,
    curr: torch.Tensor,
    basis: Basis,
    search: _Search,
    ws: _Workspace,
    histogram: torch.Tensor,
    within: Sequence[torch.Tensor | None] = (),
    within_count: torch.Tensor | None = None,
) -> None:
    """Add to histogram[j] the number of weights of this chunk first constant at tolerance j, and
    to ``within_count[k]`` those constant at the first tolerance where ``within[k]`` is True."""
    n = prev.numel()
    diff, ref = ws.diff[:n], ws.ref[:n]
    threshold, position, probe, mask = ws.threshold[:n], ws.position[:n], ws.probe[:n], ws.mask[:n]
    torch.sub(curr, prev, out=diff).abs_()
    torch.abs(prev if basis == "previous" else curr, out=ref)
    position.zero_()
    step = (search.size + 1) // 2
    while step:
        # Not yet constant at tolerance position + step - 1: the first one lies beyond it.
        torch.add(position, step - 1, out=probe)
        torch.index_select(search.values, 0, probe, out=threshold)
        threshold.mul_(ref)
        torch.le(diff, threshold, out=mask).logical_not_()  # NaN compares false: not constant
        position.add_(mask, alpha=step)
        step //= 2
    # np.isclose's other clauses: a non-finite reference only counts when both values are equal.
    torch.eq(ref, torch.inf, out=mask)
    position.masked_fill_(mask, search.size)
    torch.eq(curr, prev, out=mask)
    position.masked_fill_(mask, 0)
    histogram.index_add_(0, position, ws.ones[:n])
    if within_count is None or all(m is None for m in within):
        return
    exact = ws.exact[:n]
    torch.eq(position, 0, out=exact)
    for k, inside in enumerate(within):
        if inside is not None:
            torch.logical_and(exact, inside, out=mask)
            within_count[k].add_(mask.sum())


class ConstancyMeter:
    """Keeps the previous epoch's measured weights and counts constant weights against them."""

    def __init__(
        self,
        tensors: Sequence[torch.Tensor],
        tolerances: Sequence[float],
        basis: Basis = "previous",
        *,
        chunk: int = 1 << 16,
    ) -> None:
        if basis not in ("previous", "next"):
            raise ValueError(f"unknown basis {basis!r}")
        dtype = tensors[0].dtype
        if dtype not in (torch.float32, torch.float64) or any(t.dtype != dtype for t in tensors):
            raise TypeError("the constancy kernel measures float32 or float64 weights, one dtype")
        self.basis: Basis = basis
        device = tensors[0].device
        self._search = _Search(tolerances, dtype, device)
        self._sizes = [t.numel() for t in tensors]
        # The one snapshot kept: all measured tensors back to back.
        self._previous = torch.cat([t.detach().reshape(-1) for t in tensors])
        self._chunk = max(1, min(chunk, max(self._sizes)))
        self._ws = _Workspace(self._chunk, dtype, device)
        self._histogram = torch.zeros(
            len(tensors), self._search.size + 1, dtype=torch.int32, device=device
        )
        # Grown to the number of masks measure_within is given.
        self._within = torch.zeros(len(tensors), 0, dtype=torch.int64, device=device)

    @property
    def extra_bytes(self) -> int:
        """Memory the meter holds: the snapshot plus its workspace."""
        buffers = [self._previous, self._histogram, self._within, *vars(self._ws).values()]
        return sum(b.numel() * b.element_size() for b in buffers)

    def measure(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """Counts[tensor][tolerance] (int64, on device) against the snapshot, then re-snapshots.

        No host synchronisation: the caller reads the counts when it is ready to wait.
        """
        return self.measure_within(tensors, [[] for _ in tensors])[0]

    @torch.no_grad()
    def measure_within(
        self,
        tensors: Sequence[torch.Tensor],
        within: Sequence[Sequence[torch.Tensor | None]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``measure()``'s counts, and per tensor and mask (int64, on device, tensors × masks)
        how many of its weights are constant at the first tolerance and lie where
        ``within[i][k]`` (a bool tensor with as many elements as tensor i, or None: counts 0)
        is True; every tensor gets as many masks. One pass; no host synchronisation."""
        if [t.numel() for t in tensors] != self._sizes:
            raise ValueError("measure() needs the same tensors the meter was built with")
        masks = len(within[0]) if within else 0
        if len(within) != len(tensors) or any(
            len(ws) != masks
            or any(w is not None and (w.numel() != n or w.dtype != torch.bool) for w in ws)
            for ws, n in zip(within, self._sizes, strict=True)
        ):
            raise ValueError(
                "within needs as many bool masks (or None) for every tensor, each of its size"
            )
        self._histogram.zero_()
        if self._within.shape[1] != masks:
            self._within = self._within.new_zeros(len(tensors), masks)
        self._within.zero_()
        offset = 0
        for i, tensor in enumerate(tensors):
            flat = tensor.detach().reshape(-1)
            flat_masks = [None if m is None else m.reshape(-1) for m in within[i]]
            for start in range(0, flat.numel(), self._chunk):
                curr = flat[start : start + self._chunk]
                prev = self._previous[offset + start : offset + start + curr.numel()]
                _count_chunk(
                    prev,
                    curr,
                    self.basis,
                    self._search,
                    self._ws,
                    self._histogram[i],
                    [None if m is None else m[start : start + curr.numel()] for m in flat_masks],
                    self._within[i],
                )
                prev.copy_(curr)
            offset += flat.numel()
        counts = self._histogram.cumsum(1, dtype=torch.int64)
        return counts[:, : self._search.count], self._within.clone()
