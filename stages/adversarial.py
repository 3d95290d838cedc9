"""Stage 6a: keyword-addition and keyword-replacement test sets: data/adversarial/<dataset>/<setting>/{add,replace}.parquet.

Class keywords come from the setting's CAP priors. ``adversarial.generator: rules`` edits the
sentences deterministically (``adversarial.seed``); ``llm`` has the scoring LLM rewrite them and keeps
the rule-based text where a rewrite fails the check (pipeline/adversarial_llm.py); its generations
are kept in data/cache/generations, so a rerun or a restart generates only new prompts. Each row
records the generator that made it (``generator``); generation.json beside the sets records the
generator, the LLM, its prompts and how many rows each generator made.
"""

from __future__ import annotations

import json

import polars as pl

from pipeline.adversarial import class_keywords, class_overlap, make_adversarial, target_classes
from pipeline.adversarial_llm import llm_rewrite
from pipeline.artifacts import ADVERSARIAL, DATASET_SCHEMA, DATASETS, FEWSHOT, GENERATION_CACHE, PRIORS, PRIORS_SCHEMA
from pipeline.io import atomic_write, read_parquet, write_parquet
from pipeline.params import AdversarialParams, load_params
from pipeline.perturb import sentence_rng
from pipeline.scoring import Scorer, scorer_from_params
from pipeline.scoring.cache import GenerationCache

DEFAULT_TARGETS_PER_CLASS = 2


def adversarial_sets(
    *, train: pl.DataFrame, cap: pl.DataFrame, test: pl.DataFrame, dataset: str, params: AdversarialParams,
    llm: Scorer | None = None, cache: GenerationCache | None = None,
) -> dict[str, pl.DataFrame]:
    """Keywords per class from CAP scores, the most overlapping target classes, then the two attacks.

    Args:
        llm: the rewriting LLM; required when ``params.generator`` is "llm", unused otherwise.
        cache: its generations across runs; required with ``llm``.

    Returns:
        {"add": frame, "replace": frame} with id, text, label, source_id, target_class, generator,
        llm_output (null under the rules generator).
    """
    if params.generator == "llm" and (llm is None or cache is None):
        raise ValueError("adversarial_sets: generator 'llm' needs the LLM and a generation cache")
    joined = cap.join(train.select("id", "label"), on="id", how="inner")
    keywords = class_keywords(labels=joined["label"].to_list(), words=joined["words"].to_list(),
                              scores=[s.to_numpy() for s in joined["scores"]], top_k=params.keywords_per_class)
    per_class = params.targets_per_class.get(dataset, DEFAULT_TARGETS_PER_CLASS)
    rng = sentence_rng(seed=params.seed, sentence_id=dataset)
    targets = target_classes(class_overlap(keywords), per_class=per_class, rng=rng)
    add, replace = make_adversarial(test, keywords, targets, seed=params.seed)
    sets = {"add": add, "replace": replace}
    if params.generator == "rules":
        return {name: frame.with_columns(pl.lit("rules").alias("generator"), pl.lit(None, pl.String).alias("llm_output"))
                for name, frame in sets.items()}
    templates = {"add": params.llm.add_template, "replace": params.llm.replace_template}
    return {
        name: llm_rewrite(frame, attack=name, test=test, keywords=keywords, llm=llm, cache=cache, template=templates[name],
                          max_new_tokens=params.llm.max_new_tokens, keywords_in_prompt=params.llm.keywords_in_prompt)
        for name, frame in sets.items()
    }


def generation_record(sets: dict[str, pl.DataFrame], *, params: AdversarialParams, llm: Scorer | None) -> dict:
    """What generation.json holds: the generator, the LLM and its prompts (llm only), rows per generator."""
    record: dict = {"generator": params.generator, "seed": params.seed}
    if params.generator == "llm":
        record |= {"llm": llm.identity, **params.llm.model_dump()}
    record["rows"] = {name: dict(sorted(frame["generator"].value_counts().iter_rows())) for name, frame in sets.items()}
    return record


def main(dataset: str, setting: str) -> None:
    """Write data/adversarial/<dataset>/<setting>/{add,replace}.parquet and generation.json."""
    params = load_params()
    llm = cache = None
    if params.adversarial.generator == "llm":
        llm = scorer_from_params(params)
        cache = GenerationCache(GENERATION_CACHE)
    sets = adversarial_sets(
        train=read_parquet(FEWSHOT / dataset / f"{setting}.parquet", schema=DATASET_SCHEMA),
        cap=read_parquet(PRIORS / dataset / setting / "cap.parquet", schema=PRIORS_SCHEMA),
        test=read_parquet(DATASETS / dataset / "test.parquet", schema=DATASET_SCHEMA),
        dataset=dataset,
        params=params.adversarial,
        llm=llm,
        cache=cache,
    )
    folder = ADVERSARIAL / dataset / setting
    for name, frame in sets.items():
        write_parquet(frame, folder / f"{name}.parquet")
    record = generation_record(sets, params=params.adversarial, llm=llm)
    with atomic_write(folder / "generation.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{dataset}/{setting}: rows by generator {json.dumps(record['rows'])}")
    if cache is not None:  # kept out of generation.json, which must not change when only the cache's state does
        print(f"generations: {cache.stats.computed} by the LLM, {cache.stats.hits} from the cache")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
