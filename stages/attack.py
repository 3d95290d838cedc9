"""Stage 6c: adversarial accuracy of one student: metrics/<dataset>/<setting>/adversarial/<model name>-seed<S>.json.

A DVC metric with ``pipeline.evaluation.evaluation.adversarial_accuracy``'s keys, on the setting's
attacked sets (they exist where priors do: the rules take their keywords from the CAP prior). One
stage per student, like evaluation, so each starts as soon as its student is trained.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.artifacts import ADVERSARIAL_SCHEMA, ATTACKS, adversarial_file, adversarial_metrics_file, model_name, student_dir
from pipeline.evaluation.evaluation import adversarial_accuracy
from pipeline.io import read_parquet, write_json
from pipeline.models import load_trained_student, resolve_device
from pipeline.params import load_params


def main(dataset: str, setting: str, objective: str, seed: int,
         prior: Annotated[str | None, typer.Option(help="the prior the student was trained with")] = None) -> None:
    """Attack models/<dataset>/<setting>/<objective>[.<prior>]-seed<seed> and write its adversarial metrics JSON."""
    params = load_params()
    device = resolve_device(params.device)
    name = model_name(objective, prior)
    attacked = {kind: read_parquet(adversarial_file(dataset, setting, kind), schema=ADVERSARIAL_SCHEMA) for kind in ATTACKS}
    model, tokenizer = load_trained_student(student_dir(dataset, setting, name, seed), device=device)
    metrics = adversarial_accuracy(model, tokenizer, attacked, batch_size=params.evaluation.batch_size,
                                   max_length=params.student.max_length, device=device)
    write_json(metrics, adversarial_metrics_file(dataset, setting, name, seed))
    print(f"{dataset}/{setting}/{name}-seed{seed}: adv_accuracy {metrics['adv_accuracy']:.2f}")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
