import numpy as np
import polars as pl
import pytest

from pipeline.data.perturb import perturbations
from pipeline.errors import ArtifactError
from pipeline.params import PriorsParams
from pipeline.priors.cap import cap_prior, cap_targets
from pipeline.priors.llm import cap_lime_priors, scored_masks

SENTENCES = pl.DataFrame({"id": ["a", "b"], "text": ["where is my new card", "what rate"], "label": ["card", "rate"]})
PARAMS = PriorsParams(cap={"n": 8}, lime={"n": 8})


@pytest.fixture(scope="module")
def scores() -> pl.DataFrame:
    masks = perturbations(SENTENCES, params=PARAMS)
    logprobs = -np.random.default_rng(0).uniform(0.5, 20.0, size=len(masks))
    return masks.drop("label").with_columns(pl.Series("logprob", logprobs))


def test_scored_masks_group_by_sentence_in_the_order_asked(scores):
    masks, logprobs = scored_masks(scores.reverse(), ["b", "a"], "cap")
    assert [m.shape for m in masks] == [(8 + 2, 2), (8 + 5, 5)] and masks[0].dtype == bool
    expected = scores.filter((pl.col("id") == "b") & (pl.col("source") == "cap"))["logprob"].to_numpy()[::-1]
    np.testing.assert_array_equal(logprobs[0], expected)
    with pytest.raises(ArtifactError, match="scores have no lime rows for sentence 'b'; rerun the score stage"):
        scored_masks(scores.filter((pl.col("id") == "a") | (pl.col("source") == "cap")), ["a", "b"], "lime")


def test_cap_lime_priors_fit_one_score_per_word_of_every_sentence(scores):
    priors = cap_lime_priors(SENTENCES, scores, params=PARAMS)
    assert list(priors) == ["cap", "lime"]
    for frame in priors.values():
        assert frame["id"].to_list() == ["a", "b"] and [len(s) for s in frame["scores"]] == [5, 2]
        assert frame["words"].to_list() == [t.split() for t in SENTENCES["text"]]
    masks, logprobs = scored_masks(scores, ["a"], "cap")
    expected = cap_prior(masks, [cap_targets(logprobs[0])], ridge_lambda=PARAMS.cap.ridge_lambda)[0]
    np.testing.assert_allclose(priors["cap"]["scores"][0].to_numpy(), expected)
