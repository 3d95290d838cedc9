"""Token selections over the real tokens of a batch, shared by the masking objectives (AGM, REGEX).

Real tokens are those of a word (``word_index >= 0``); special and padding tokens are never
selected and never enter a quantile or a count, however large their scores. Every selection is a
(B, T) bool tensor and carries no gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor


def above_quantile(scores: Tensor, *, real: Tensor, quantile: float) -> Tensor:
    """The real tokens scoring strictly above their sentence's ``quantile`` of the real tokens' scores.

    A sentence whose selection would be empty (ties, a single real token) takes its arg-max real token.

    Args:
        scores: (B, T) a score per token (AGM: |a_t|).
        real: (B, T) bool, True for real tokens.
        quantile: in [0, 1), linear interpolation between order statistics (``torch.nanquantile``).

    Returns:
        (B, T) bool selection; empty only for sentences without real tokens.
    """
    scores = scores.detach().float()
    threshold = torch.nanquantile(scores.masked_fill(~real, torch.nan), quantile, dim=1, keepdim=True)
    selected = real & (scores > threshold)
    best = scores.masked_fill(~real, -torch.inf).argmax(1, keepdim=True)
    fallback = torch.zeros_like(real).scatter(1, best, True) & real
    return torch.where(selected.any(1, keepdim=True), selected, fallback)


def lowest(scores: Tensor, *, real: Tensor, fraction: float) -> Tensor:
    """The floor(fraction x |R_b|) lowest-scoring real tokens of each sentence; ties go to the earlier token.

    Args:
        scores: (B, T) a score per token (REGEX: |a_t|).
        real: (B, T) bool, True for real tokens.
        fraction: K in [0, 1].

    Returns:
        (B, T) bool selection.
    """
    counts = torch.floor(fraction * real.sum(1)).long()
    return _lowest_k(scores.detach().float(), real=real, counts=counts)


def random_like(selected: Tensor, *, real: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """As many real tokens per sentence as ``selected`` holds, drawn uniformly without replacement.

    Args:
        selected: (B, T) bool, the selection whose per-sentence counts are matched.
        real: (B, T) bool, True for real tokens.
        generator: the source of randomness; None uses torch's global generator (seeded by the loop).

    Returns:
        (B, T) bool selection with ``selection.sum(1) == selected.sum(1)``.
    """
    keys = torch.rand(real.shape, generator=generator, device=real.device)
    return _lowest_k(keys, real=real, counts=selected.sum(1))


def replace(input_ids: Tensor, *, selected: Tensor, token_id: int) -> Tensor:
    """``input_ids`` with the selected tokens replaced by ``token_id`` (the attention mask is unchanged)."""
    return input_ids.masked_fill(selected, token_id)


def _lowest_k(scores: Tensor, *, real: Tensor, counts: Tensor) -> Tensor:
    """The ``counts[b]`` lowest-scoring real tokens of each sentence b (stable: earlier tokens first)."""
    order = scores.masked_fill(~real, torch.inf).argsort(dim=1, stable=True)
    rank = order.argsort(1)  # rank of each token in its sentence's ascending order, non-real tokens last
    return real & (rank < counts.unsqueeze(1))
