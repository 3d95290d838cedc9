"""Stage 2: score every CAP and LIME perturbation with the teacher LLM: data/scores/<dataset>/<setting>.parquet.

Each row is one masked sentence: id, source (cap | lime), mask (kept words), logprob =
log p(true label | prompt(masked sentence)). Scores go through the content-addressed cache, so a
rerun, a restart after a crash, or a changed CAP n or template scores only the new queries; the
counters land in <setting>.stats.json (a DVC metric).
"""

from __future__ import annotations

import json
import time

import numpy as np
import polars as pl

from pipeline.artifacts import DATASET_SCHEMA, FEWSHOT, SCORE_CACHE, SCORES, label_names
from pipeline.io import atomic_write, read_parquet, write_parquet
from pipeline.params import PriorsParams, load_params
from pipeline.perturb import cap_masks, lime_masks, masked_sentence, sentence_rng
from pipeline.prompts import PromptTemplate, build_query, split_prompt
from pipeline.scoring import Scorer, scorer_from_params
from pipeline.scoring.cache import ScoreCache

MASK_SOURCES = {"cap": cap_masks, "lime": lime_masks}


def perturbations(sentences: pl.DataFrame, *, params: PriorsParams) -> pl.DataFrame:
    """The seeded masks of every sentence: CAP's (n random + d single-word) and LIME's (n samples).

    Each (sentence, source) draws from its own generator seeded by (priors.seed, id, source), so
    the masks do not depend on row order or on the other source's settings.

    Returns:
        id, source, mask (list of bool, one per whitespace word), label.
    """
    rows = []
    n_by_source = {"cap": params.cap.n, "lime": params.lime.n}
    for sentence_id, text, label in sentences.select("id", "text", "label").iter_rows():
        n_words = len(text.split())
        for source, draw in MASK_SOURCES.items():
            rng = sentence_rng(seed=params.seed, sentence_id=f"{sentence_id}/{source}")
            for mask in draw(n_words, n=n_by_source[source], rng=rng):
                rows.append((sentence_id, source, mask.tolist(), label))
    schema = {"id": pl.String, "source": pl.String, "mask": pl.List(pl.Boolean), "label": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")


def score_perturbations(
    masks: pl.DataFrame, sentences: pl.DataFrame, *, labels: list[str], templates: dict[str, PromptTemplate],
    scorer: Scorer, cache: ScoreCache,
) -> pl.DataFrame:
    """Score each masked sentence as log p(true label) under its source's prompt, through the cache.

    Returns:
        ``masks`` with a float64 ``logprob`` column (SCORES_SCHEMA).
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


def main(dataset: str, setting: str) -> None:
    """Write data/scores/<dataset>/<setting>.parquet and its .stats.json."""
    params = load_params()
    sentences = read_parquet(FEWSHOT / dataset / f"{setting}.parquet", schema=DATASET_SCHEMA)
    labels = label_names(dataset)
    scorer = scorer_from_params(params)
    cache = ScoreCache(SCORE_CACHE)
    start = time.perf_counter()
    scores = score_perturbations(
        perturbations(sentences, params=params.priors), sentences, labels=labels,
        templates={"cap": params.scoring.cap_template, "lime": params.scoring.lime_template},
        scorer=scorer, cache=cache,
    )
    seconds = time.perf_counter() - start
    write_parquet(scores, SCORES / dataset / f"{setting}.parquet")
    stats = {"queries": len(scores), "cache_hits": cache.stats.hits, "llm_queries": cache.stats.computed,
             "seconds": round(seconds, 2),
             "llm_queries_per_second": round(cache.stats.computed / seconds, 2) if cache.stats.computed else None}
    with atomic_write(SCORES / dataset / f"{setting}.stats.json") as tmp:
        tmp.write_text(json.dumps(stats, indent=2) + "\n")
    print(f"{dataset}/{setting}: {json.dumps(stats)}")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
