"""Stage 2: score every CAP and LIME perturbation with the teacher LLM: data/scores/<dataset>/<setting>.parquet.

Each row is one masked sentence: id, source (cap | lime), mask (kept words), logprob =
log p(true label | prompt(masked sentence)). Scores go through the content-addressed cache, so a
rerun, a restart after a crash, or a changed CAP n or template scores only the new queries; the
counters land in <setting>.stats.json (a DVC metric).
"""

from __future__ import annotations

import json
import time

from pipeline.artifacts import DATASET_SCHEMA, SCORE_CACHE, fewshot_file, label_names, scores_file, scores_stats_file
from pipeline.io import read_parquet, write_json, write_parquet
from pipeline.llm.cache import ScoreCache
from pipeline.llm.factory import scorer_from_params
from pipeline.llm.scores import score_sentences, score_stats
from pipeline.params import load_params


def main(dataset: str, setting: str) -> None:
    """Write data/scores/<dataset>/<setting>.parquet and its .stats.json."""
    params = load_params()
    sentences = read_parquet(fewshot_file(dataset, setting), schema=DATASET_SCHEMA)
    labels = label_names(dataset)
    scorer = scorer_from_params(params)
    cache = ScoreCache(SCORE_CACHE)
    start = time.perf_counter()
    scores = score_sentences(sentences, labels=labels, params=params, scorer=scorer, cache=cache)
    stats = score_stats(queries=len(scores), cache=cache, seconds=time.perf_counter() - start)
    write_parquet(scores, scores_file(dataset, setting))
    write_json(stats, scores_stats_file(dataset, setting))
    print(f"{dataset}/{setting}: {json.dumps(stats)}")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
