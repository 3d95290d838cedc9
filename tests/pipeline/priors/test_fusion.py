import numpy as np
import polars as pl
import pytest
import torch

from pipeline.artifacts import priors_frame
from pipeline.errors import ArtifactError
from pipeline.prior_sources import COMBINATIONS, CONTROLS, DISPLAY_NAMES, HYBRID
from pipeline.priors.fusion import SOURCES, fuse, fuse_priors, normalise


def test_combinations_are_the_seven_paper_variants_in_order_then_the_controls_alone():
    assert list(COMBINATIONS) == ["ig", "lime", "cap", "ig+lime", "cap+ig", "cap+lime", "cap+ig+lime", *CONTROLS]
    assert all(set(sources) <= set(SOURCES) and "+".join(sources) == name for name, sources in COMBINATIONS.items())
    assert all(c not in sources for c in CONTROLS for name, sources in COMBINATIONS.items() if name != c)
    assert DISPLAY_NAMES["cap+ig+lime"] == "CAP Hybrid" and set(DISPLAY_NAMES) == set(COMBINATIONS)
    assert HYBRID == "cap+ig+lime" and list(DISPLAY_NAMES.values())[3:6] == ["IG+LIME", "CAP+IG", "CAP+LIME"]


def test_normalise_numpy_vectors():
    np.testing.assert_allclose(normalise(np.array([3.0, -4.0])), [0.6, 0.8])
    np.testing.assert_allclose(normalise(np.array([1.0, 3.0, 2.0]), method="minmax"), [0.0, 1.0, 0.5])
    for method in ("l2", "minmax"):
        np.testing.assert_array_equal(normalise(np.zeros(3), method=method), np.zeros(3))
    np.testing.assert_array_equal(normalise(np.full(2, 5.0), method="minmax"), np.zeros(2))
    with pytest.raises(ValueError, match="unknown method 'z'"):
        normalise(np.ones(2), method="z")


def test_normalise_padded_torch_batch_ignores_padding():
    scores = torch.tensor([[3.0, -4.0, 9.0], [1.0, 3.0, 2.0], [0.0, 0.0, 7.0]])
    mask = torch.tensor([[True, True, False], [True, True, True], [True, True, False]])
    root14 = 14.0**0.5
    expected_l2 = torch.tensor([[0.6, 0.8, 0.0], [1 / root14, 3 / root14, 2 / root14], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(normalise(scores, mask=mask), expected_l2)
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(normalise(scores, method="minmax", mask=mask), expected)


@pytest.mark.parametrize("method", ["l2", "minmax"])
def test_normalise_is_differentiable_with_finite_gradients_on_zero_rows(method):
    scores = torch.tensor([[0.3, -1.2, 0.7, 2.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    assert torch.autograd.gradcheck(lambda s: normalise(s[:1], method=method, mask=mask[:1]), (scores,))
    # an alignment-style loss, as in training (the squared norm alone would be constant under l2)
    (normalise(scores, method=method, mask=mask) - torch.full((2, 4), 0.5)).pow(2).sum().backward()
    assert torch.isfinite(scores.grad).all() and scores.grad[0, :3].abs().sum() > 0
    assert scores.grad[0, 3] == 0  # padding gets no gradient


def test_fuse_mean_and_max_of_normalised_sources():
    ig = [np.array([3.0, 4.0]), np.array([2.0, 0.0, 0.0])]
    cap = [np.array([1.0, 0.0]), np.array([1.0, -1.0, 1.0])]
    root3 = 1 / np.sqrt(3.0)
    mean = fuse([ig, cap])
    np.testing.assert_allclose(mean[0], [0.8, 0.4])
    np.testing.assert_allclose(mean[1], [(1 + root3) / 2, root3 / 2, root3 / 2])
    np.testing.assert_allclose(fuse([ig, cap], how="max")[1], [1.0, root3, root3])
    np.testing.assert_allclose(fuse([ig, cap], normalisation="minmax")[1], [1.0, 0.0, 0.5])
    np.testing.assert_allclose(fuse([cap])[0], [1.0, 0.0])


def test_fuse_names_the_mismatching_sentence():
    with pytest.raises(ValueError, match="sentence 1 has 3 words in source 0 but 2 in source 1"):
        fuse([[np.ones(2), np.ones(3)], [np.ones(2), np.ones(2)]])
    with pytest.raises(ValueError, match="source 0 has 2 sentences but source 1 has 1"):
        fuse([[np.ones(2), np.ones(3)], [np.ones(2)]])


def _priors(ids: list[str], *scores: list[float]) -> pl.DataFrame:
    return priors_frame(ids, [[f"w{j}" for j in range(len(s))] for s in scores], [np.array(s) for s in scores])


def test_fuse_priors_writes_every_combination_of_the_given_sources():
    priors = {"ig": _priors(["a", "b"], [3.0, 4.0], [1.0]), "cap": _priors(["a", "b"], [1.0, 0.0], [-2.0])}
    fused = fuse_priors(priors, how="mean", normalisation="l2")
    assert list(fused) == ["ig", "cap", "cap+ig"]  # COMBINATIONS order, only those of ig and cap
    np.testing.assert_allclose(fused["ig"]["scores"][0].to_numpy(), [0.6, 0.8])
    np.testing.assert_allclose(fused["cap+ig"]["scores"][0].to_numpy(), [0.8, 0.4])
    np.testing.assert_allclose(fused["cap+ig"]["scores"][1].to_numpy(), [1.0])
    assert fused["cap"]["id"].to_list() == ["a", "b"] and fused["cap"]["words"][0].to_list() == ["w0", "w1"]


def test_fuse_priors_refuses_sources_over_other_sentences():
    priors = {"ig": _priors(["a"], [1.0]), "lime": _priors(["b"], [1.0])}
    with pytest.raises(ArtifactError, match="lime priors cover other sentences than ig priors"):
        fuse_priors(priors, how="mean", normalisation="l2")
