import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from pipeline.evaluation.eraser import FRACTIONS, erase, faithfulness, rationale_size

# A bag-of-words logistic "model" with hand-set weights: p(class 1 | text) = sigmoid(sum of word
# weights), p(class 0) = 1 - p(class 1). Unknown words weigh 0; the empty text sums to 0.
WEIGHTS = {"refund": 2.0, "card": 1.0, "lost": -3.0}


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _predict_proba(texts: list[str]) -> np.ndarray:
    p1 = np.array([_sigmoid(sum(WEIGHTS.get(w, 0.0) for w in t.split())) for t in texts])
    return np.stack([1.0 - p1, p1], axis=1)


def test_rationale_size_is_floor_with_one_word_minimum():
    assert [rationale_size(4, fraction=f) for f in FRACTIONS] == [1, 1, 1, 1, 2]
    assert rationale_size(1, fraction=0.5) == 1
    assert rationale_size(9, fraction=0.5) == 4
    assert rationale_size(30, fraction=0.1) == 3  # 0.1 * 30 = 3.0000000000000004 in floats
    assert rationale_size(100, fraction=0.29) == 29  # 0.29 * 100 = 28.999999999999996 in floats
    assert rationale_size(10, fraction=1.0) == 10


def test_erase_keeps_order_and_breaks_ties_by_position():
    words = ["a", "b", "c", "d", "e"]
    # "d" scores highest; "b" and "e" tie for second, so "b" (earlier) wins; order stays a..e
    without, only = erase(words, np.array([0.0, 0.5, 0.1, 0.9, 0.5]), fraction=0.5)
    assert (without, only) == ("a c e", "b d")
    # all scores equal: the first words form the rationale
    assert erase(words, np.zeros(5), fraction=0.5) == ("c d e", "a b")
    # ranking is by signed score: the large negative word is not evidence for the prediction
    assert erase(["x", "y"], np.array([-5.0, 1.0]), fraction=0.5) == ("x", "y")


def test_erase_short_sentences_keep_one_rationale_word():
    for fraction in FRACTIONS:
        without, only = erase(["card", "lost", "today"], np.array([0.1, 0.3, 0.2]), fraction=fraction)
        assert (without, only) == ("card today", "lost")
    # a one-word sentence: the rationale is the whole sentence and nothing is left without it
    assert erase(["refund"], np.array([0.7]), fraction=0.01) == ("", "refund")


def test_erase_rejects_bad_input():
    with pytest.raises(ValueError, match="empty sentence"):
        erase([], np.array([]), fraction=0.1)
    with pytest.raises(ValueError, match="shape"):
        erase(["a", "b"], np.array([1.0]), fraction=0.1)
    with pytest.raises(ValueError, match="non-finite"):
        erase(["a", "b"], np.array([1.0, np.nan]), fraction=0.1)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        erase(["a", "b"], np.array([1.0, 2.0]), fraction=0.0)


def test_faithfulness_matches_hand_computation():
    sentences = [["refund", "my", "card", "please"], ["lost", "card"], ["refund"]]
    scores = [np.array([0.9, 0.1, 0.5, 0.0]), np.array([0.2, 0.7]), np.array([0.4])]
    s = _sigmoid
    # Default k = 1, 5, 10, 20, 50 %.
    # A: 4 words, weight sum 3 -> p1 = s(3) = 0.952574, predicted 1. n_k = 1, 1, 1, 1, 2.
    #   n=1, r = {refund}: x\r = "my card please" (sum 1) -> s(1) = 0.731059; r = "refund" -> s(2) = 0.880797
    #   n=2, r = {refund, card}: x\r = "my please" (sum 0) -> s(0) = 0.5; r = "refund card" -> s(3)
    #   com = 0.952574 - (4 * 0.731059 + 0.5) / 5 = 0.952574 - 0.684847 = 0.267727
    #   suf = 0.952574 - (4 * 0.880797 + 0.952574) / 5 = 0.952574 - 0.895152 = 0.057422
    com_a = s(3) - (4 * s(1) + s(0)) / 5
    suf_a = s(3) - (4 * s(2) + s(3)) / 5
    # B: weight sum -3 + 1 = -2 -> p0 = 1 - s(-2) = s(2) = 0.880797, predicted 0; n_k = 1 for all k.
    #   The attribution points at "card" (evidence for class 1): r = {card}.
    #   x\r = "lost" (sum -3) -> p0 = s(3) = 0.952574; r = "card" (sum 1) -> p0 = s(-1) = 0.268941
    #   com = 0.880797 - 0.952574 = -0.071777 (removing the "rationale" raises confidence)
    #   suf = 0.880797 - 0.268941 = 0.611856
    com_b = s(2) - s(3)
    suf_b = s(2) - s(-1)
    # C: "refund" -> p1 = s(2), predicted 1; r = the sentence, x\r = "" (sum 0) -> 0.5
    #   com = 0.880797 - 0.5 = 0.380797; suf = 0
    com_c = s(2) - 0.5
    suf_c = 0.0
    # mean over sentences, in percent: com = 100 * 0.576747 / 3 = 19.2249, suf = 100 * 0.669278 / 3 = 22.3092
    expected = {
        "comprehensiveness": 100 * (com_a + com_b + com_c) / 3,
        "sufficiency": 100 * (suf_a + suf_b + suf_c) / 3,
    }

    got = faithfulness(_predict_proba, sentences, scores)

    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-9)
    assert got["comprehensiveness"] == pytest.approx(19.2249, abs=1e-4)
    assert got["sufficiency"] == pytest.approx(22.3092, abs=1e-4)


