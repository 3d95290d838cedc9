import polars as pl
import pytest

from pipeline.errors import DataError
from pipeline.data.groups import balanced_counts, group_accuracy, sample_cells, spurious_counts

CATEGORIES = ["books", "dvd", "electronics", "kitchen"]
MAJORITY = {"books": "positive", "dvd": "positive", "electronics": "negative", "kitchen": "negative"}


def test_worst_group_accuracy_on_a_hand_made_confusion_table():
    # correct / total per (label, group): (pos, a) 3/4, (pos, b) 1/2, (neg, a) 2/2, (neg, b) 1/4
    rows = [("pos", "a", "pos")] * 3 + [("pos", "a", "neg")] + [("pos", "b", "pos"), ("pos", "b", "neg")]
    rows += [("neg", "a", "neg")] * 2 + [("neg", "b", "neg")] + [("neg", "b", "pos")] * 3
    labels, groups, predictions = (list(column) for column in zip(*rows))
    result = group_accuracy(labels=labels, groups=groups, predictions=predictions)
    assert result.cells == {("neg", "a"): 1.0, ("neg", "b"): 0.25, ("pos", "a"): 0.75, ("pos", "b"): 0.5}
    assert result.sizes == {("neg", "a"): 2, ("neg", "b"): 4, ("pos", "a"): 4, ("pos", "b"): 2}
    assert result.worst == 0.25
    assert result.average == pytest.approx((1.0 + 0.25 + 0.75 + 0.5) / 4)


def test_group_accuracy_needs_aligned_inputs():
    with pytest.raises(ValueError, match="as many labels, groups and predictions"):
        group_accuracy(labels=["a"], groups=["g", "h"], predictions=["a"])


def test_spurious_counts_give_each_group_its_majority():
    counts = spurious_counts(majority=MAJORITY, labels=["negative", "positive"], per_group=200, majority_share=0.9)
    assert counts[("positive", "books")] == counts[("negative", "kitchen")] == 180
    assert counts[("negative", "books")] == counts[("positive", "kitchen")] == 20
    assert sum(counts.values()) == 800


def test_balanced_and_spurious_draws_from_products_have_exact_cell_counts(shared_data):
    source = shared_data / "sentiment" / "products_amazon"
    train = pl.read_parquet(source / "train.parquet").with_row_index("id").with_columns(pl.col("id").cast(pl.String))
    test = pl.read_parquet(source / "test.parquet").with_row_index("id").with_columns(pl.col("id").cast(pl.String))
    labels = ["negative", "positive"]

    counts = spurious_counts(majority=MAJORITY, labels=labels, per_group=250, majority_share=0.9)
    subset = sample_cells(train, counts=counts, group="category", seed=3)
    drawn = {(y, g): n for y, g, n in subset.group_by("label", "category").len().iter_rows()}
    assert drawn == counts and subset["id"].is_unique().all()
    assert subset.equals(sample_cells(train, counts=counts, group="category", seed=3))
    assert not subset.equals(sample_cells(train, counts=counts, group="category", seed=4))

    balanced = sample_cells(test, counts=balanced_counts(labels=labels, groups=CATEGORIES, per_cell=50), group="category", seed=0)
    assert balanced.group_by("label", "category").len()["len"].to_list() == [50] * 8


def test_a_cell_too_small_names_the_cell():
    frame = pl.DataFrame({"id": ["1", "2", "3"], "label": ["p", "p", "n"], "g": ["a", "a", "a"]})
    with pytest.raises(DataError, match=r"cell label='n', g='a' has 1 rows, fewer than the 2 asked for"):
        sample_cells(frame, counts={("n", "a"): 2}, group="g", seed=0)
    with pytest.raises(DataError, match=r"cell label='n', g='b' has 0 rows"):
        sample_cells(frame, counts={("n", "b"): 1}, group="g", seed=0)
