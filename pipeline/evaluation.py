"""A trained student's evaluation: accuracy and ERASER faithfulness of its own rationale; adversarial accuracy.

``evaluate_student``'s keys, all in percent like the paper: accuracy (test split),
validation_accuracy (the split to tune on, e.g. ``dvc exp run -S student.settings.guided.beta=0.3``;
never report it as a result), and ERASER comprehensiveness / sufficiency (AOPC) with the rationale =
the top words by the student's own Integrated Gradients toward its predicted label. Where params ask:
``comprehensiveness_grad_input`` / ``sufficiency_grad_input`` (the rationale by gradient x input),
``average_group_accuracy`` / ``worst_group_accuracy`` (over label x group cells of the test split),
and per target dataset ``accuracy@<target>``, ``transfer_gap@<target>`` (accuracy - accuracy@target)
and the faithfulness keys ``...@<target>``.
``adversarial_accuracy``'s: adv_add_accuracy, adv_replace_accuracy, adv_accuracy (both attacked sets
together; the true label is unchanged by the attacks).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from pipeline.artifacts import ATTACKS
from pipeline.attribution import gradient_x_input_words
from pipeline.eraser import faithfulness
from pipeline.errors import ConfigError
from pipeline.groups import group_accuracy
from pipeline.params import EvaluationParams
from pipeline.predict import predict_proba
from pipeline.priors.ig import ig_prior


def self_rationale(model, tokenizer, sentences: list[list[str]], *, params: EvaluationParams, max_length: int,
                   device: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """A student's class probabilities and its own IG toward its prediction.

    Args:
        model: the trained classifier.
        tokenizer: its fast tokenizer.
        sentences: N sentences, each a list of words.
        params: ``evaluation`` (batch size, IG steps).
        max_length: tokens per sentence.
        device: where the model runs.

    Returns:
        probabilities of shape (N, n_labels), and per sentence one score per word.
    """
    probabilities = predict_proba(model, tokenizer, sentences, batch_size=params.batch_size, max_length=max_length, device=device)
    return probabilities, rationale_scores(model, tokenizer, sentences, labels=probabilities.argmax(axis=1), method="ig",
                                           params=params, max_length=max_length)


def rationale_scores(model, tokenizer, sentences: list[list[str]], *, labels: np.ndarray, method: str,
                     params: EvaluationParams, max_length: int) -> list[np.ndarray]:
    """One score per word toward ``labels`` by ``method``: ``"ig"`` (``evaluation.ig_steps``) or ``"grad_input"``."""
    labels = torch.from_numpy(np.asarray(labels))
    if method == "ig":
        return ig_prior(model, tokenizer, sentences=sentences, labels=labels, steps=params.ig_steps,
                        internal_batch_size=params.batch_size, batch_size=params.batch_size, max_length=max_length)
    return gradient_x_input_words(model, tokenizer, sentences=sentences, labels=labels, batch_size=params.batch_size,
                                  max_length=max_length)


def evaluate_student(model, tokenizer, *, test: pl.DataFrame, validation: pl.DataFrame, params: EvaluationParams,
                     max_length: int, device: str, targets: dict[str, pl.DataFrame] | None = None) -> dict[str, float]:
    """Accuracy and faithfulness of a trained student, its validation accuracy (for tuning), and what params ask for.

    Args:
        model: the trained classifier (its config maps label names to ids).
        tokenizer: its fast tokenizer.
        test: id, text, label (and ``params.group_column`` where set) of the test split.
        validation: id, text, label of the validation split.
        params: ``evaluation`` (batch size, IG steps, ERASER fractions, rationales, group column).
        max_length: tokens per sentence.
        device: where the model runs.
        targets: ``params.targets`` -> their test splits.

    Returns:
        the keys of the module docstring, in percent.

    Raises:
        ConfigError: the test split lacks the group column, or a target has a label the student does not know.
    """
    known: dict[str, np.ndarray] = {}  # text -> probabilities: ERASER re-reads the full sentences, rationales share erasures

    def predict(texts: list[str]) -> np.ndarray:
        new = [text for text in dict.fromkeys(texts) if text not in known]
        if new:
            known.update(zip(new, predict_proba(model, tokenizer, [t.split() for t in new], batch_size=params.batch_size,
                                                max_length=max_length, device=device), strict=True))
        return np.stack([known[text] for text in texts]) if texts else np.zeros((0, model.config.num_labels))

    def faithful(frame: pl.DataFrame, probabilities: np.ndarray, *, at: str = "") -> dict[str, float]:
        sentences = [t.split() for t in frame["text"]]
        out = {}
        for method in params.rationales:
            scores = rationale_scores(model, tokenizer, sentences, labels=probabilities.argmax(axis=1), method=method,
                                      params=params, max_length=max_length)
            suffix = "" if method == "ig" else f"_{method}"
            out |= {f"{key}{suffix}{at}": value
                    for key, value in faithfulness(predict, sentences, scores, fractions=params.fractions).items()}
        return out

    probabilities = predict(test["text"].to_list())
    metrics = {
        "accuracy": _accuracy(model, test, probabilities),
        "validation_accuracy": _accuracy(model, validation, predict(validation["text"].to_list())),
        **faithful(test, probabilities),
    }
    if params.group_column is not None:
        if params.group_column not in test.columns:
            raise ConfigError(f"evaluation.group_column: the test split has no column {params.group_column!r} "
                              f"(keep it with data.datasets.<name>.columns)")
        names = model.config.id2label
        cells = group_accuracy(labels=test["label"].to_list(), groups=test[params.group_column].to_list(),
                               predictions=[names[int(i)] for i in probabilities.argmax(axis=1)])
        metrics |= {"average_group_accuracy": 100.0 * cells.average, "worst_group_accuracy": 100.0 * cells.worst}
    for name, frame in (targets or {}).items():
        unknown = sorted(set(frame["label"]) - set(model.config.label2id))
        if unknown:
            raise ConfigError(f"evaluation.targets: {name} has label {unknown[0]!r}, which the student does not know")
        target_probabilities = predict(frame["text"].to_list())
        accuracy = _accuracy(model, frame, target_probabilities)
        metrics |= {f"accuracy@{name}": accuracy, f"transfer_gap@{name}": metrics["accuracy"] - accuracy,
                    **faithful(frame, target_probabilities, at=f"@{name}")}
    return metrics


def adversarial_accuracy(model, tokenizer, attacked: dict[str, pl.DataFrame], *, batch_size: int, max_length: int,
                         device: str) -> dict[str, float]:
    """Accuracy on each attacked set and on both together.

    Args:
        model: the trained classifier (its config maps label names to ids).
        tokenizer: its fast tokenizer.
        attacked: ``ATTACKS`` -> frame with text and the (true) label.
        batch_size, max_length, device: as ``predict_proba``.

    Returns:
        adv_add_accuracy, adv_replace_accuracy, adv_accuracy, in percent.
    """
    correct = {}
    for name in ATTACKS:
        frame = attacked[name]
        probabilities = predict_proba(model, tokenizer, [t.split() for t in frame["text"]], batch_size=batch_size,
                                      max_length=max_length, device=device)
        correct[name] = _correct(model, frame, probabilities)
    return {f"adv_{name}_accuracy": 100.0 * float(correct[name].mean()) for name in ATTACKS} | {
        "adv_accuracy": 100.0 * float(np.concatenate([correct[name] for name in ATTACKS]).mean())
    }


def _correct(model, frame: pl.DataFrame, probabilities: np.ndarray) -> np.ndarray:
    index = model.config.label2id
    return probabilities.argmax(axis=1) == np.array([index[label] for label in frame["label"]])


def _accuracy(model, frame: pl.DataFrame, probabilities: np.ndarray) -> float:
    return 100.0 * float(_correct(model, frame, probabilities).mean())
