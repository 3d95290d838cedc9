"""Training one student end to end: its examples from the k-shot frame, its objective from params, its checkpoint.

A student is (objective, prior or none, seed); ``pipeline.artifacts.model_name`` names its folder.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from pipeline.artifacts import training_curve_file
from pipeline.errors import ArtifactError, ConfigError
from pipeline.io import atomic_dir, write_parquet
from pipeline.models import load_student, resolve_device
from pipeline.params import PARAMS_FILE, Params
from pipeline.training.objectives import OBJECTIVES, get_objective, objective_class
from pipeline.training.objectives.base import Objective, Task
from pipeline.training.training import MODULES_FILE, Example, train_student, write_training_curve


def objective_from_params(params: Params, name: str) -> Objective:
    """The objective ``name`` with its ``student.settings.<name>`` (and the fusion's normalisation where it has that setting).

    Raises:
        ConfigError: ``name`` has no settings, or it is listed in ``student.objectives`` or
            ``student.prior_objectives`` and is not registered or not of that kind (one line naming the key).
    """
    if name not in params.student.settings:
        raise ConfigError(f"{PARAMS_FILE}: student.settings: no entry for objective {name!r} "
                          f"(write `{name}: {{}}` for its defaults)")
    for key, names, with_prior in (("objectives", params.student.objectives, False),
                                   ("prior_objectives", params.student.prior_objectives, True)):
        if name not in names:
            continue
        if name not in OBJECTIVES:
            raise ConfigError(f"{PARAMS_FILE}: student.{key}: unknown objective {name!r} (registered: {', '.join(OBJECTIVES)})")
        if objective_class(name).needs_prior != with_prior:
            kind = ("takes no prior: list it in student.objectives" if with_prior
                    else "takes a prior: list it in student.prior_objectives")
            raise ConfigError(f"{PARAMS_FILE}: student.{key}: objective {name!r} {kind}")
    settings = dict(params.student.settings[name])
    if "normalisation" in {f.name for f in fields(objective_class(name))}:
        settings["normalisation"] = params.priors.normalisation
    try:
        return get_objective(name, **settings)
    except ConfigError as error:
        raise ConfigError(f"{PARAMS_FILE}: {error}") from None


def training_examples(sentences: pl.DataFrame, *, labels: list[str], prior: pl.DataFrame | None,
                      columns: tuple[str, ...] = ()) -> list[Example]:
    """One ``Example`` per training sentence.

    Args:
        sentences: id, text, label and the ``columns``.
        labels: the label set (class i = labels[i]).
        prior: id, scores (one per word) for every sentence, or None.
        columns: extra columns to carry.

    Raises:
        ArtifactError: a sentence has no prior, or a column is missing.
    """
    missing = [c for c in columns if c not in sentences.columns]
    if missing:
        raise ArtifactError(f"the k-shot frame has no column {missing[0]!r} (declare it in data.datasets.<name>.columns)")
    index = {label: i for i, label in enumerate(labels)}
    priors = dict(zip(prior["id"], prior["scores"])) if prior is not None else {}
    examples = []
    for row in sentences.iter_rows(named=True):
        if prior is not None and row["id"] not in priors:
            raise ArtifactError(f"prior has no scores for training sentence {row['id']!r}; rerun the prior stages")
        scores = np.asarray(priors[row["id"]], dtype=np.float64) if prior is not None else None
        examples.append(Example(row["text"].split(), index[row["label"]], scores, {c: row[c] for c in columns} or None))
    return examples


def fit_student(params: Params, *, sentences: pl.DataFrame, labels: list[str], objective: str, seed: int,
                prior: pl.DataFrame | None = None, epochs: int | None = None, batch_size: int | None = None,
                ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, pl.DataFrame, dict[str, nn.Module]]:
    """Fine-tune a fresh student on ``sentences`` with ``objective`` (and a prior frame when it takes one).

    ``epochs`` and ``batch_size`` default to ``student.*``; everything else comes from ``student.*``.

    Returns:
        (model, tokenizer, training log, the objective's extra modules)
    """
    found = objective_from_params(params, objective)
    if found.needs_prior != (prior is not None):
        raise ConfigError(f"objective {objective!r} {'needs' if found.needs_prior else 'takes no'} prior")
    device = resolve_device(params.device)
    model, tokenizer = load_student(params.student.model, num_labels=len(labels), seed=seed, device=device)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {label: i for i, label in enumerate(labels)}
    task = Task(num_labels=len(labels),
                column_values={c: tuple(sorted(sentences[c].unique())) for c in found.columns if c in sentences.columns})
    student = params.student
    model, log, modules = train_student(
        model=model, tokenizer=tokenizer, objective=found, task=task,
        train=training_examples(sentences, labels=labels, prior=prior, columns=found.columns),
        epochs=epochs or student.epochs, lr=student.lr, batch_size=batch_size or student.batch_size,
        warmup_fraction=student.warmup_fraction,
        max_length=student.max_length, max_grad_norm=student.max_grad_norm, clip=student.clip,
        gradient_split=student.log_gradient_split, seed=seed, device=device,
    )
    return model, tokenizer, log, modules


def save_student(folder: Path, *, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, log: pl.DataFrame,
                 modules: dict[str, nn.Module]) -> None:
    """Write the checkpoint, tokenizer, train_log.parquet and the extra modules (``modules.pt``, when there are any)
    into ``folder`` atomically (a temporary folder, then rename), and the training curve to ``training_curve_file(folder)``."""
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_parquet(log, tmp / "train_log.parquet")
        if modules:
            torch.save({name: module.state_dict() for name, module in modules.items()}, tmp / MODULES_FILE)
    write_training_curve(log, training_curve_file(folder))
    last = log.tail(1).to_dicts()[0]
    print(f"{folder}: {len(log)} steps, last loss {last['loss']:.4f}, ce {last['ce']:.4f}")
