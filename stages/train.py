"""Stage 5: train one student: models/<dataset>/<setting>/<method>-seed<S>/ (checkpoint + train_log.parquet)
and its training curve, reports/curves/<dataset>/<setting>/<method>-seed<S>.csv (a DVC plot).

``method`` is ``baseline`` (cross-entropy only; also the teacher of the IG prior) or a prior
combination (cross-entropy + beta * MSE between the student's own word-level IG and that prior).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from pipeline.artifacts import DATASET_SCHEMA, FEWSHOT, FUSED, PRIORS_SCHEMA, label_names, student_dir, training_curve_file
from pipeline.errors import ArtifactError
from pipeline.io import atomic_dir, read_parquet, write_parquet
from pipeline.methods import get_method
from pipeline.models import load_student, resolve_device
from pipeline.params import Params, load_params
from pipeline.training import train_student, write_training_curve


def training_examples(sentences: pl.DataFrame, labels: list[str], prior: pl.DataFrame | None) -> list:
    """(words, label index, prior scores or None) per training sentence."""
    index = {label: i for i, label in enumerate(labels)}
    priors = dict(zip(prior["id"], prior["scores"])) if prior is not None else {}
    examples = []
    for sentence_id, text, label in sentences.select("id", "text", "label").iter_rows():
        if prior is not None and sentence_id not in priors:
            raise ArtifactError(f"prior has no scores for training sentence {sentence_id!r}; rerun the prior stages")
        scores = np.asarray(priors[sentence_id], dtype=np.float64) if prior is not None else None
        examples.append((text.split(), index[label], scores))
    return examples


def fit_student(params: Params, *, sentences: pl.DataFrame, labels: list[str], method: str, seed: int,
                prior: pl.DataFrame | None = None, epochs: int | None = None, batch_size: int | None = None):
    """Fine-tune a fresh student on ``sentences`` with ``method`` (a prior frame for guided methods).

    ``epochs`` and ``batch_size`` default to ``student.*``; everything else comes from ``student.*``.

    Returns:
        (model, tokenizer, training log frame)
    """
    device = resolve_device(params.device)
    model, tokenizer = load_student(params.student.model, num_labels=len(labels), seed=seed, device=device)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {label: i for i, label in enumerate(labels)}
    student = params.student
    settings = {}
    if method != "baseline":
        settings = {"beta": student.beta, "steps": student.ig_steps, "normalisation": params.priors.normalisation}
    model, log = train_student(
        model=model, tokenizer=tokenizer, train=training_examples(sentences, labels, prior),
        method=get_method(method, **settings),
        epochs=epochs or student.epochs, lr=student.lr, batch_size=batch_size or student.batch_size,
        warmup_fraction=student.warmup_fraction,
        max_length=student.max_length, max_grad_norm=student.max_grad_norm, clip=student.clip, seed=seed, device=device,
    )
    return model, tokenizer, log


def train(params: Params, dataset: str, setting: str, method: str, seed: int):
    """Fine-tune a fresh student with ``method`` on the setting's k-shot sentences.

    Returns:
        (model, tokenizer, training log frame)
    """
    sentences = read_parquet(FEWSHOT / dataset / f"{setting}.parquet", schema=DATASET_SCHEMA)
    prior = None if method == "baseline" else read_parquet(FUSED / dataset / setting / f"{method}.parquet", schema=PRIORS_SCHEMA)
    return fit_student(params, sentences=sentences, labels=label_names(dataset), method=method, seed=seed, prior=prior)


def save_student(folder: Path, model, tokenizer, log: pl.DataFrame) -> None:
    """Write the checkpoint, tokenizer and train_log.parquet into ``folder`` atomically (a temporary folder, then rename),
    and the training curve to ``training_curve_file(folder)``."""
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_parquet(log, tmp / "train_log.parquet")
    write_training_curve(log, training_curve_file(folder))
    last = log.tail(1).to_dicts()[0]
    print(f"{folder}: {len(log)} steps, last ce {last['ce']:.4f}, align {last['align']:.4f}")


def main(dataset: str, setting: str, method: str, seed: int) -> None:
    """Write models/<dataset>/<setting>/<method>-seed<seed>/."""
    model, tokenizer, log = train(load_params(), dataset, setting, method, seed)
    save_student(student_dir(dataset, setting, method, seed), model, tokenizer, log)


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
