"""Stage 3c: the oracle prior's teacher, a cross-entropy student on the full training pool.

Writes models/<dataset>/oracle-teacher-seed<S>/.

The pool is every train row outside validation (what ``fewshot.full`` writes as ``full``), capped at
``priors.oracle.max_train`` sentences (a draw seeded like the teacher) so a large dataset stays within
minutes; the student's settings are ``student.*`` but for ``priors.oracle.{epochs, batch_size}``, its
seed ``priors.ig.teacher_seed``. On a decoy benchmark it trains on the decoy-free text (the decoys stripped):
the oracle is a teacher that never saw the shortcut.
"""

from __future__ import annotations

import sys

from pipeline.artifacts import DATASET_SCHEMA, dataset_split_file, label_names, oracle_teacher_dir
from pipeline.data.decoy import decoy_words, strip_frame
from pipeline.data.fewshot import capped_pool, training_pool
from pipeline.errors import ConfigError, DataError
from pipeline.io import read_parquet
from pipeline.params import load_params
from pipeline.training.students import fit_student, save_student


def main(dataset: str) -> None:
    """Write models/<dataset>/oracle-teacher-seed<priors.ig.teacher_seed>/."""
    params = load_params()
    train, validation = (
        read_parquet(dataset_split_file(dataset, split), schema=DATASET_SCHEMA) for split in ("train", "validation")
    )
    oracle, seed = params.priors.oracle, params.priors.ig.teacher_seed
    pool = strip_frame(training_pool(train, validation), decoy_words(params, dataset))
    labels = label_names(dataset)
    largest_draw = max(params.fewshot.shots) * len(labels)
    if len(pool) <= largest_draw:
        raise DataError(
            f"student.priors: the oracle control needs a full training split larger than the k-shot draws, but "
            f"{dataset_split_file(dataset, 'train')} has {len(pool)} training rows outside validation "
            f"(k-shot draws take up to {largest_draw}); drop 'oracle' from student.priors for this dataset"
        )
    if oracle.max_train is not None and oracle.max_train <= largest_draw:
        raise ConfigError(f"priors.oracle.max_train: {oracle.max_train} is no larger than the k-shot draws of {dataset} "
                          f"({largest_draw}); the oracle's teacher must see more than the students")
    sentences = capped_pool(pool, max_rows=oracle.max_train, seed=seed)
    print(f"{dataset}: the oracle's teacher trains on {len(sentences)} of {len(pool)} pool sentences "
          f"(priors.oracle.max_train: {oracle.max_train})", file=sys.stderr, flush=True)
    model, tokenizer, log, modules = fit_student(params, sentences=sentences, labels=labels, objective="baseline", seed=seed,
                                                 epochs=oracle.epochs, batch_size=oracle.batch_size)
    save_student(oracle_teacher_dir(dataset, seed), model=model, tokenizer=tokenizer, log=log, modules=modules)


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
