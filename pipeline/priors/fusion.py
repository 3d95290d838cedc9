"""Hybrid priors: normalise each source per sentence, then combine word-wise.

The CAP family fuses the three real sources (IG, LIME, CAP): every non-empty subset of them is a
combination. The controls (``oracle``, ``random``; ``pipeline.priors.controls``) are prior sources
too but are never fused: each is its own single combination, trained and reported like the others
and marked as a control. The combinations and their names are declared with the sources in
``pipeline.prior_sources``.

``normalise`` is also the training loop's normaliser for the student's own attribution, so it works
on torch (B, W) padded batches with a word mask and is differentiable.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
import torch

from pipeline.artifacts import priors_frame
from pipeline.errors import ArtifactError
from pipeline.prior_sources import COMBINATIONS
from pipeline.prior_sources import SOURCES as PRIOR_SOURCES

SOURCES = tuple(source.name for source in PRIOR_SOURCES)


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


def fuse_priors(priors: dict[str, pl.DataFrame], *, how: str, normalisation: str) -> dict[str, pl.DataFrame]:
    """Normalise each source per sentence and combine word-wise, for every combination of the given sources.

    Args:
        priors: source (a subset of ``SOURCES``) -> priors-contract frame over the same sentences.
        how: ``fuse``'s word-wise combination ("mean" or "max").
        normalisation: ``normalise``'s method.

    Returns:
        combination name -> priors-contract frame, for each combination whose sources are all
        given (single sources come out normalised).

    Raises:
        ArtifactError: two sources cover other sentences.
    """
    reference = next(iter(priors.values()))
    for source, frame in priors.items():
        if frame["id"].to_list() != reference["id"].to_list():
            raise ArtifactError(f"{source} priors cover other sentences than {next(iter(priors))} priors; rerun the prior stages")
    vectors = {source: [s.to_numpy() for s in frame["scores"]] for source, frame in priors.items()}
    return {
        name: priors_frame(reference["id"], reference["words"].to_list(),
                           fuse([vectors[s] for s in sources], how=how, normalisation=normalisation))
        for name, sources in COMBINATIONS.items() if set(sources) <= priors.keys()
    }
