import numpy as np
import pytest

from pipeline.evaluation.adversarial import class_overlap, keyword_form, make_adversarial, target_classes
from pipeline.evaluation.adversarial_llm import accept_rewrite, clean_generation, llm_rewrite
from pipeline.llm.cache import GenerationCache
from pipeline.prompts import ADD_TEMPLATE, REPLACE_TEMPLATE


@pytest.fixture(scope="module")
def attacked(hwu64_keywords):
    """Rule-based attacks on 6 HWU64 test sentences (the first of each class), one target class each."""
    test, keywords = hwu64_keywords
    test = test.group_by("label", maintain_order=True).first().select("id", "text", "label")
    targets = target_classes(class_overlap(keywords), per_class=1, rng=np.random.default_rng(0))
    add, replace = make_adversarial(test, keywords, targets, seed=0)
    return test, keywords, {"add": add, "replace": replace}


@pytest.mark.parametrize(
    ("answer", "sentence"),
    [
        (' Rewritten sentence: "wake me up at seven"\nThis adds the word seven.', "wake me up at seven"),
        ("\n\n  turn the volume down  \n", "turn the volume down"),
        ("Message: 'mute the speaker'", "mute the speaker"),
        ("", ""),
    ],
)
def test_clean_generation_keeps_the_first_line_without_labels_or_quotes(answer, sentence):
    assert clean_generation(answer) == sentence


@pytest.mark.parametrize(
    ("rewrite", "replaced", "accepted"),
    [
        ("wake me up at seven with volume please", [], True),  # keyword added, content kept
        ("Volume: wake me up at seven!", [], True),  # punctuation does not hide a word
        ("wake me up at seven", [], False),  # unchanged
        ("set the volume", [], False),  # keyword, but the sentence is gone
        ("wake me up at seven please", [], False),  # no target keyword
        ("wake me up at seven " + "volume " * 12, [], False),  # rambling
        ("volume me up at seven", ["wake"], True),  # replacement: "wake" gone, the rest kept
        ("wake me up at seven volume", ["wake"], False),  # replacement that kept every replaced word
    ],
)
def test_accept_rewrite_demands_a_target_keyword_and_the_rest_of_the_sentence(rewrite, replaced, accepted):
    original = "wake me up at seven"
    assert accept_rewrite(original, rewrite, target_keywords=["volume", "louder"], replaced=replaced) is accepted


def test_llm_rewrite_on_smollm_keeps_rows_and_falls_back_to_rules(smollm, attacked, tmp_path):
    test, keywords, sets = attacked
    for attack, template in (("add", ADD_TEMPLATE), ("replace", REPLACE_TEMPLATE)):
        rules = sets[attack]
        args = {"attack": attack, "test": test, "keywords": keywords, "llm": smollm, "template": template,
                "max_new_tokens": 24, "keywords_in_prompt": 3, "progress": False}
        cache = GenerationCache(tmp_path / attack)
        rewritten = llm_rewrite(rules, cache=cache, **args)
        assert rewritten.columns == [*rules.columns, "generator", "llm_output"]
        assert rewritten.drop("text", "generator", "llm_output").equals(rules.drop("text"))  # same rows, ids, labels, targets
        assert rewritten["llm_output"].is_not_null().all() and set(rewritten["generator"]) <= {"llm", "rules"}
        originals = dict(test.select("id", "text").iter_rows())
        for row, rule_text in zip(rewritten.iter_rows(named=True), rules["text"]):
            if row["generator"] == "rules":
                assert row["text"] == rule_text
            else:
                assert row["text"] == clean_generation(row["llm_output"]) != originals[row["source_id"]]
                assert {keyword_form(w) for w in row["text"].split()} & set(keywords[row["target_class"]])
        fresh = llm_rewrite(rules, cache=GenerationCache(tmp_path / f"{attack}-fresh"), **args)
        assert fresh.equals(rewritten)  # greedy decoding: the same text on every run
        rerun = GenerationCache(tmp_path / attack)
        assert llm_rewrite(rules, cache=rerun, **args).equals(rewritten) and rerun.stats.computed == 0  # all cached
        if attack == "add":
            assert (rewritten["generator"] == "llm").any(), rewritten.select("llm_output").to_series().to_list()