def test_faithfulness_calls_the_model_once_with_distinct_texts():
    calls: list[list[str]] = []

    def recording(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return _predict_proba(texts)

    faithfulness(recording, [["refund", "my", "card", "please"], ["refund"]], [np.arange(4.0), np.ones(1)])

    assert len(calls) == 1
    texts = calls[0]
    assert len(texts) == len(set(texts))
    # full sentences, both erased variants of each rationale size, and "" for the one-word sentence
    assert set(texts) == {
        "refund my card please", "refund", "",
        "refund my card", "please",  # n = 1: top word is "please" (score 3)
        "refund my", "card please",  # n = 2
    }  # fmt: skip


def test_faithfulness_single_fraction_equals_plain_differences():
    # with one k the AOPC is the plain difference: com = s(3) - s(1), suf = s(3) - s(2)
    sentence, scores = ["refund", "my", "card", "please"], np.array([0.9, 0.1, 0.5, 0.0])
    got = faithfulness(_predict_proba, [sentence], [scores], fractions=[0.25])
    assert got["comprehensiveness"] == pytest.approx(100 * (_sigmoid(3) - _sigmoid(1)), abs=1e-9)
    assert got["sufficiency"] == pytest.approx(100 * (_sigmoid(3) - _sigmoid(2)), abs=1e-9)


def test_faithfulness_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one sentence"):
        faithfulness(_predict_proba, [], [])
    with pytest.raises(ValueError, match="2 sentences but 1"):
        faithfulness(_predict_proba, [["a"], ["b"]], [np.ones(1)])
    with pytest.raises(ValueError, match="predict_proba gave shape"):
        faithfulness(lambda texts: np.ones(len(texts)), [["a"]], [np.ones(1)])


@pytest.fixture(scope="module")
def student_proba(make_minilm):
    """MiniLM with a seeded random 3-way head: a real tokenizer and model behind predict_proba."""
    model, tokenizer, _ = make_minilm(3)
    model.eval()

    def predict_proba(texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            batch = tokenizer(texts, padding=True, return_tensors="pt")
            return model(**batch).logits.softmax(dim=-1).numpy()

    return predict_proba


def test_faithfulness_with_a_real_student(student_proba, shared_data: Path):
    texts = pl.read_parquet(shared_data / "banking77" / "test.parquet")["text"].head(3).to_list() + ["refund"]
    sentences = [t.split() for t in texts]
    scores = [np.linspace(1.0, 0.0, len(words)) for words in sentences]

    # the whole sentence as rationale: x \ r = "" (the tokenizer's bare [CLS] [SEP]) and r = x, so
    # sufficiency is exactly 0 and comprehensiveness is p(y | x) - p(y | "")
    whole = faithfulness(student_proba, sentences, scores, fractions=[1.0])
    p_full = student_proba(texts)
    predicted = p_full.argmax(axis=1)
    p_empty = student_proba([""])[0]
    assert whole["sufficiency"] == 0.0
    expected = 100 * np.mean(p_full[np.arange(len(texts)), predicted] - p_empty[predicted])
    assert whole["comprehensiveness"] == pytest.approx(expected, abs=1e-4)  # batch padding moves the last digits

    aopc = faithfulness(student_proba, sentences, scores)
    assert all(-100 <= v <= 100 and math.isfinite(v) for v in aopc.values())
