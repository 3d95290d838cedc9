import numpy as np
import pytest
import torch

from pipeline.attribution.attribution import encode_words, pad_baseline
from pipeline.priors.ig import completeness_gaps, ig_prior

SENTENCES = [
    "how do I top up my card?".split(),
    "my transfer was declined, why?".split(),
    "refund please".split(),
]
LABELS = torch.tensor([1, 0, 2])


def test_ig_prior_gives_one_complete_score_per_word(minilm):
    model, tokenizer = minilm
    model.train()
    priors = ig_prior(model, tokenizer, sentences=SENTENCES, labels=LABELS, steps=32, internal_batch_size=32)
    assert model.training  # mode restored
    assert [p.shape for p in priors] == [(len(w),) for w in SENTENCES]
    assert all(p.dtype == np.float64 and np.isfinite(p).all() for p in priors)
    # completeness at word level: special tokens are kept in the baseline, so words carry it all
    difference = logit_difference(model, tokenizer)
    assert model.training
    sums = np.array([p.sum() for p in priors])
    assert (np.abs(difference) > 0.05).all()
    assert (np.abs(sums - difference) <= 0.05 * np.abs(difference)).all()


def logit_difference(model, tokenizer) -> np.ndarray:
    """f_y(x) - f_y(x') of SENTENCES by hand: the label's logit at the sentence and at its pad baseline, dropout off."""
    encoding, word_index = encode_words(tokenizer, SENTENCES)
    baseline = pad_baseline(input_ids=encoding["input_ids"], word_index=word_index, pad_token_id=tokenizer.pad_token_id)
    was_training = model.training
    with torch.no_grad():
        model.eval()
        def logit(ids):
            return model(input_ids=ids, attention_mask=encoding["attention_mask"]).logits[range(3), LABELS]

        difference = (logit(encoding["input_ids"]) - logit(baseline)).numpy()
    model.train(was_training)
    return difference


def test_completeness_gaps_are_the_relative_distance_to_the_logit_difference_and_shrink_with_steps(minilm):
    model, tokenizer = minilm
    difference = logit_difference(model, tokenizer)
    gaps = {}
    for steps in (2, 32):
        scores = ig_prior(model, tokenizer, sentences=SENTENCES, labels=LABELS, steps=steps, internal_batch_size=32)
        gaps[steps] = completeness_gaps(model, tokenizer, sentences=SENTENCES, labels=LABELS, scores=scores, batch_size=2)
        by_hand = np.abs(np.array([s.sum() for s in scores]) - difference) / np.abs(difference)
        np.testing.assert_allclose(gaps[steps], by_hand, rtol=1e-3, atol=1e-4)  # padding moves logits by ~1e-6
    assert gaps[32].max() < 0.05 and gaps[32].mean() < gaps[2].mean()
    with pytest.raises(ValueError, match="3 sentences, 3 labels, 2 score rows"):
        completeness_gaps(model, tokenizer, sentences=SENTENCES, labels=LABELS, scores=scores[:2], batch_size=2)


def test_ig_prior_does_not_depend_on_batching(minilm):
    model, tokenizer = minilm
    one = ig_prior(model, tokenizer, sentences=SENTENCES, labels=LABELS, steps=8, internal_batch_size=8)
    all_ = ig_prior(model, tokenizer, sentences=SENTENCES, labels=LABELS, steps=8, internal_batch_size=24)
    for a, b in zip(one, all_):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_ig_prior_scores_truncated_words_zero(minilm):
    model, tokenizer = minilm
    words = "please cancel the pending transfer to my savings account now".split()
    (scores,) = ig_prior(
        model, tokenizer, sentences=[words], labels=[0], steps=4, internal_batch_size=4, max_length=6
    )
    assert scores.shape == (len(words),)
    assert (scores[:4] != 0).all() and (scores[4:] == 0).all()


def test_ig_prior_checks_label_count(minilm):
    model, tokenizer = minilm
    with pytest.raises(ValueError, match="3 sentences but 2 labels"):
        ig_prior(model, tokenizer, sentences=SENTENCES, labels=LABELS[:2], steps=4, internal_batch_size=4)
