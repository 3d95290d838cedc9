"""Hybrid priors: normalise each source per sentence, then combine word-wise.

The CAP family fuses the three real sources (IG, LIME, CAP); the controls (``oracle``, ``random``;
``pipeline.priors.controls``) are prior sources too but are never fused: each is its own single
combination, trained and reported like the others and marked as a control.

``normalise`` is also the training loop's normaliser for the student's own attribution, so it works
on torch (B, W) padded batches with a word mask and is differentiable.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

SOURCES = ("ig", "lime", "cap", "oracle", "random")
CONTROLS = ("oracle", "random")
COMBINATIONS: dict[str, tuple[str, ...]] = {
    "ig": ("ig",),
    "lime": ("lime",),
    "cap": ("cap",),
    "ig+lime": ("ig", "lime"),
    "cap+ig": ("cap", "ig"),
    "cap+lime": ("cap", "lime"),
    "cap+ig+lime": ("cap", "ig", "lime"),
    "oracle": ("oracle",),
    "random": ("random",),
}
DISPLAY_NAMES = {
    "ig": "IG",
    "lime": "LIME",
    "cap": "CAP",
    "ig+lime": "IG+LIME",
    "cap+ig": "CAP+IG",
    "cap+lime": "CAP+LIME",
    "cap+ig+lime": "CAP Hybrid",
    "oracle": "Oracle IG (control)",
    "random": "Random (control)",
}

Normalisation = Literal["l2", "minmax"]


def normalise(
    scores: np.ndarray | torch.Tensor,
    *,
    method: Normalisation = "l2",
    mask: torch.Tensor | None = None,
) -> np.ndarray | torch.Tensor:
    """Make one sentence's word scores comparable across sources, over its last dimension.

    - ``"l2"``: |a| / ||a||_2 (an all-zero vector stays zero);
    - ``"minmax"``: (a - min) / (max - min), in [0, 1] (a constant vector becomes zeros).

    Args:
        scores: a numpy vector (W,), or a torch tensor (..., W) such as a padded (B, W) batch;
            differentiable for torch input.
        method: ``"l2"`` or ``"minmax"``.
        mask: torch bool (..., W), True on real words; padded positions are ignored and come out 0.
            None: every position is a word.

    Returns:
        The normalised scores, same type and shape as ``scores`` (numpy input gives float64).
    """
    if isinstance(scores, np.ndarray):
        return normalise(torch.from_numpy(scores.astype(np.float64)), method=method, mask=mask).numpy()
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    if mask.shape != scores.shape:
        raise ValueError(f"normalise: mask shape {tuple(mask.shape)} differs from scores shape {tuple(scores.shape)}")
    # a zero denominator (all-zero or constant vector) is replaced by 1: the numerator is already 0
    # there, and the gradient stays finite
    if method == "l2":
        kept = torch.where(mask, scores.abs(), 0.0)
        norm = torch.linalg.vector_norm(kept, dim=-1, keepdim=True)
        return kept / torch.where(norm > 0, norm, 1.0)
    if method == "minmax":
        low = torch.where(mask, scores, torch.inf).amin(dim=-1, keepdim=True)
        high = torch.where(mask, scores, -torch.inf).amax(dim=-1, keepdim=True)
        span = high - low
        return torch.where(mask, (scores - low) / torch.where(span > 0, span, 1.0), 0.0)
    raise ValueError(f"normalise: unknown method {method!r} (expected 'l2' or 'minmax')")


def fuse(
    priors: list[list[np.ndarray]],
    *,
    how: Literal["mean", "max"] = "mean",
    normalisation: Normalisation = "l2",
) -> list[np.ndarray]:
    """Combine several sources' priors into one per sentence.

    Args:
        priors: per source, per sentence, the word scores (d_i,); every source covers the same
            sentences in the same order.
        how: word-wise ``"mean"`` or ``"max"`` of the normalised sources.
        normalisation: per-sentence normalisation of each source (see ``normalise``).

    Returns:
        Per sentence, the fused float64 scores (d_i,).
    """
    if not priors:
        raise ValueError("fuse: no prior sources given")
    if how not in ("mean", "max"):
        raise ValueError(f"fuse: unknown combination {how!r} (expected 'mean' or 'max')")
    lengths = [len(scores) for scores in priors[0]]
    for k, source in enumerate(priors):
        if len(source) != len(lengths):
            raise ValueError(f"fuse: source 0 has {len(lengths)} sentences but source {k} has {len(source)}")
        for i, (scores, d) in enumerate(zip(source, lengths)):
            if len(scores) != d:
                raise ValueError(f"fuse: sentence {i} has {d} words in source 0 but {len(scores)} in source {k}")
    if not lengths:
        return []

    width = max(lengths)
    mask = torch.arange(width) < torch.tensor(lengths)[:, None]
    stacked = torch.zeros(len(priors), len(lengths), width, dtype=torch.float64)
    for k, source in enumerate(priors):
        for i, scores in enumerate(source):
            # a copy: polars hands out read-only arrays
            stacked[k, i, : len(scores)] = torch.from_numpy(np.array(scores, dtype=np.float64))
    normalised = normalise(stacked, method=normalisation, mask=mask.expand_as(stacked))
    fused = normalised.mean(dim=0) if how == "mean" else normalised.amax(dim=0)
    return [fused[i, :d].numpy().copy() for i, d in enumerate(lengths)]
