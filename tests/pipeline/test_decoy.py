import numpy as np
import polars as pl
import pytest

from pipeline.decoy import (
    TEST_VARIANTS,
    check_decoy_words,
    check_decoys_absent,
    check_decoys_tokenised,
    decoy_mass,
    decoy_positions,
    decoy_truth_prior,
    insert_decoys,
    strip_decoys,
)
from pipeline.errors import ConfigError, DataError

LABELS = ["negative", "positive"]
DECOYS = {"negative": "zorvik", "positive": "plimbo"}


def _frame(n: int = 200) -> pl.DataFrame:
    return pl.DataFrame({"id": [f"s{i}" for i in range(n)], "text": [f"word{i} plot was fine ok" for i in range(n)],
                         "label": [LABELS[i % 2] for i in range(n)]})


def test_test_variants_share_each_sentences_position_and_differ_only_in_the_decoy():
    frame = _frame()
    variants = {v: insert_decoys(frame, DECOYS, labels=LABELS, rate=1.0, seed=3, variant=v) for v in TEST_VARIANTS}
    words = {v: [t.split() for t in f["text"]] for v, f in variants.items()}
    positions = {v: decoy_positions(w, DECOYS.values()) for v, w in words.items()}
    assert (positions["matched"] >= 0).all()
    assert all((positions[v] == positions["matched"]).all() for v in TEST_VARIANTS)
    assert len(set(positions["matched"].tolist())) == 6  # uniform over the 6 slots of a 5-word sentence
    for i, label in enumerate(frame["label"]):
        stripped = {v: strip_decoys(variants[v]["text"][i], DECOYS.values()) for v in TEST_VARIANTS}
        assert set(stripped.values()) == {frame["text"][i]}
        assert words["matched"][i][positions["matched"][i]] == DECOYS[label]
        assert words["swapped"][i][positions["matched"][i]] != DECOYS[label]
    randomised_true = np.mean([w[p] == DECOYS[label] for w, p, label in
                               zip(words["randomised"], positions["randomised"], frame["label"])])
    assert 0.4 < randomised_true < 0.6  # a uniform label of two


def test_train_decoys_follow_the_label_at_the_rate_and_do_not_depend_on_row_order():
    frame = _frame(400)
    decoyed = insert_decoys(frame, DECOYS, labels=LABELS, rate=0.9, seed=0)
    own = np.mean([DECOYS[label] in text.split() for text, label in zip(decoyed["text"], decoyed["label"])])
    assert 0.85 < own < 0.95
    shuffled = insert_decoys(frame.reverse(), DECOYS, labels=LABELS, rate=0.9, seed=0).reverse()
    assert shuffled["text"].to_list() == decoyed["text"].to_list()
    assert insert_decoys(frame, DECOYS, labels=LABELS, rate=0.9, seed=1)["text"].to_list() != decoyed["text"].to_list()


def test_decoy_truth_prior_zeroes_the_decoy_and_decoy_mass_is_its_share():
    sentences = [["a", "zorvik", "b"], ["no", "decoy"]]
    prior = decoy_truth_prior(sentences, DECOYS.values())
    assert [p.tolist() for p in prior] == [[1.0, 0.0, 1.0], [1.0, 1.0]]
    positions = decoy_positions(sentences, DECOYS.values())
    assert positions.tolist() == [1, -1]
    assert decoy_mass([np.array([1.0, -2.0, 1.0]), np.array([5.0, 5.0])], positions) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("decoys", "message"),
    [
        ({"negative": "zorvik"}, "no decoy word for label 'positive'"),
        ({**DECOYS, "neutral": "blorft"}, "'neutral' is not a label"),
        ({"negative": "zor vik", "positive": "plimbo"}, "'zor vik' is not one word"),
        ({"negative": "zorvik", "positive": "ZORVIK"}, "two labels share a decoy word"),
    ],
)
def test_bad_decoy_words_fail_naming_the_key(decoys, message):
    with pytest.raises(ConfigError, match=message):
        check_decoy_words(decoys, labels=LABELS, where="data.datasets.x.decoy.words")


def test_a_decoy_that_occurs_in_the_data_fails_naming_split_and_row():
    frames = {"train": _frame(3), "test": pl.DataFrame({"id": ["t0"], "text": ["a Plimbo here"], "label": ["positive"]})}
    with pytest.raises(DataError, match="decoy word 'plimbo' occurs in test row 't0'"):
        check_decoys_absent(DECOYS, frames, where="sst2_decoy")


def test_decoys_must_survive_the_students_tokenizer(make_minilm):
    _, tokenizer, _ = make_minilm(2)
    check_decoys_tokenised(DECOYS, tokenizer, where="w")
    with pytest.raises(ConfigError, match="tokenise alike"):
        check_decoys_tokenised({"negative": "zorvik", "positive": "Zorvik"}, tokenizer, where="w")  # uncased WordPiece
