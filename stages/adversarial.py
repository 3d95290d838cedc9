"""Stage 6a: keyword-addition and keyword-replacement test sets: data/adversarial/<dataset>/<setting>/{add,replace}.parquet.

Class keywords come from the setting's CAP priors. ``adversarial.generator: rules`` edits the
sentences deterministically (``adversarial.seed``); ``llm`` has the scoring LLM rewrite them and keeps
the rule-based text where a rewrite fails the check (pipeline/evaluation/adversarial_llm.py); its generations
are kept in data/cache/generations, so a rerun or a restart generates only new prompts. Each row
records the generator that made it (``generator``); generation.json beside the sets records the
generator, the LLM, its prompts and how many rows each generator made (``pipeline.evaluation.attacks``).
"""

from __future__ import annotations

import json

from pipeline.artifacts import (
    DATASET_SCHEMA,
    GENERATION_CACHE,
    PRIORS_SCHEMA,
    adversarial_file,
    dataset_split_file,
    fewshot_file,
    generation_file,
    prior_file,
)
from pipeline.evaluation.attacks import adversarial_sets, generation_record
from pipeline.io import read_parquet, write_json, write_parquet
from pipeline.llm.cache import GenerationCache
from pipeline.llm.factory import scorer_from_params
from pipeline.params import load_params


def main(dataset: str, setting: str) -> None:
    """Write data/adversarial/<dataset>/<setting>/{add,replace}.parquet and generation.json."""
    params = load_params()
    llm = cache = None
    if params.adversarial.generator == "llm":
        llm = scorer_from_params(params)
        cache = GenerationCache(GENERATION_CACHE)
    sets = adversarial_sets(
        train=read_parquet(fewshot_file(dataset, setting), schema=DATASET_SCHEMA),
        cap=read_parquet(prior_file(dataset, setting, "cap"), schema=PRIORS_SCHEMA),
        test=read_parquet(dataset_split_file(dataset, "test"), schema=DATASET_SCHEMA),
        dataset=dataset,
        params=params.adversarial,
        llm=llm,
        cache=cache,
    )
    for name, frame in sets.items():
        write_parquet(frame, adversarial_file(dataset, setting, name))
    record = generation_record(sets, params=params.adversarial, llm=llm)
    write_json(record, generation_file(dataset, setting))
    print(f"{dataset}/{setting}: rows by generator {json.dumps(record['rows'])}")
    if cache is not None:  # kept out of generation.json, which must not change when only the cache's state does
        print(f"generations: {cache.stats.computed} by the LLM, {cache.stats.hits} from the cache")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
