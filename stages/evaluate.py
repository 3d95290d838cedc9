"""Stage 6b: evaluate one student: metrics/<dataset>/<setting>/<method>-seed<S>.json (a DVC metric).

The metrics are ``pipeline.evaluation``'s: accuracy, validation accuracy (for tuning only),
adversarial accuracy and ERASER faithfulness of the student's own rationale.
"""

from __future__ import annotations

from pipeline.artifacts import (
    ADVERSARIAL_SCHEMA,
    ATTACKS,
    DATASET_SCHEMA,
    METRICS,
    adversarial_file,
    dataset_split_file,
    student_dir,
)
from pipeline.evaluation import evaluate_student
from pipeline.io import read_parquet, write_json
from pipeline.models import load_trained_student, resolve_device
from pipeline.params import load_params


def main(dataset: str, setting: str, method: str, seed: int) -> None:
    """Evaluate models/<dataset>/<setting>/<method>-seed<seed> and write its metrics JSON."""
    params = load_params()
    device = resolve_device(params.device)
    # the student's model folder and metrics file, both named by method and seed
    model_dir = student_dir(dataset, setting, method, seed)
    metrics_file = METRICS / dataset / setting / f"{method}-seed{seed}.json"
    model, tokenizer = load_trained_student(model_dir, device=device)
    attacked = {name: read_parquet(adversarial_file(dataset, setting, name), schema=ADVERSARIAL_SCHEMA) for name in ATTACKS}
    test, validation = (
        read_parquet(dataset_split_file(dataset, split), schema=DATASET_SCHEMA) for split in ("test", "validation")
    )
    metrics = evaluate_student(model, tokenizer, test=test, validation=validation, attacked=attacked,
                               params=params.evaluation, max_length=params.student.max_length, device=device)
    write_json(metrics, metrics_file)
    print(f"{dataset}/{setting}/{method}-seed{seed}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
