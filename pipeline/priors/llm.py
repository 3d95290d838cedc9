"""The LLM priors, CAP and LIME, of a set of sentences from the teacher's scores of their perturbations.

CAP regresses z = -1 / log p (``pipeline.priors.cap``); LIME regresses ``priors.lime.target``
(p by default; ``pipeline.priors.lime``). The scores come from ``pipeline.llm.scores``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from pipeline.artifacts import priors_frame
from pipeline.errors import ArtifactError
from pipeline.priors.cap import cap_prior, cap_targets
from pipeline.priors.lime import lime_prior, lime_targets

if TYPE_CHECKING:
    from pipeline.params import PriorsParams


def scored_masks(scores: pl.DataFrame, ids: list[str], source: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One source's masks and log-probabilities, grouped by sentence.

    Args:
        scores: id, source, mask, logprob (SCORES_SCHEMA).
        ids: the sentences, in the order wanted.
        source: "cap" or "lime".

    Returns:
        per sentence of ``ids``, the bool mask matrix (n_i, d_i) and the log p vector (n_i,).

    Raises:
        ArtifactError: a sentence has no rows of ``source``.
    """
    rows = scores.filter(pl.col("source") == source).group_by("id", maintain_order=True).agg("mask", "logprob")
    found = dict(zip(rows["id"], zip(rows["mask"], rows["logprob"])))
    missing = [i for i in ids if i not in found]
    if missing:
        raise ArtifactError(f"scores have no {source} rows for sentence {missing[0]!r}; rerun the score stage")
    masks = [np.array(found[i][0].to_list(), dtype=bool) for i in ids]
    return masks, [found[i][1].to_numpy() for i in ids]


def cap_lime_priors(sentences: pl.DataFrame, scores: pl.DataFrame, *, params: PriorsParams) -> dict[str, pl.DataFrame]:
    """Fit the CAP ridge (Cholesky, batched) and LIME's regression for every sentence.

    Args:
        sentences: id, text, label of the sentences to explain.
        scores: their scored perturbations (id, source in {cap, lime}, mask, logprob).
        params: ``priors`` (CAP's ridge lambda, LIME's kernel width and target, the seed).

    Returns:
        {"cap": frame, "lime": frame} in the priors contract.
    """
    ids = sentences["id"].to_list()
    words = [text.split() for text in sentences["text"]]
    cap_masks, cap_logprobs = scored_masks(scores, ids, "cap")
    lime_masks, lime_logprobs = scored_masks(scores, ids, "lime")
    cap = cap_prior(cap_masks, [cap_targets(lp) for lp in cap_logprobs], ridge_lambda=params.cap.ridge_lambda)
    lime = lime_prior(lime_masks, [lime_targets(lp, target=params.lime.target) for lp in lime_logprobs],
                      kernel_width=params.lime.kernel_width, random_state=params.seed)
    return {"cap": priors_frame(ids, words, cap), "lime": priors_frame(ids, words, lime)}
