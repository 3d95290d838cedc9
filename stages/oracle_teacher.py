"""Stage 3c: the oracle prior's teacher, a cross-entropy student on the full training pool.

Writes models/<dataset>/oracle-teacher-seed<S>/.

The pool is every train row outside validation (what ``fewshot.full`` writes as ``full``); the
student's settings are ``student.*`` but for ``priors.oracle.{epochs, batch_size}``, its seed
``priors.ig.teacher_seed``. On a decoy benchmark it trains on the decoy-free text (the decoys stripped):
the oracle is a teacher that never saw the shortcut.
"""

from __future__ import annotations

from pipeline.artifacts import DATASET_SCHEMA, dataset_split_file, label_names, oracle_teacher_dir
from pipeline.decoy import decoy_words, strip_frame
from pipeline.errors import DataError
from pipeline.fewshot import training_pool
from pipeline.io import read_parquet
from pipeline.params import load_params
from pipeline.students import fit_student, save_student


def main(dataset: str) -> None:
    """Write models/<dataset>/oracle-teacher-seed<priors.ig.teacher_seed>/."""
    params = load_params()
    train, validation = (
        read_parquet(dataset_split_file(dataset, split), schema=DATASET_SCHEMA) for split in ("train", "validation")
    )
    pool = strip_frame(training_pool(train, validation), decoy_words(params, dataset))
    labels = label_names(dataset)
    largest_draw = max(params.fewshot.shots) * len(labels)
    if len(pool) <= largest_draw:
        raise DataError(
            f"student.priors: the oracle control needs a full training split larger than the k-shot draws, but "
            f"{dataset_split_file(dataset, 'train')} has {len(pool)} training rows outside validation "
            f"(k-shot draws take up to {largest_draw}); drop 'oracle' from student.priors for this dataset"
        )
    seed = params.priors.ig.teacher_seed
    model, tokenizer, log, modules = fit_student(params, sentences=pool, labels=labels, objective="baseline", seed=seed,
                                                 epochs=params.priors.oracle.epochs, batch_size=params.priors.oracle.batch_size)
    save_student(oracle_teacher_dir(dataset, seed), model=model, tokenizer=tokenizer, log=log, modules=modules)


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
