from collections.abc import Sequence

import numpy as np
import polars as pl
import pytest

from pipeline.data.perturb import masked_sentence, perturbations
from pipeline.llm.base import Query, Scorer
from pipeline.llm.cache import ScoreCache
from pipeline.llm.scores import score_sentences, score_stats
from pipeline.models import load_tokenizer
from pipeline.params import load_params
from pipeline.prompts import build_query, split_prompt
from tests.conftest import REPO

LABELS = ["card_arrival", "exchange_rate"]
SENTENCES = pl.DataFrame({"id": ["a", "b"], "text": ["where is my new card", "what rate do you use"],
                          "label": ["card_arrival", "exchange_rate"]})


class LengthScorer(Scorer):
    """log p = -len(prefix + suffix + target) / 1000: a different, known score for every distinct query."""

    def __init__(self):
        self.identity, self.tokenizer, self.max_length = "length", load_tokenizer("smollm2-135m-instruct"), 4096

    def score(self, *, prefix: str, queries: Sequence[Query], progress: bool = True) -> np.ndarray:
        return np.array([-len(prefix + suffix + target) / 1000 for suffix, target in queries])

    def generate(self, *, prompts, max_new_tokens, progress=True):
        raise NotImplementedError


@pytest.fixture(scope="module")
def scorer() -> LengthScorer:
    return LengthScorer()


def test_score_sentences_scores_each_perturbation_under_its_source_template_through_the_cache(scorer, tmp_path):
    params = load_params(REPO / "params.yaml")
    params = params.model_copy(update={"priors": params.priors.model_copy(update={"seed": 3})})
    cache = ScoreCache(tmp_path)
    scores = score_sentences(SENTENCES, labels=LABELS, params=params, scorer=scorer, cache=cache)
    masks = perturbations(SENTENCES, params=params.priors)
    assert scores.columns == ["id", "source", "mask", "logprob"] and scores.drop("logprob").equals(masks.drop("label"))
    templates = {"cap": params.scoring.cap_template, "lime": params.scoring.lime_template}
    words = dict(zip(SENTENCES["id"], (t.split() for t in SENTENCES["text"])))
    for (i, source, mask, label), logprob in zip(masks.iter_rows(), scores["logprob"]):
        prefix, suffix_template = split_prompt(templates[source], tokenizer=scorer.tokenizer, labels=LABELS)
        query = build_query(suffix_template, sentence=masked_sentence(words[i], np.array(mask)), label=label)
        assert logprob == scorer.score(prefix=prefix, queries=[query])[0]
    computed = cache.stats.computed
    assert score_sentences(SENTENCES, labels=LABELS, params=params, scorer=scorer, cache=cache).equals(scores)
    assert cache.stats.computed == computed  # the rerun comes from the cache


def test_score_stats_counts_the_cache_and_the_rate(tmp_path):
    cache = ScoreCache(tmp_path)
    cache.stats.hits, cache.stats.computed = 30, 10
    assert score_stats(queries=40, cache=cache, seconds=4.0) == {
        "queries": 40, "cache_hits": 30, "llm_queries": 10, "seconds": 4.0, "llm_queries_per_second": 2.5,
    }
    cache.stats.computed = 0
    assert score_stats(queries=40, cache=cache, seconds=0.123)["llm_queries_per_second"] is None
