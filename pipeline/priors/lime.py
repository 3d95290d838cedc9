"""LIME prior: lime's own kernel-weighted ridge regression on position-level word masks.

The neighbourhood is built outside (``pipeline.data.perturb.lime_masks`` draws it as
``LimeTextExplainer(bow=False)`` does, and the LLM scores each masked sentence); this module runs
lime's regression on it. The regression target (``lime_targets``, ``priors.lime.target``) is the
paper's LLM probability p by default, or CAP's transform z = -1 / log p.

Why the choice matters, and why it is not about scale: the ridge weights are linear in the target
(w = (X'WX + alpha I)^-1 X'W y for fixed masks and kernel weights), so the tiny probabilities of
multi-token labels (1e-6 .. 1e-12 under SmolLM2) only shrink every weight by the same factor, and
the per-sentence L2 normalisation before fusion and in the loss removes that factor. What changes is
which masks dominate the fit: p is exponential in the log-probability, so the few perturbations where
the label is most likely carry nearly all of the target's variance; z compresses that range.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from lime.lime_text import LimeTextExplainer
from sklearn.metrics import pairwise_distances

from pipeline.priors.cap import cap_targets, checked_logprobs

LimeTarget = Literal["probability", "inverse_logprob"]


def lime_targets(logprobs: np.ndarray, *, target: LimeTarget) -> np.ndarray:
    """The regression target from log p: ``"probability"`` gives p, ``"inverse_logprob"`` gives -1 / log p (``cap_targets``).

    Args:
        logprobs: log p, every value <= 0.
        target: which transform.

    Returns:
        float64 array, the shape of ``logprobs``.
    """
    if target == "probability":
        return np.exp(checked_logprobs(logprobs))
    if target == "inverse_logprob":
        return cap_targets(logprobs)
    raise ValueError(f"lime_targets: unknown target {target!r} (expected 'probability' or 'inverse_logprob')")


def lime_prior(
    masks: list[np.ndarray],
    targets: list[np.ndarray],
    *,
    kernel_width: float = 25.0,
    random_state: int = 0,
) -> list[np.ndarray]:
    """Explain every sentence with ``LimeBase.explain_instance_with_data``, no feature selection.

    As in ``LimeTextExplainer``: distances are cosine distances of each mask row to row 0, times 100,
    weighted by lime's exponential kernel sqrt(exp(-d^2 / width^2)), and fitted by
    ``Ridge(alpha=1)`` with an intercept. An all-zero row (every word removed) has a zero norm;
    sklearn's cosine distance gives it 1 (similarity 0), so its distance is a finite 100, as lime
    itself would compute.

    Args:
        masks: per sentence, a mask matrix of shape (n_i, d_i), 1 = kept; row 0 all ones.
        targets: per sentence, the regression target of shape (n_i,), finite.
        kernel_width: lime's kernel width.
        random_state: passed to lime (seeds its Ridge; the default solver does not draw from it).

    Returns:
        Per sentence, the float scores of shape (d_i,), one per word position.
    """
    if len(masks) != len(targets):
        raise ValueError(f"lime_prior: {len(masks)} mask matrices but {len(targets)} target vectors")
    # lime's own kernel and LimeBase, built as LimeTextExplainer.__init__ builds them
    base = LimeTextExplainer(kernel_width=kernel_width, bow=False, random_state=random_state).base
    priors = []
    for i, (mask, p) in enumerate(zip(masks, targets)):
        p = np.asarray(p, dtype=np.float64)
        if mask.ndim != 2 or mask.shape[1] < 1 or p.shape != (mask.shape[0],):
            raise ValueError(f"lime_prior: sentence {i} has masks of shape {mask.shape} and targets of shape {p.shape}")
        if not mask[0].all():
            raise ValueError(f"lime_prior: sentence {i}: mask row 0 must be the unmasked sentence (all ones)")
        if not np.isfinite(p).all():
            raise ValueError(f"lime_prior: sentence {i} has non-finite targets")
        data = mask.astype(np.float64)
        distances = pairwise_distances(data, data[:1], metric="cosine").ravel() * 100
        _, weights, _, _ = base.explain_instance_with_data(
            data, p[:, None], distances, label=0, num_features=data.shape[1], feature_selection="none"
        )
        scores = np.zeros(data.shape[1])
        for feature, weight in weights:
            scores[feature] = weight
        priors.append(scores)
    return priors
