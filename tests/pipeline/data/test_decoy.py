import numpy as np
import polars as pl
import pytest

from pipeline.data.decoy import (
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
    # the decoy column names the label whose word was planted: the label itself or, at rate 0.9, another one
    assert [DECOYS[d] in t.split() for d, t in zip(decoyed["decoy"], decoyed["text"])] == [True] * len(frame)
    assert (decoyed["decoy"] == decoyed["label"]).mean() == own
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


@pytest.mark.slow
def test_the_default_guided_loss_with_decoy_truth_stops_the_student_following_a_swapped_decoy(shared_data, make_minilm):
    """The positive control in miniature, with the default profile's guided settings: a change that stops
    the loss from changing behaviour (not just attributions) turns this red."""
    import torch

    from pipeline.training.objectives import get_objective
    from pipeline.training.objectives.base import Task
    from pipeline.params import load_params
    from pipeline.evaluation.predict import predict_proba
    from pipeline.training.training import Example, train_student
    from tests.conftest import REPO

    def draw(split: str, per_label: int) -> pl.DataFrame:
        frame = pl.read_parquet(shared_data / "sentiment" / "movies_sst2" / f"{split}.parquet").with_row_index("row")
        frame = frame.select(pl.format(f"{split}-{{}}", "row").alias("id"),
                             pl.col("text").str.split(" ").list.head(16).list.join(" "), "label")
        return pl.concat([frame.filter(pl.col("label") == label).head(per_label) for label in LABELS])

    train = insert_decoys(draw("train", 40), DECOYS, labels=LABELS, rate=1.0, seed=0)
    test = draw("test", 50)
    matched, swapped = (insert_decoys(test, DECOYS, labels=LABELS, rate=1.0, seed=0, variant=v) for v in ("matched", "swapped"))
    words = [t.split() for t in train["text"]]
    settings = load_params(REPO / "params.yaml").student.settings["guided"]

    def flip_rate(objective, prior) -> float:
        model, tokenizer, _ = make_minilm(2, seed=0)
        examples = [Example(w, LABELS.index(label), p) for w, label, p in zip(words, train["label"], prior)]
        model, _, _ = train_student(model=model, tokenizer=tokenizer, train=examples, objective=objective,
                                    task=Task(num_labels=2), epochs=4, lr=1e-4, batch_size=8, warmup_fraction=0.1,
                                    seed=0, device="cpu", max_length=40)
        predicted = [predict_proba(model, tokenizer, [t.split() for t in f["text"]], batch_size=50, device="cpu",
                                   max_length=40).argmax(1) for f in (matched, swapped)]
        return 100 * float((predicted[0] != predicted[1]).mean())

    torch.set_num_threads(2)
    baseline = flip_rate(get_objective("baseline"), [None] * len(words))
    guided = flip_rate(get_objective("guided", **settings), decoy_truth_prior(words, DECOYS.values()))
    assert baseline > 50, f"the control does not bite: the baseline follows a swapped decoy in {baseline:.0f} % only"
    assert guided < baseline - 25, f"guided {guided:.0f} % vs baseline {baseline:.0f} % of predictions follow the swap"
