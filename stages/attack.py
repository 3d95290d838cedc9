"""Stage 6c: adversarial accuracy of every student of a setting: metrics/<dataset>/<setting>/adversarial.json (a DVC metric).

One object per student, keyed ``<model name>-seed<S>`` like its folder, with
``pipeline.evaluation.evaluation.adversarial_accuracy``'s keys. One stage per setting rather than per student:
the attacked sets exist only where priors do (the rules take their keywords from the CAP prior),
and predictions are cheap next to starting a stage.
"""

from __future__ import annotations

from pipeline.artifacts import ADVERSARIAL_SCHEMA, ATTACKS, adversarial_file, adversarial_metrics_file, students_of
from pipeline.errors import ArtifactError
from pipeline.evaluation.evaluation import adversarial_accuracy
from pipeline.io import read_parquet, write_json
from pipeline.models import load_trained_student, resolve_device
from pipeline.params import load_params


def main(dataset: str, setting: str) -> None:
    """Write metrics/<dataset>/<setting>/adversarial.json for every student under models/<dataset>/<setting>/."""
    params = load_params()
    device = resolve_device(params.device)
    attacked = {name: read_parquet(adversarial_file(dataset, setting, name), schema=ADVERSARIAL_SCHEMA) for name in ATTACKS}
    folders = students_of(dataset, setting)
    if not folders:
        raise ArtifactError(f"no trained students under models/{dataset}/{setting}; run the train stages first")
    metrics = {}
    for folder in folders:
        model, tokenizer = load_trained_student(folder, device=device)
        metrics[folder.name] = adversarial_accuracy(model, tokenizer, attacked, batch_size=params.evaluation.batch_size,
                                                    max_length=params.student.max_length, device=device)
        print(f"{dataset}/{setting}/{folder.name}: adv_accuracy {metrics[folder.name]['adv_accuracy']:.2f}")
    write_json(metrics, adversarial_metrics_file(dataset, setting))


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
