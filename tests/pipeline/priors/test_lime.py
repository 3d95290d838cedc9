import numpy as np
import polars as pl
import pytest
from lime.lime_text import LimeTextExplainer
from scipy.stats import spearmanr

from pipeline.data.perturb import lime_masks, perturbations
from pipeline.params import PriorsParams
from pipeline.priors.cap import cap_targets
from pipeline.priors.lime import lime_prior, lime_targets
from pipeline.priors.llm import cap_lime_priors


def _linear_probability(masks: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """A synthetic scorer: p(label) grows linearly with the weights of the kept words."""
    return masks @ weights / weights.sum()


def test_lime_prior_equals_lime_text_explainer_on_the_same_neighbourhood():
    words = "please move my dentist appointment to friday afternoon".split()
    weights = np.random.default_rng(0).uniform(0.1, 1.0, size=len(words))
    neighbourhoods = []

    def classifier_fn(texts):
        # lime (bow=False) writes UNKWORDZ in place of each removed word
        masks = np.array([[token != "UNKWORDZ" for token in text.split()] for text in texts])
        neighbourhoods.append(masks)
        p = _linear_probability(masks, weights)
        return np.stack([p, 1 - p], axis=1)

    explainer = LimeTextExplainer(bow=False, feature_selection="none", random_state=0)
    explanation = explainer.explain_instance(" ".join(words), classifier_fn, labels=(0,), num_features=len(words), num_samples=64)
    expected = np.zeros(len(words))
    for feature, weight in explanation.as_map()[0]:
        expected[feature] = weight

    (masks,) = neighbourhoods
    (scores,) = lime_prior([masks], [_linear_probability(masks, weights)])
    np.testing.assert_allclose(scores, expected, rtol=1e-10, atol=1e-12)


def test_lime_prior_recovers_the_ranking_of_a_linear_scorer():
    rng = np.random.default_rng(1)
    masks, probabilities, weights = [], [], []
    for d in (5, 9, 14, 20):
        w = rng.permutation(np.linspace(0.05, 1.0, d))
        mask = lime_masks(d, n=64, rng=rng)
        noise = rng.normal(0.0, 0.02, size=len(mask))
        masks.append(mask)
        probabilities.append(np.clip(_linear_probability(mask, w) + noise, 0.0, 1.0))
        weights.append(w)
    for scores, w in zip(lime_prior(masks, probabilities), weights):
        assert scores.shape == w.shape and np.isfinite(scores).all()
        assert spearmanr(scores, w).statistic >= 0.9


def test_lime_prior_gives_a_one_word_sentence_one_finite_score():
    mask = lime_masks(1, n=64, rng=np.random.default_rng(0))  # rows after the first are all empty
    (scores,) = lime_prior([mask], [np.where(mask[:, 0], 0.9, 0.1)])
    assert scores.shape == (1,) and np.isfinite(scores).all() and scores[0] > 0


def test_lime_prior_validates_inputs():
    mask = lime_masks(3, n=8, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="row 0 must be the unmasked sentence"):
        lime_prior([mask[::-1]], [np.full(8, 0.5)])
    with pytest.raises(ValueError, match="non-finite"):
        lime_prior([mask], [np.full(8, np.inf)])
    with pytest.raises(ValueError, match=r"sentence 0 has masks of shape \(8, 3\) and targets of shape \(7,\)"):
        lime_prior([mask], [np.full(7, 0.5)])


def test_lime_target_switch_changes_the_regression_target_and_nothing_else():
    sentences = pl.DataFrame({"id": ["a", "b"], "text": ["where is my new card", "what rate do you use for euros"],
                              "label": ["card_arrival", "exchange_rate"]})
    params = {t: PriorsParams(cap={"n": 16}, lime={"n": 16, "target": t}) for t in ("probability", "inverse_logprob")}
    masks = perturbations(sentences, params=params["probability"])
    logprobs = -np.random.default_rng(0).uniform(0.5, 20.0, size=len(masks))
    scores = masks.drop("label").with_columns(pl.Series("logprob", logprobs))
    priors = {t: cap_lime_priors(sentences, scores, params=p) for t, p in params.items()}
    assert priors["probability"]["cap"].equals(priors["inverse_logprob"]["cap"])
    lime_rows = masks.with_columns(pl.Series("logprob", logprobs)).filter(pl.col("source") == "lime")
    for target, transform in (("probability", np.exp), ("inverse_logprob", cap_targets)):
        for i, sentence_id in enumerate(sentences["id"]):
            rows = lime_rows.filter(pl.col("id") == sentence_id)
            expected = lime_prior([np.array(rows["mask"].to_list())], [transform(rows["logprob"].to_numpy())])[0]
            np.testing.assert_allclose(priors[target]["lime"]["scores"][i].to_numpy(), expected)
    # ridge weights are linear in the target, so p's tiny scale alone changes nothing after normalisation
    m = [np.array(lime_rows.filter(pl.col("id") == "a")["mask"].to_list())]
    p = np.exp(lime_rows.filter(pl.col("id") == "a")["logprob"].to_numpy())
    np.testing.assert_allclose(lime_prior(m, [1e-9 * p])[0], 1e-9 * lime_prior(m, [p])[0], rtol=1e-6)
    with pytest.raises(ValueError, match="is 0.5, must be <= 0"):
        lime_targets(np.array([0.5]), target="probability")
