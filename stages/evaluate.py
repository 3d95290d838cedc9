"""Stage 6b: evaluate one student: metrics/<dataset>/<setting>/<name>-seed<S>.json (a DVC metric).

The metrics are ``pipeline.evaluation.evaluation.evaluate_student``'s: accuracy, validation accuracy (for tuning
only), ERASER faithfulness of the student's own rationale, and where params ask for them group
accuracies and the same on ``evaluation.targets``' test splits; on a decoy benchmark the decoy keys
(its test copies), and for a student trained with a prior its alignment to that prior (the setting's
training sentences and the fused prior file its training read). Adversarial accuracy is the attack
stage's (stages/attack.py).
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.artifacts import (
    DATASET_SCHEMA,
    PRIORS_SCHEMA,
    dataset_split_file,
    decoy_test_file,
    fewshot_file,
    fused_file,
    model_name,
    student_dir,
    student_metrics_file,
)
from pipeline.data.decoy import TEST_VARIANTS, decoy_words
from pipeline.evaluation.evaluation import evaluate_student
from pipeline.io import read_parquet, write_json
from pipeline.models import load_trained_student, resolve_device
from pipeline.params import load_params


def main(dataset: str, setting: str, objective: str, seed: int,
         prior: Annotated[str | None, typer.Option(help="the prior the student was trained with")] = None) -> None:
    """Evaluate models/<dataset>/<setting>/<objective>[.<prior>]-seed<seed> and write its metrics JSON."""
    params = load_params()
    device = resolve_device(params.device)
    name = model_name(objective, prior)
    model, tokenizer = load_trained_student(student_dir(dataset, setting, name, seed), device=device)
    test, validation = (
        read_parquet(dataset_split_file(dataset, split), schema=DATASET_SCHEMA) for split in ("test", "validation")
    )
    targets = {target: read_parquet(dataset_split_file(target, "test"), schema=DATASET_SCHEMA)
               for target in params.evaluation.targets}
    decoys = decoy_words(params, dataset)
    copies = {variant: read_parquet(decoy_test_file(dataset, variant), schema=DATASET_SCHEMA)
              for variant in TEST_VARIANTS} if decoys else None
    trained_on = read_parquet(fewshot_file(dataset, setting), schema=DATASET_SCHEMA) if prior is not None else None
    frame = read_parquet(fused_file(dataset, setting, prior), schema=PRIORS_SCHEMA) if prior is not None else None
    metrics = evaluate_student(model, tokenizer, test=test, validation=validation, targets=targets,
                               params=params.evaluation, max_length=params.student.max_length, device=device,
                               decoy_copies=copies, decoys=decoys, trained_on=trained_on, prior=frame)
    write_json(metrics, student_metrics_file(dataset, setting, name, seed))
    print(f"{dataset}/{setting}/{name}-seed{seed}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
