
import numpy as np
import polars as pl
import pytest

from tests.conftest import REPO


@pytest.fixture(scope="session")
def banking(shared_data) -> tuple[list[str], pl.DataFrame]:
    """Banking77's 77 label names and 11 training rows spread over the labels (text, label)."""
    labels = (shared_data / "banking77" / "labels.txt").read_text().split()
    return labels, pl.read_parquet(shared_data / "banking77" / "train.parquet").gather_every(1000)


@pytest.fixture(scope="session")
def score_cap_queries(banking, tmp_path_factory):
    """Scores real Banking77 CAP queries the way the score stage does (pipeline.llm.scores): its perturbations (4 random masks
    + the single-word masks of 3 sentences, ~40 queries) and its scoring function with the default
    profile's CAP template over the 77 labels, through a fresh score cache each call.

    Returns:
        ``score(scorer) -> float64 array`` of the queries' log-probabilities, in a fixed order.
    """
    from pipeline.data.perturb import perturbations
    from pipeline.llm.cache import ScoreCache
    from pipeline.llm.scores import score_perturbations
    from pipeline.params import CapParams, PriorsParams, load_params

    labels, frame = banking
    sentences = frame.head(3).with_row_index("id").with_columns(pl.format("train-{}", "id").alias("id"))
    masks = perturbations(sentences, params=PriorsParams(cap=CapParams(n=4))).filter(pl.col("source") == "cap")
    template = load_params(REPO / "params.yaml").scoring.cap_template

    def score(scorer) -> np.ndarray:
        cache = ScoreCache(tmp_path_factory.mktemp("scores"))
        scored = score_perturbations(masks, sentences, labels=labels, templates={"cap": template}, scorer=scorer, cache=cache)
        return scored["logprob"].to_numpy()

    return score
