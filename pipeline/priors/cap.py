"""CAP prior: per-word scores from a ridge fit of LLM label log-probabilities on perturbation masks.

For one sentence with masks M (n x d, 1 = word kept) and targets z = -1 / log p (p the LLM's
probability of the true label given the masked prompt), the score vector a minimises
||M a - z||^2 + lambda ||a||^2, i.e. solves (M^T M + lambda I) a = M^T z. The matrix is symmetric
positive definite for lambda > 0, so it is solved by Cholesky, all sentences of a split in one batch.
"""

from __future__ import annotations

import numpy as np
import torch


def cap_targets(logprobs: np.ndarray, *, max_logprob: float = -1e-6) -> np.ndarray:
    """Regression targets z = -1 / log p.

    z is positive and grows with p; the reciprocal spreads out the tiny probabilities of multi-token
    labels. z diverges as log p -> 0, and a float32 log-softmax can round a near-certain label to
    exactly 0, so log p is clamped to at most ``max_logprob`` (z <= -1 / max_logprob = 1e6 by
    default). log p = -inf (p = 0) gives z = 0.

    Args:
        logprobs: log p, any shape, every value <= 0 and not NaN.
        max_logprob: clamp for log p, < 0.

    Returns:
        float64 array of z, the shape of ``logprobs``.
    """
    if not max_logprob < 0:
        raise ValueError(f"cap_targets: max_logprob must be < 0, got {max_logprob}")
    return -1.0 / np.minimum(checked_logprobs(logprobs), max_logprob)


def checked_logprobs(logprobs: np.ndarray) -> np.ndarray:
    """``logprobs`` as float64, after checking that every value is <= 0 and not NaN (ValueError naming the index)."""
    logprobs = np.asarray(logprobs, dtype=np.float64)
    bad = np.isnan(logprobs) | (logprobs > 0)
    if bad.any():
        index = np.argwhere(bad)[0].tolist()
        raise ValueError(f"log-probability at index {index} is {logprobs[tuple(index)]}, must be <= 0")
    return logprobs


def cap_prior(
    masks: list[np.ndarray],
    targets: list[np.ndarray],
    *,
    ridge_lambda: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> list[np.ndarray]:
    """Solve every sentence's ridge system in one batched Cholesky factorisation.

    Sentences are padded to the largest n and d: padded mask rows and columns are zero, so a padded
    coordinate has A = lambda on its diagonal, no coupling and right-hand side 0, hence score 0, and
    it does not change the real coordinates' solution.

    Args:
        masks: per sentence, a mask matrix of shape (n_i, d_i), 1 = kept (bool or 0/1).
        targets: per sentence, z of shape (n_i,) (see ``cap_targets``).
        ridge_lambda: lambda > 0.
        dtype: solve precision (float64 by default; float32 is faster and less exact).

    Returns:
        Per sentence, the float scores of shape (d_i,), one per word position.
    """
    if len(masks) != len(targets):
        raise ValueError(f"cap_prior: {len(masks)} mask matrices but {len(targets)} target vectors")
    if not ridge_lambda > 0:
        raise ValueError(f"cap_prior: ridge_lambda must be > 0, got {ridge_lambda}")
    for i, (mask, target) in enumerate(zip(masks, targets)):
        if mask.ndim != 2 or mask.shape[1] < 1 or np.shape(target) != (mask.shape[0],):
            raise ValueError(f"cap_prior: sentence {i} has masks of shape {mask.shape} and targets of shape {np.shape(target)}")
    if not masks:
        return []

    n_max = max(mask.shape[0] for mask in masks)
    d_max = max(mask.shape[1] for mask in masks)
    m = np.zeros((len(masks), n_max, d_max), dtype=np.float32)
    rhs = np.zeros((len(masks), d_max, 1))
    for i, (mask, target) in enumerate(zip(masks, targets)):
        m[i, : mask.shape[0], : mask.shape[1]] = mask
        rhs[i, : mask.shape[1], 0] = np.asarray(target, dtype=np.float64) @ mask  # M^T z in float64
    # M^T M of 0/1 masks holds integer counts, exact in float32 (half the cost of a float64 product)
    m_t = torch.from_numpy(m).transpose(1, 2)
    gram = (m_t @ m_t.transpose(1, 2)).to(dtype) + ridge_lambda * torch.eye(d_max, dtype=dtype)
    scores = torch.cholesky_solve(torch.from_numpy(rhs).to(dtype), torch.linalg.cholesky(gram))[..., 0].numpy()
    return [scores[i, : mask.shape[1]].copy() for i, mask in enumerate(masks)]
