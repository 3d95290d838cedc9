import numpy as np

from pipeline.priors.controls import random_prior


def test_random_prior_gives_one_seeded_finite_score_per_word_independent_of_order():
    ids, words = ["a", "b", "c"], [["hi"], ["my", "card", "is", "late"], ["x", "y"]]
    scores = random_prior(ids, words, seed=0)
    assert [len(s) for s in scores] == [1, 4, 2]
    assert all(np.isfinite(s).all() and (s >= 0).all() and (s < 1).all() for s in scores)
    reordered = random_prior(ids[::-1], words[::-1], seed=0)[::-1]
    assert all(np.array_equal(x, y) for x, y in zip(scores, reordered))
    assert not np.array_equal(random_prior(ids, words, seed=1)[1], scores[1])
