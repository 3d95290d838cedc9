import numpy as np
import polars as pl
import pytest

from pipeline.artifacts import priors_frame
from pipeline.data.perturb import sentence_rng
from pipeline.evaluation.adversarial import class_keywords, class_overlap, make_adversarial, target_classes
from pipeline.evaluation.attacks import adversarial_sets, generation_record
from pipeline.params import AdversarialParams
from tests.conftest import HWU64_ALARM_AUDIO


@pytest.fixture(scope="module")
def setting(shared_data):
    """Six HWU64 classes: train rows with seeded stand-in CAP priors, and test rows."""
    folder = shared_data / "hwu64"
    train = pl.read_parquet(folder / "train.parquet").filter(pl.col("label").is_in(HWU64_ALARM_AUDIO))
    train = train.with_row_index("row").select(pl.format("train-{}", "row").alias("id"), "text", "label")
    test = pl.read_parquet(folder / "test.parquet").filter(pl.col("label").is_in(HWU64_ALARM_AUDIO)).head(30)
    test = test.with_row_index("row").select(pl.format("test-{}", "row").alias("id"), "text", "label")
    words = [text.split() for text in train["text"]]
    rng = np.random.default_rng(0)
    cap = priors_frame(train["id"].to_list(), words, [rng.uniform(0.1, 1.0, len(w)) for w in words])
    return train, cap, test


def test_rules_sets_are_the_rule_edits_of_the_cap_keywords(setting):
    train, cap, test = setting
    params = AdversarialParams(keywords_per_class=5, seed=3)
    sets = adversarial_sets(train=train, cap=cap, test=test, dataset="hwu64", params=params)
    keywords = class_keywords(labels=train["label"].to_list(), words=cap["words"].to_list(),
                              scores=[s.to_numpy() for s in cap["scores"]], top_k=5)
    targets = target_classes(class_overlap(keywords), per_class=2, rng=sentence_rng(seed=3, sentence_id="hwu64"))
    for frame, expected in zip(sets.values(), make_adversarial(test, keywords, targets, seed=3), strict=True):
        assert frame.drop("generator", "llm_output").equals(expected)
        assert frame["generator"].unique().to_list() == ["rules"] and frame["llm_output"].is_null().all()
    assert generation_record(sets, params=params, llm=None) == {
        "generator": "rules", "seed": 3, "rows": {"add": {"rules": 2 * len(test)}, "replace": {"rules": 2 * len(test)}},
    }


def test_the_llm_generator_needs_the_llm_and_its_cache(setting):
    train, cap, test = setting
    with pytest.raises(ValueError, match="generator 'llm' needs the LLM and a generation cache"):
        adversarial_sets(train=train, cap=cap, test=test, dataset="hwu64", params=AdversarialParams(generator="llm"))
