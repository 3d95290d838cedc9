"""Stage 6a: keyword-addition and keyword-replacement test sets: data/adversarial/<dataset>/<setting>/{add,replace}.parquet.

Class keywords come from the setting's CAP priors; the rule-based generator is deterministic for
``adversarial.seed``. Each row records the generator that made it (``generator`` column).
"""

from __future__ import annotations

import polars as pl

from pipeline.adversarial import class_keywords, class_overlap, make_adversarial, target_classes
from pipeline.artifacts import ADVERSARIAL, DATASET_SCHEMA, DATASETS, FEWSHOT, PRIORS, PRIORS_SCHEMA
from pipeline.io import read_parquet, write_parquet
from pipeline.params import AdversarialParams, load_params
from pipeline.perturb import sentence_rng

DEFAULT_TARGETS_PER_CLASS = 2


def adversarial_sets(
    *, train: pl.DataFrame, cap: pl.DataFrame, test: pl.DataFrame, dataset: str, params: AdversarialParams
) -> dict[str, pl.DataFrame]:
    """Keywords per class from CAP scores, the most overlapping target classes, then the two attacks.

    Returns:
        {"add": frame, "replace": frame} with id, text, label, source_id, target_class, generator.
    """
    joined = cap.join(train.select("id", "label"), on="id", how="inner")
    keywords = class_keywords(labels=joined["label"].to_list(), words=joined["words"].to_list(),
                              scores=[s.to_numpy() for s in joined["scores"]], top_k=params.keywords_per_class)
    per_class = params.targets_per_class.get(dataset, DEFAULT_TARGETS_PER_CLASS)
    targets = target_classes(class_overlap(keywords), per_class=per_class, rng=sentence_rng(seed=params.seed, sentence_id=dataset))
    add, replace = make_adversarial(test, keywords, targets, seed=params.seed)
    return {name: frame.with_columns(pl.lit(params.generator).alias("generator")) for name, frame in (("add", add), ("replace", replace))}


def main(dataset: str, setting: str) -> None:
    """Write data/adversarial/<dataset>/<setting>/add.parquet and replace.parquet."""
    params = load_params()
    sets = adversarial_sets(
        train=read_parquet(FEWSHOT / dataset / f"{setting}.parquet", schema=DATASET_SCHEMA),
        cap=read_parquet(PRIORS / dataset / setting / "cap.parquet", schema=PRIORS_SCHEMA),
        test=read_parquet(DATASETS / dataset / "test.parquet", schema=DATASET_SCHEMA),
        dataset=dataset,
        params=params.adversarial,
    )
    for name, frame in sets.items():
        write_parquet(frame, ADVERSARIAL / dataset / setting / f"{name}.parquet")
        print(f"{dataset}/{setting}/{name}: {len(frame)} rows")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
