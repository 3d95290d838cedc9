from collections.abc import Sequence

import numpy as np
import polars as pl
import pytest

from pipeline.evaluation.diagnostics import prior_agreement, prior_decoy_mass, setting_diagnostics, zero_shot_accuracy
from pipeline.llm.base import Query, Scorer
from pipeline.llm.cache import ScoreCache
from pipeline.prompts import PromptTemplate, render_label

LABELS = ["card_arrival", "exchange_rate", "top_up_failed"]
SENTENCES = pl.DataFrame({
    "id": [f"t{i}" for i in range(6)],
    "text": [
        "where is my card", "is my card coming", "what rate do you use", "rate for euros", "top up failed", "my top up broke",
    ],
    "label": ["card_arrival", "card_arrival", "exchange_rate", "exchange_rate", "top_up_failed", "top_up_failed"],
})
TEMPLATE = PromptTemplate(user="Intents:\n{labels}\nMessage: {sentence}", answer_prefix="Intent:")


class HandMadeScorer(Scorer):
    """A scorer over SmolLM2's tokenizer whose log p is 0 for ``preferred(sentence)`` and -5 otherwise."""

    def __init__(self, tokenizer, preferred):
        self.identity, self.tokenizer, self.max_length, self.preferred = f"hand-made:{id(preferred)}", tokenizer, 4096, preferred

    def score(self, *, prefix: str, queries: Sequence[Query], progress: bool = True) -> np.ndarray:
        self.encode(prefix=prefix, queries=queries)
        sentence_of = {text: text for text in SENTENCES["text"]}
        out = []
        for suffix, target in queries:
            sentence = next(s for s in sentence_of if suffix.startswith(s))
            out.append(0.0 if target == " " + render_label(self.preferred(sentence)) else -5.0)
        return np.array(out)

    def generate(self, *, prompts, max_new_tokens, progress=True):
        raise NotImplementedError


@pytest.mark.parametrize(("preferred", "expected"), [
    (lambda s: dict(zip(SENTENCES["text"], SENTENCES["label"]))[s], 100.0),  # always the true label
    (lambda s: LABELS[0], 100.0 / 3),  # a constant answer: chance on a balanced test set
])
def test_zero_shot_accuracy_of_hand_made_scorers(smollm, tmp_path, preferred, expected):
    result = zero_shot_accuracy(sentences=SENTENCES, labels=LABELS, template=TEMPLATE,
                                scorer=HandMadeScorer(smollm.tokenizer, preferred), cache=ScoreCache(tmp_path))
    assert result == {"zero_shot_accuracy": pytest.approx(expected), "chance": pytest.approx(100.0 / 3), "sentences": 6}


def test_prior_agreement_is_the_mean_per_sentence_spearman():
    def frame(scores):
        return pl.DataFrame({"id": ["a", "b", "c"], "words": [["w"] * len(s) for s in scores], "scores": scores})

    a = frame([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0], [5.0]])
    same = frame([[10.0, 20.0, 30.0], [30.0, 10.0, 20.0], [1.0]])
    reversed_ = frame([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [2.0]])
    flat = frame([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0]])
    agreement = prior_agreement({"a": a, "same": same, "reversed": reversed_, "flat": flat})
    assert agreement["a~same"] == pytest.approx(1.0) and agreement["a~reversed"] == pytest.approx(-1.0)
    assert np.isnan(agreement["a~flat"])  # constant scores: rho undefined, no sentence qualifies
    assert list(agreement)[:3] == ["a~same", "a~reversed", "a~flat"]


def test_setting_diagnostics_are_the_teacher_accuracy_and_the_prior_agreement(smollm, tmp_path):
    scorer = HandMadeScorer(smollm.tokenizer, lambda s: LABELS[0])
    priors = {name: pl.DataFrame({"id": ["a"], "words": [["x", "y", "z"]], "scores": [scores]})
              for name, scores in (("cap", [1.0, 2.0, 3.0]), ("lime", [3.0, 2.0, 1.0]))}
    result = setting_diagnostics(test=SENTENCES, labels=LABELS, priors=priors, template=TEMPLATE, scorer=scorer,
                                 cache=ScoreCache(tmp_path))
    assert result == zero_shot_accuracy(sentences=SENTENCES, labels=LABELS, template=TEMPLATE, scorer=scorer,
                                        cache=ScoreCache(tmp_path)) | {"spearman": {"cap~lime": pytest.approx(-1.0)}}


def test_prior_decoy_mass_is_each_priors_share_on_the_decoy_beside_uniform():
    words = [["my", "blick", "card"], ["dax", "rate", "now", "please"], ["no", "decoy"]]

    def frame(scores):
        return pl.DataFrame({"id": ["a", "b", "c"], "words": words, "scores": scores})

    masses = prior_decoy_mass({
        "follows": frame([[0.0, 3.0, 1.0], [-2.0, 1.0, 1.0, 0.0], [1.0, 1.0]]),  # signed: |.| counts
        "ignores": frame([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0], [1.0, 1.0]]),
    }, decoys=["blick", "dax"])
    # the third sentence carries no decoy: left out of every mean
    assert masses == {"follows": pytest.approx((3 / 4 + 2 / 4) / 2), "ignores": 0.0,
                      "uniform": pytest.approx((1 / 3 + 1 / 4) / 2)}


def test_setting_diagnostics_of_a_decoy_benchmark_carry_the_priors_decoy_mass(smollm, tmp_path):
    scorer = HandMadeScorer(smollm.tokenizer, lambda s: LABELS[0])
    priors = {"cap": pl.DataFrame({"id": ["a"], "words": [["x", "vemp", "z"]], "scores": [[1.0, 2.0, 1.0]]})}
    result = setting_diagnostics(test=SENTENCES, labels=LABELS, priors=priors, template=TEMPLATE, scorer=scorer,
                                 cache=ScoreCache(tmp_path), decoys=["vemp"])
    assert result["decoy_mass"] == {"cap": pytest.approx(0.5), "uniform": pytest.approx(1 / 3)}
