"""A trained student's evaluation: accuracy and ERASER faithfulness of its own rationale; adversarial accuracy.

``evaluate_student``'s keys, all in percent like the paper: accuracy (test split),
validation_accuracy (the split to tune on, e.g. ``dvc exp run -S student.settings.guided.beta=0.3``;
never report it as a result), and ERASER comprehensiveness / sufficiency (AOPC) with the rationale =
the top words by the student's own Integrated Gradients toward its predicted label, on at most
``evaluation.eraser_sentences`` test sentences (a sample fixed by id, ``capped_pool``). Where params ask:
``comprehensiveness_grad_input`` / ``sufficiency_grad_input`` (the rationale by gradient x input),
``average_group_accuracy`` / ``worst_group_accuracy`` (over label x group cells of the test split),
and per target dataset ``accuracy@<target>``, ``transfer_gap@<target>`` (accuracy - accuracy@target)
and, with ``target_faithfulness``, the faithfulness keys ``...@<target>``.
On a decoy benchmark (``pipeline.data.decoy``): ``decoy_matched_accuracy`` and ``decoy_randomised_accuracy``
(the test copies with the true label's / a random label's decoy), ``decoy_flip_rate`` (the percent of
test sentences whose prediction changes from the matched to the swapped copy) and ``decoy_mass`` (a
share in [0, 1], not percent: the mean share of |IG| on the decoy word, accurate IG with
``evaluation.decoy_ig_steps`` toward the predicted label, on ``evaluation.decoy_sentences`` sentences
of the randomised copy in a fixed, id-seeded order) and ``decoy_ig_gap`` (the median over those sentences of that
IG's relative completeness gap, ``pipeline.priors.ig.completeness_gaps``: how far the step count leaves the decoy
mass from IG's limit). For a student trained with a prior:
``prior_cosine`` and ``prior_spearman`` (in [-1, 1]): per training sentence (at most ``evaluation.alignment_sentences``
of them), the cosine and Spearman rho between the student's accurate |IG| toward the gold label and the prior it was
given, averaged.
``adversarial_accuracy``'s: adv_add_accuracy, adv_replace_accuracy, adv_accuracy (both attacked sets
together; the true label is unchanged by the attacks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import polars as pl
import torch
from scipy.stats import spearmanr

from pipeline.artifacts import ATTACKS
from pipeline.attribution.attribution import gradient_x_input_words
from pipeline.data.decoy import decoy_mass, decoy_positions
from pipeline.data.fewshot import capped_pool
from pipeline.data.groups import group_accuracy
from pipeline.data.perturb import sentence_rng
from pipeline.errors import ArtifactError, ConfigError
from pipeline.evaluation.eraser import faithfulness
from pipeline.evaluation.predict import predict_proba
from pipeline.params import EvaluationParams
from pipeline.priors.ig import completeness_gaps, ig_prior


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
                        internal_batch_size=params.batch_size, max_length=max_length)
    return gradient_x_input_words(model, tokenizer, sentences=sentences, labels=labels, batch_size=params.batch_size,
                                  max_length=max_length)


def accurate_ig(model, tokenizer, sentences: list[list[str]], *, labels: np.ndarray, params: EvaluationParams,
                max_length: int) -> list[np.ndarray]:
    """Word-level IG toward ``labels`` with ``evaluation.decoy_ig_steps`` (the accurate attribution of the alignment checks)."""
    return ig_prior(model, tokenizer, sentences=sentences, labels=torch.from_numpy(np.asarray(labels)),
                    steps=params.decoy_ig_steps, internal_batch_size=params.batch_size, max_length=max_length)


def decoy_mass_sample(randomised: pl.DataFrame, *, size: int) -> pl.DataFrame:
    """The sentences of the randomised test copy the decoy mass is measured on.

    A fixed sample, independent of the file's order (often grouped by label): the ``size`` rows first in an
    order seeded by each sentence's id, with ``_row``, each row's index in ``randomised``.
    """
    order = [sentence_rng(seed=0, sentence_id=f"{i}/decoy-mass").uniform() for i in randomised["id"]]
    return randomised.with_columns(pl.Series("_order", order)).with_row_index("_row").sort("_order").head(size)


def decoy_metrics(model, tokenizer, copies: dict[str, pl.DataFrame], *, decoys: Sequence[str],
                  predict: Callable[[list[str]], np.ndarray], params: EvaluationParams, max_length: int) -> dict[str, float]:
    """The decoy benchmark's keys (module docstring) on its test copies.

    Args:
        model: the trained classifier (its config maps label names to ids).
        tokenizer: its fast tokenizer.
        copies: ``pipeline.data.decoy.TEST_VARIANTS`` -> the test copy (id, text, label), rows in the clean test's order.
        decoys: the dataset's decoy words.
        predict: texts -> probabilities (the evaluation's cache: each distinct text is predicted once).
        params: ``evaluation`` (decoy_ig_steps, decoy_sentences, batch size).
        max_length: tokens per sentence.

    Returns:
        decoy_matched_accuracy, decoy_randomised_accuracy, decoy_flip_rate (percent), decoy_mass and decoy_ig_gap
        (shares).

    Raises:
        ArtifactError: the copies hold other sentences than each other.
    """
    ids = copies["matched"]["id"].to_list()
    for variant, frame in copies.items():
        if frame["id"].to_list() != ids:
            raise ArtifactError(f"decoy test copy {variant!r} holds other sentences than 'matched'; rerun the data stage")
    predicted = {variant: predict(frame["text"].to_list()) for variant, frame in copies.items()}
    flips = predicted["matched"].argmax(axis=1) != predicted["swapped"].argmax(axis=1)
    randomised = decoy_mass_sample(copies["randomised"], size=params.decoy_sentences)
    sentences = [text.split() for text in randomised["text"]]
    labels = predicted["randomised"][randomised["_row"].to_numpy()].argmax(axis=1)
    scores = accurate_ig(model, tokenizer, sentences, labels=labels, params=params, max_length=max_length)
    gaps = completeness_gaps(model, tokenizer, sentences=sentences, labels=torch.from_numpy(labels), scores=scores,
                             batch_size=params.batch_size, max_length=max_length)
    return {
        "decoy_matched_accuracy": _accuracy(model, copies["matched"], predicted["matched"]),
        "decoy_randomised_accuracy": _accuracy(model, copies["randomised"], predicted["randomised"]),
        "decoy_flip_rate": 100.0 * float(flips.mean()),
        "decoy_mass": decoy_mass(scores, decoy_positions(sentences, decoys)),
        "decoy_ig_gap": float(np.nanmedian(gaps)) if not np.isnan(gaps).all() else float("nan"),
    }


def prior_alignment(model, tokenizer, *, sentences: pl.DataFrame, prior: pl.DataFrame, params: EvaluationParams,
                    max_length: int) -> dict[str, float]:
    """How close a student's accurate attribution is to the prior it was trained with, on its training sentences
    (at most ``evaluation.alignment_sentences`` of them, drawn as the oracle's pool cap, ``capped_pool``: at 600
    sentences this IG was 70 % of an evaluation).

    Per sentence: the student's |IG| (``evaluation.decoy_ig_steps`` steps, toward the gold label) against
    the prior's scores, by cosine (left out where either is all zero) and Spearman rho (left out where
    either is constant or the sentence has one word, as ``pipeline.evaluation.diagnostics.prior_agreement``); then
    the mean over sentences.

    Args:
        model: the trained classifier (its config maps label names to ids).
        tokenizer: its fast tokenizer.
        sentences: the setting's training sentences (id, text, label).
        prior: the prior it read (id, words, scores: the fused file of its combination).
        params: ``evaluation`` (decoy_ig_steps, alignment_sentences, batch size).
        max_length: tokens per sentence.

    Returns:
        prior_cosine and prior_spearman; a key is left out when no sentence defines it (e.g. Spearman
        against a uniform prior).

    Raises:
        ArtifactError: a training sentence has no prior or another number of words (names the id).
    """
    sentences = capped_pool(sentences, max_rows=params.alignment_sentences, seed=0)
    scores = dict(zip(prior["id"], prior["scores"]))
    targets = []
    for sentence_id, text in zip(sentences["id"], sentences["text"]):
        if sentence_id not in scores or len(scores[sentence_id]) != len(text.split()):
            raise ArtifactError(f"the prior has no scores of matching length for training sentence {sentence_id!r}; "
                                f"rerun the prior stages")
        targets.append(np.asarray(scores[sentence_id], dtype=np.float64))
    index = model.config.label2id
    attributions = accurate_ig(model, tokenizer, [text.split() for text in sentences["text"]],
                               labels=np.array([index[label] for label in sentences["label"]]), params=params,
                               max_length=max_length)
    cosines, rhos = [], []
    for attribution, target in zip(attributions, targets):
        attribution = np.abs(attribution)
        norms = np.linalg.norm(attribution) * np.linalg.norm(target)
        if norms > 0:
            cosines.append(float(attribution @ target / norms))
        if len(target) >= 2 and np.ptp(attribution) > 0 and np.ptp(target) > 0:
            rhos.append(float(spearmanr(attribution, target).statistic))
    return ({"prior_cosine": float(np.mean(cosines))} if cosines else {}) | (
        {"prior_spearman": float(np.mean(rhos))} if rhos else {})


def evaluate_student(model, tokenizer, *, test: pl.DataFrame, validation: pl.DataFrame, params: EvaluationParams,
                     max_length: int, device: str, targets: dict[str, pl.DataFrame] | None = None,
                     decoy_copies: dict[str, pl.DataFrame] | None = None, decoys: Sequence[str] = (),
                     trained_on: pl.DataFrame | None = None, prior: pl.DataFrame | None = None) -> dict[str, float]:
    """Accuracy and faithfulness of a trained student, its validation accuracy (for tuning), and what params ask for.

    Args:
        model: the trained classifier (its config maps label names to ids).
        tokenizer: its fast tokenizer.
        test: id, text, label (and ``params.group_column`` where set) of the test split.
        validation: id, text, label of the validation split.
        params: ``evaluation`` (batch size, IG steps, ERASER fractions, sentences and rationales, group column).
        max_length: tokens per sentence.
        device: where the model runs.
        targets: ``params.targets`` -> their test splits.
        decoy_copies: on a decoy benchmark, its test copies (``decoy_metrics``); ``decoys``: its decoy words.
        trained_on, prior: for a student trained with a prior, its training sentences and that prior
            (``prior_alignment``).

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

    def faithful(frame: pl.DataFrame, *, at: str = "") -> dict[str, float]:
        frame = capped_pool(frame, max_rows=params.eraser_sentences, seed=0)
        sentences = [t.split() for t in frame["text"]]
        probabilities = predict(frame["text"].to_list())  # read from ``known``
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
        **faithful(test),
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
        metrics |= {f"accuracy@{name}": accuracy, f"transfer_gap@{name}": metrics["accuracy"] - accuracy}
        if params.target_faithfulness:
            metrics |= faithful(frame, at=f"@{name}")
    if decoy_copies is not None:
        metrics |= decoy_metrics(model, tokenizer, decoy_copies, decoys=decoys, predict=predict, params=params,
                                 max_length=max_length)
    if prior is not None:
        if trained_on is None:
            raise ValueError("evaluate_student: a prior's alignment needs the sentences the student was trained on")
        metrics |= prior_alignment(model, tokenizer, sentences=trained_on, prior=prior, params=params, max_length=max_length)
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
