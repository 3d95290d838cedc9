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


def test_control_priors_give_the_decoy_truth_zero_on_the_decoy_and_uniform_elsewhere(make_minilm, tmp_path):
    import polars as pl

    from pipeline.priors.controls import control_priors
    from tests.conftest import profile_params

    model, tokenizer, _ = make_minilm(2)
    model.config.id2label, model.config.label2id = {0: "neg", 1: "pos"}, {"neg": 0, "pos": 1}
    model.save_pretrained(tmp_path)  # a stand-in oracle teacher checkpoint
    tokenizer.save_pretrained(tmp_path)
    sentences = pl.DataFrame({"id": ["a", "b"], "text": ["a dull florp film", "zindle great fun"], "label": ["neg", "pos"]})
    params = profile_params("tiny")
    priors = control_priors(sentences, teacher=tmp_path, params=params, decoys=["florp", "zindle"])
    assert list(priors) == ["oracle", "random", "decoy_truth"]
    assert priors["decoy_truth"]["scores"].to_list() == [[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]
    assert priors["decoy_truth"]["words"].to_list() == [t.split() for t in sentences["text"]]
    # a dataset without decoys: the annotation says every word may matter
    plain = control_priors(sentences, teacher=tmp_path, params=params)["decoy_truth"]
    assert plain["scores"].to_list() == [[1.0] * 4, [1.0] * 3]
