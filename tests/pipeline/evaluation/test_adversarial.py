import numpy as np
import pytest

from pipeline.evaluation.adversarial import (
    STOPWORDS,
    class_keywords,
    class_overlap,
    keyword_addition,
    keyword_form,
    keyword_replacement,
    make_adversarial,
    target_classes,
)
from tests.conftest import HWU64_ALARM_AUDIO


def _words(text: str) -> list[str]:
    return [keyword_form(word) for word in text.split()]


@pytest.fixture(scope="module")
def hwu64(hwu64_keywords):
    """The six HWU64 classes' test rows and keywords, two adversarial targets per class."""
    test, keywords = hwu64_keywords
    return test, keywords, target_classes(class_overlap(keywords), per_class=2, rng=np.random.default_rng(0))


def test_class_keywords_rank_words_by_normalised_score_and_skip_stopwords():
    keywords = class_keywords(
        labels=["set", "set", "play"],
        words=[["Set", "the", "Alarm!"], ["alarm", "now"], ["play", "music", "now"]],
        scores=[np.array([0.6, 5.0, 0.8]) / 5.1, np.array([30.0, 40.0]), np.array([2.0, 2.0, 2.0])],
        top_k=3,
    )
    # each sentence divided by its L2 norm (stopwords included); the second sentence's norm is 50
    n1 = np.linalg.norm([0.6, 5.0, 0.8])
    totals = {"alarm": 0.8 / n1 + 0.6, "now": 0.8, "set": 0.6 / n1}
    assert keywords["set"] == sorted(totals, key=lambda word: -totals[word])
    assert keywords["play"] == ["music", "now", "play"]  # equal scores: alphabetical
    assert "the" in STOPWORDS and all("the" not in words for words in keywords.values())


def test_class_keywords_on_real_data_exclude_stopwords(hwu64):
    _, keywords, _ = hwu64
    assert sorted(keywords) == HWU64_ALARM_AUDIO
    assert all(len(words) == 10 and not set(words) & STOPWORDS for words in keywords.values())
    assert "alarm" in keywords["alarm_set"] and "volume" in keywords["audio_volume_up"]


def test_class_overlap_is_symmetric_jaccard():
    overlap = class_overlap({"a": ["x", "y"], "b": ["y", "z"], "c": ["q"]})
    assert overlap == {("a", "b"): 1 / 3, ("b", "a"): 1 / 3, ("a", "c"): 0.0, ("c", "a"): 0.0, ("b", "c"): 0.0, ("c", "b"): 0.0}


def test_target_classes_come_from_the_most_overlapping_classes():
    keywords = {"a": ["x", "y", "z"], "b": ["x", "y", "w"], "c": ["x", "v", "u"], "d": ["t"], "e": ["s"]}
    overlap = class_overlap(keywords)
    targets = target_classes(overlap, per_class=1, rng=np.random.default_rng(3))
    assert targets == target_classes(overlap, per_class=1, rng=np.random.default_rng(3))
    assert targets["a"][0] in {"b", "c"} and targets["b"][0] in {"a", "c"}
    drawn = {target_classes(overlap, per_class=1, rng=np.random.default_rng(seed))["a"][0] for seed in range(20)}
    assert drawn == {"b", "c"}  # both of the top 2 get drawn
    with pytest.raises(ValueError, match="per_class must be in 1..4"):
        target_classes(overlap, per_class=5, rng=np.random.default_rng(0))


def test_keyword_addition_inserts_distinct_target_keywords_and_keeps_the_sentence():
    text = "wake me up at seven"
    attacked = keyword_addition(text, target_keywords=["volume", "louder", "sound"], rng=np.random.default_rng(0))
    added = list(attacked.split())
    for word in text.split():  # the original words stay, in order
        added.remove(word)
    assert len(added) == 2 and len(set(added)) == 2 and set(added) <= {"volume", "louder", "sound"}
    added = keyword_addition(text, target_keywords=["volume"], rng=np.random.default_rng(0), n_insert=3)
    assert sorted(added.split()) == sorted(text.split() + ["volume"])


def test_keyword_replacement_swaps_source_keywords_and_keeps_punctuation():
    attacked = keyword_replacement(
        "Set an Alarm, please wake me",
        source_keywords=["alarm", "set", "wake"],
        target_keywords=["volume", "set", "louder"],
        rng=np.random.default_rng(0),
    )
    words = attacked.split()
    assert [words[0], words[1], words[3], words[5]] == ["Set", "an", "please", "me"]  # the shared keyword "set" stays
    assert words[2] in {"volume,", "louder,"} and words[4] in {"volume", "louder"}
    assert not {"alarm", "wake"} & set(_words(attacked))


def test_keyword_replacement_falls_back_to_a_content_word():
    attacked = keyword_replacement(
        "what time is it", source_keywords=["alarm"], target_keywords=["volume"], rng=np.random.default_rng(0)
    )
    assert attacked == "what volume is it"


def test_make_adversarial_is_deterministic_order_free_and_keeps_labels(hwu64):
    test, keywords, targets = hwu64
    add, replace = make_adversarial(test, keywords, targets, seed=13)
    again = make_adversarial(test.reverse(), keywords, targets, seed=13)
    assert add.equals(make_adversarial(test, keywords, targets, seed=13)[0])
    assert add.sort("id").equals(again[0].sort("id")) and replace.sort("id").equals(again[1].sort("id"))
    assert not add["text"].equals(make_adversarial(test, keywords, targets, seed=14)[0]["text"])

    for frame, kind in ((add, "add"), (replace, "replace")):
        assert frame.columns == ["id", "text", "label", "source_id", "target_class"] and len(frame) == 2 * len(test)
        joined = frame.join(test, left_on="source_id", right_on="id", suffix="_source")
        assert (joined["label"] == joined["label_source"]).all()
        assert (joined["id"] == joined["source_id"] + f"-{kind}-" + joined["target_class"]).all()
        assert all(target in targets[label] for target, label in zip(joined["target_class"], joined["label"]))

    for row in add.join(test, left_on="source_id", right_on="id", suffix="_source").iter_rows(named=True):
        attacked = row["text"].split()
        assert set(attacked) & set(keywords[row["target_class"]]) and len(attacked) == len(row["text_source"].split()) + 2

    for row in replace.join(test, left_on="source_id", right_on="id", suffix="_source").iter_rows(named=True):
        target, source = keywords[row["target_class"]], keywords[row["label"]]
        attacked, original = _words(row["text"]), _words(row["text_source"])
        assert set(attacked) & set(target) and row["text"] != row["text_source"]
        assert not set(original) & (set(source) - set(target)) & set(attacked)  # swapped source keywords are gone
