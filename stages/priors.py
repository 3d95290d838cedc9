"""Stage 3a: CAP and LIME priors from the scored perturbations: data/priors/<dataset>/<setting>/{cap,lime}.parquet."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.artifacts import DATASET_SCHEMA, FEWSHOT, PRIORS, SCORES, SCORES_SCHEMA, priors_frame
from pipeline.errors import ArtifactError
from pipeline.io import read_parquet, write_parquet
from pipeline.params import PriorsParams, load_params
from pipeline.priors.cap import cap_prior, cap_targets
from pipeline.priors.lime import lime_prior, lime_targets


def _by_sentence(scores: pl.DataFrame, ids: list[str], source: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Mask matrices (n_i, d_i) and log p (n_i,) per sentence, in the order of ``ids``."""
    rows = scores.filter(pl.col("source") == source).group_by("id", maintain_order=True).agg("mask", "logprob")
    found = dict(zip(rows["id"], zip(rows["mask"], rows["logprob"])))
    missing = [i for i in ids if i not in found]
    if missing:
        raise ArtifactError(f"scores have no {source} rows for sentence {missing[0]!r}; rerun the score stage")
    masks = [np.array(found[i][0].to_list(), dtype=bool) for i in ids]
    return masks, [found[i][1].to_numpy() for i in ids]


def cap_lime_priors(sentences: pl.DataFrame, scores: pl.DataFrame, *, params: PriorsParams) -> dict[str, pl.DataFrame]:
    """Fit the CAP ridge (Cholesky, batched) and LIME's regression for every sentence.

    CAP regresses z = -1 / log p; LIME regresses ``priors.lime.target`` (p by default; see
    pipeline.priors.lime).

    Args:
        sentences: id, text, label of the setting's train set.
        scores: the score stage's rows (id, source in {cap, lime}, mask, logprob).

    Returns:
        {"cap": frame, "lime": frame} in the priors contract.
    """
    ids = sentences["id"].to_list()
    words = [text.split() for text in sentences["text"]]
    cap_masks, cap_logprobs = _by_sentence(scores, ids, "cap")
    lime_masks, lime_logprobs = _by_sentence(scores, ids, "lime")
    cap = cap_prior(cap_masks, [cap_targets(lp) for lp in cap_logprobs], ridge_lambda=params.cap.ridge_lambda)
    lime = lime_prior(lime_masks, [lime_targets(lp, target=params.lime.target) for lp in lime_logprobs],
                      kernel_width=params.lime.kernel_width, random_state=params.seed)
    return {"cap": priors_frame(ids, words, cap), "lime": priors_frame(ids, words, lime)}


def main(dataset: str, setting: str) -> None:
    """Write data/priors/<dataset>/<setting>/cap.parquet and lime.parquet."""
    params = load_params()
    sentences = read_parquet(FEWSHOT / dataset / f"{setting}.parquet", schema=DATASET_SCHEMA)
    scores = read_parquet(SCORES / dataset / f"{setting}.parquet", schema=SCORES_SCHEMA)
    for source, frame in cap_lime_priors(sentences, scores, params=params.priors).items():
        write_parquet(frame, PRIORS / dataset / setting / f"{source}.parquet")
        print(f"{dataset}/{setting}/{source}: {len(frame)} sentences")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
