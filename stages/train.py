"""Stage 5: train one student: models/<dataset>/<setting>/<name>-seed<S>/ (checkpoint, train_log.parquet and the
objective's extra modules) and its training curve, reports/curves/<dataset>/<setting>/<name>-seed<S>.csv (a DVC plot).

The student is (objective, prior or none, seed): ``baseline`` or another registered objective
(``pipeline.training.objectives``), with ``--prior <combination>`` for one that takes a prior (``guided``:
cross-entropy + beta * MSE between the student's own word-level IG and that prior).
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.artifacts import DATASET_SCHEMA, PRIORS_SCHEMA, fewshot_file, fused_file, label_names, model_name, student_dir
from pipeline.io import read_parquet
from pipeline.params import load_params
from pipeline.training.students import fit_student, save_student


def main(dataset: str, setting: str, objective: str, seed: int,
         prior: Annotated[str | None, typer.Option(help="the prior combination, for an objective that takes one")] = None,
         ) -> None:
    """Write models/<dataset>/<setting>/<objective>[.<prior>]-seed<seed>/."""
    params = load_params()
    sentences = read_parquet(fewshot_file(dataset, setting), schema=DATASET_SCHEMA)
    frame = None if prior is None else read_parquet(fused_file(dataset, setting, prior), schema=PRIORS_SCHEMA)
    model, tokenizer, log, modules = fit_student(params, sentences=sentences, labels=label_names(dataset),
                                                 objective=objective, seed=seed, prior=frame)
    save_student(student_dir(dataset, setting, model_name(objective, prior), seed),
                 model=model, tokenizer=tokenizer, log=log, modules=modules)


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
