"""The teacher LLM's scores of the CAP and LIME perturbations of a set of sentences.

Each score is log p(true label | prompt(masked sentence)) under its source's prompt template,
computed through the content-addressed score cache, so a rerun, a restart after a crash, or a
changed CAP n or template scores only the new queries.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.data.perturb import masked_sentence, perturbations
from pipeline.llm.base import Scorer
from pipeline.llm.cache import ScoreCache
from pipeline.params import Params
from pipeline.prompts import PromptTemplate, build_query, split_prompt


def score_perturbations(
    masks: pl.DataFrame, sentences: pl.DataFrame, *, labels: list[str], templates: dict[str, PromptTemplate],
    scorer: Scorer, cache: ScoreCache,
) -> pl.DataFrame:
    """Score each masked sentence as log p(true label) under its source's prompt, through the cache.

    Args:
        masks: id, source, mask, label (``pipeline.data.perturb.perturbations``); every source has a template.
        sentences: id and text of the sentences the masks cover.
        labels: the label space in prompt order.
        templates: source -> prompt template.
        scorer: the teacher LLM.
        cache: its scores across runs.

    Returns:
        ``masks`` with a float64 ``logprob`` column instead of ``label`` (SCORES_SCHEMA).
    """
    words = dict(zip(sentences["id"], (t.split() for t in sentences["text"])))
    logprob = np.empty(len(masks))
    for source, template in templates.items():
        prefix, suffix_template = split_prompt(template, tokenizer=scorer.tokenizer, labels=labels)
        rows = masks.with_row_index("_row").filter(pl.col("source") == source)
        queries = [
            build_query(suffix_template, sentence=masked_sentence(words[i], np.array(m, dtype=bool)), label=label)
            for i, m, label in rows.select("id", "mask", "label").iter_rows()
        ]
        logprob[rows["_row"].to_numpy()] = cache.score_missing(scorer=scorer, prefix=prefix, queries=queries)
    return masks.drop("label").with_columns(pl.Series("logprob", logprob, dtype=pl.Float64))


def score_sentences(sentences: pl.DataFrame, *, labels: list[str], params: Params, scorer: Scorer,
                    cache: ScoreCache) -> pl.DataFrame:
    """Every CAP and LIME perturbation of ``sentences``, scored with the configured templates.

    Args:
        sentences: id, text, label.
        labels: the label space in prompt order.
        params: ``priors`` (the perturbations) and ``scoring`` (the templates).
        scorer: the teacher LLM.
        cache: its scores across runs.

    Returns:
        id, source, mask, logprob (SCORES_SCHEMA), one row per masked sentence.
    """
    return score_perturbations(perturbations(sentences, params=params.priors), sentences, labels=labels,
                               templates={"cap": params.scoring.cap_template, "lime": params.scoring.lime_template},
                               scorer=scorer, cache=cache)


def score_stats(*, queries: int, cache: ScoreCache, seconds: float) -> dict:
    """The score stage's counters: queries, cache hits, LLM queries, seconds and LLM queries per second (None without any)."""
    computed = cache.stats.computed
    return {"queries": queries, "cache_hits": cache.stats.hits, "llm_queries": computed, "seconds": round(seconds, 2),
            "llm_queries_per_second": round(computed / seconds, 2) if computed else None}
