import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from pipeline.data.perturb import cap_masks
from pipeline.priors.cap import cap_prior, cap_targets


def test_cap_targets_is_minus_reciprocal_log_probability():
    np.testing.assert_allclose(cap_targets(np.array([-0.5, -4.0, -np.inf])), [2.0, 0.25, 0.0])


def test_cap_targets_clamps_log_probability_zero_and_rejects_invalid_values():
    assert cap_targets(np.array([0.0]))[0] == pytest.approx(1e6)
    assert cap_targets(np.array([0.0]), max_logprob=-0.01)[0] == pytest.approx(100.0)
    with pytest.raises(ValueError, match=r"index \[1\] is 0.1"):
        cap_targets(np.array([-1.0, 0.1]))
    with pytest.raises(ValueError, match="is nan"):
        cap_targets(np.array([np.nan]))


def test_cap_target_of_a_label_that_bfloat16_calls_certain_is_finite():
    # logits of a 135M model are ~20 wide; bfloat16 resolves 0.125 there, so its log-softmax rounds
    # log p = -0.0025 to exactly 0. The backends take the log-softmax in float32 (sums in float64),
    # and cap_targets clamps what is left at log p = -1e-6, so z stays finite either way.
    logits = torch.tensor([20.0, 14.0, 10.0], dtype=torch.bfloat16)
    in_bf16, in_f32 = logits.log_softmax(-1)[0].item(), logits.float().log_softmax(-1)[0].item()
    assert in_bf16 == 0.0 and -0.01 < in_f32 < 0
    z = cap_targets(np.array([in_bf16, -0.0, in_f32]))
    assert np.isfinite(z).all() and z[0] == z[1] == pytest.approx(1e6) and z[2] == pytest.approx(-1 / in_f32)


def test_cap_prior_matches_lstsq_of_the_augmented_system_across_padded_lengths():
    rng = np.random.default_rng(0)
    masks = [cap_masks(d, n=n, rng=rng) for d, n in [(1, 8), (2, 16), (7, 64), (13, 30), (20, 64)]]
    targets = [rng.uniform(0.02, 2.0, size=len(mask)) for mask in masks]
    ridge_lambda = 0.7
    for mask, target, scores in zip(masks, targets, cap_prior(masks, targets, ridge_lambda=ridge_lambda)):
        d = mask.shape[1]
        augmented = np.vstack([mask.astype(np.float64), np.sqrt(ridge_lambda) * np.eye(d)])
        expected = np.linalg.lstsq(augmented, np.concatenate([target, np.zeros(d)]), rcond=None)[0]
        assert scores.shape == (d,)
        np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-8)


def test_cap_prior_recovers_the_ranking_of_a_linear_scorer():
    rng = np.random.default_rng(1)
    masks, targets, weights = [], [], []
    for d in (5, 9, 14, 20):
        w = rng.permutation(np.linspace(0.05, 1.0, d))  # distinct weights, so the ranking is defined
        mask = cap_masks(d, n=64, rng=rng)
        logprob = -1.0 / (mask @ w)  # so that z = -1 / log p = w . m exactly
        masks.append(mask)
        targets.append(cap_targets(logprob * rng.uniform(0.95, 1.05, size=len(mask))))  # 5% scoring noise
        weights.append(w)
    for scores, w in zip(cap_prior(masks, targets), weights):
        assert spearmanr(scores, w).statistic >= 0.95


def test_cap_prior_float32_is_close_to_float64():
    rng = np.random.default_rng(2)
    masks = [cap_masks(d, n=64, rng=rng) for d in (4, 11)]
    targets = [rng.uniform(0.02, 0.5, size=len(mask)) for mask in masks]
    for low, high in zip(cap_prior(masks, targets, dtype=torch.float32), cap_prior(masks, targets)):
        np.testing.assert_allclose(low, high, rtol=1e-4, atol=1e-6)


def test_cap_prior_validates_inputs():
    mask = np.ones((3, 2), dtype=bool)
    assert cap_prior([], []) == []
    with pytest.raises(ValueError, match="1 mask matrices but 2 target vectors"):
        cap_prior([mask], [np.ones(3), np.ones(3)])
    with pytest.raises(ValueError, match=r"sentence 0 has masks of shape \(3, 2\) and targets of shape \(4,\)"):
        cap_prior([mask], [np.ones(4)])
    with pytest.raises(ValueError, match="ridge_lambda must be > 0"):
        cap_prior([mask], [np.ones(3)], ridge_lambda=0.0)
