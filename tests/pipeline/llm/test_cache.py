import logging

import numpy as np
import polars as pl
import pytest

from pipeline.llm.base import Scorer, ScoringError
from pipeline.llm.cache import GenerationCache, ScoreCache
from pipeline.prompts import LIME_TEMPLATE, build_query, chat_prompt, split_prompt


class Counting(Scorer):
    """The real scorer, counting the queries it scores and the prompts it continues; optionally crashing
    once ``crash_after`` scored queries are passed."""

    def __init__(self, inner: Scorer, crash_after: int | None = None):
        self.inner, self.crash_after, self.calls = inner, crash_after, 0
        self.identity, self.tokenizer, self.max_length = inner.identity, inner.tokenizer, inner.max_length

    def score(self, *, prefix, queries, progress=True):
        if self.crash_after is not None and self.calls + len(queries) > self.crash_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += len(queries)
        return self.inner.score(prefix=prefix, queries=queries, progress=progress)

    def generate(self, *, prompts, max_new_tokens, progress=True):
        self.calls += len(prompts)
        return self.inner.generate(prompts=prompts, max_new_tokens=max_new_tokens, progress=progress)


@pytest.fixture(scope="module")
def prompt(smollm, banking):
    labels, frame = banking
    prefix, suffix_template = split_prompt(LIME_TEMPLATE, tokenizer=smollm.tokenizer, labels=labels)
    rows = frame.select("text", "label").iter_rows()
    queries = [build_query(suffix_template, sentence=text, label=label) for text, label in rows]
    return prefix, queries


@pytest.fixture(scope="module")
def reference(smollm, prompt, tmp_path_factory):
    """An uninterrupted run in its own cache."""
    prefix, queries = prompt
    cache = ScoreCache(tmp_path_factory.mktemp("ref"))
    return cache.score_missing(scorer=smollm, prefix=prefix, queries=queries, progress=False)


def test_resume_after_a_crash_scores_only_the_missing_queries(smollm, prompt, reference, tmp_path):
    prefix, queries = prompt
    crashing = Counting(smollm, crash_after=6)
    with pytest.raises(KeyboardInterrupt):
        ScoreCache(tmp_path).score_missing(scorer=crashing, prefix=prefix, queries=queries, shard_size=3, progress=False)
    assert crashing.calls == 6 and len(list(tmp_path.glob("*.parquet"))) == 2  # two chunks landed before the kill

    restarted, cache = Counting(smollm), ScoreCache(tmp_path)
    scores = cache.score_missing(scorer=restarted, prefix=prefix, queries=queries, shard_size=3, progress=False)
    assert restarted.calls == len(queries) - 6
    assert (cache.stats.hits, cache.stats.computed) == (6, len(queries) - 6)
    np.testing.assert_allclose(scores, reference, rtol=0, atol=1e-4)  # float32: batch make-up moves ~1e-5

    again, cache = Counting(smollm), ScoreCache(tmp_path)
    np.testing.assert_array_equal(cache.score_missing(scorer=again, prefix=prefix, queries=queries, progress=False), scores)
    assert again.calls == 0 and cache.stats.hits == len(queries)


def test_duplicates_are_scored_once_and_lookup_sees_them(smollm, prompt, tmp_path):
    prefix, queries = prompt
    counting, cache = Counting(smollm), ScoreCache(tmp_path)
    scores = cache.score_missing(scorer=counting, prefix=prefix, queries=queries[:2] * 3, progress=False)
    assert counting.calls == 2 and (cache.stats.hits, cache.stats.computed) == (4, 2)
    np.testing.assert_array_equal(scores[:2], scores[2:4])
    keys = [ScoreCache.key(identity=smollm.identity, prefix=prefix, suffix=s, target=t) for s, t in queries[:3]]
    assert cache.lookup(keys) == {keys[0]: scores[0], keys[1]: scores[1]}


def test_corrupted_shards_are_reported_moved_aside_and_rescored(smollm, prompt, reference, tmp_path, caplog):
    prefix, queries = prompt
    ScoreCache(tmp_path).score_missing(scorer=smollm, prefix=prefix, queries=queries, shard_size=4, progress=False)
    shards = sorted(tmp_path.glob("*.parquet"))
    assert len(shards) == 3
    shards[0].write_bytes(shards[0].read_bytes()[:40])  # truncated, as by a dying disk
    pl.DataFrame({"key": ["x"], "score": [1.0]}).write_parquet(shards[1])  # a foreign schema

    counting, cache = Counting(smollm), ScoreCache(tmp_path)
    with caplog.at_level(logging.WARNING, logger="pipeline.llm.cache"):
        scores = cache.score_missing(scorer=counting, prefix=prefix, queries=queries, progress=False)
    assert counting.calls == 8 and cache.stats.corrupt_shards == 2
    for shard in shards[:2]:
        assert str(shard) in caplog.text and (tmp_path / "corrupt" / shard.name).is_file() and not shard.exists()
    np.testing.assert_allclose(scores, reference, rtol=0, atol=1e-4)  # float32: batch make-up moves ~1e-5


def test_a_too_long_text_fails_before_anything_is_scored(smollm, prompt, tmp_path):
    prefix, queries = prompt
    counting = Counting(smollm)
    long_query = (" ".join(["money"] * 10_000), " card arrival")
    with pytest.raises(ScoringError, match=r"query 2: \d+ tokens .* exceed the model's context"):
        ScoreCache(tmp_path).score_missing(
            scorer=counting, prefix=prefix, queries=[*queries[:2], long_query], progress=False
        )
    assert counting.calls == 0 and not list(tmp_path.glob("*.parquet"))


def test_key_covers_scorer_prompt_split_and_target():
    base = {"identity": "m", "prefix": "a b", "suffix": " c", "target": " t"}
    keys = {
        ScoreCache.key(**base),
        ScoreCache.key(**{**base, "identity": "m2"}),
        ScoreCache.key(**{**base, "prefix": "a", "suffix": " b c"}),  # same text, split elsewhere
        ScoreCache.key(**{**base, "target": " u"}),
    }
    assert len(keys) == 4 and ScoreCache.key(**base) == ScoreCache.key(**base)


def test_generations_are_cached_deduplicated_and_resumed(smollm, banking, tmp_path):
    _, frame = banking
    prompts = [chat_prompt(smollm.tokenizer, system=None, user=f"Repeat this: {text}") for text in frame["text"][:3]]
    counting, cache = Counting(smollm), GenerationCache(tmp_path)
    texts = cache.generate_missing(llm=counting, prompts=prompts * 2, max_new_tokens=8, shard_size=2, progress=False)
    assert texts == smollm.generate(prompts=prompts, max_new_tokens=8, progress=False) * 2
    assert counting.calls == 3 and (cache.stats.computed, cache.stats.hits) == (3, 3)
    assert len(list(tmp_path.glob("*.parquet"))) == 2  # chunks of 2: each landed as its own shard

    again, cache = Counting(smollm), GenerationCache(tmp_path)
    assert cache.generate_missing(llm=again, prompts=prompts, max_new_tokens=8, progress=False) == texts[:3]
    assert again.calls == 0
    cache.generate_missing(llm=again, prompts=prompts[:1], max_new_tokens=9, progress=False)  # a new limit is a new key
    assert again.calls == 1
