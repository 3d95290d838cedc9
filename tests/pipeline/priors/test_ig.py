import numpy as np
import pytest
import torch

from pipeline.attribution.attribution import encode_words, pad_baseline
from pipeline.priors.ig import ig_prior

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
    encoding, word_index = encode_words(tokenizer, SENTENCES)
    baseline = pad_baseline(input_ids=encoding["input_ids"], word_index=word_index, pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():
        model.eval()
        def logit(ids):
            return model(input_ids=ids, attention_mask=encoding["attention_mask"]).logits[range(3), LABELS]

        difference = (logit(encoding["input_ids"]) - logit(baseline)).numpy()
        model.train()
    sums = np.array([p.sum() for p in priors])
    assert (np.abs(difference) > 0.05).all()
    assert (np.abs(sums - difference) <= 0.05 * np.abs(difference)).all()


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
