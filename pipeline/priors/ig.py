"""IG prior: captum's LayerIntegratedGradients on a fine-tuned student, summed into words.

Same attribution as the differentiable self-attribution of ``pipeline.attribution.attribution`` (word
embeddings, pad baseline with special tokens kept, Riemann midpoint rule), computed by captum.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch
from captum.attr import LayerIntegratedGradients
from torch import Tensor
from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

from pipeline.artifacts import priors_frame
from pipeline.attribution.attribution import encode_words, length_batches, pad_baseline, word_scores
from pipeline.models import eval_mode, load_trained_student, resolve_device

if TYPE_CHECKING:
    from pipeline.params import Params


def ig_prior(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    sentences: Sequence[Sequence[str]],
    labels: Tensor,
    steps: int = 50,
    internal_batch_size: int,
    max_length: int = 128,
) -> list[np.ndarray]:
    """Word-level IG of the true-label logit for every sentence.

    Args:
        model: the fine-tuned classifier (put in eval mode, restored afterwards).
        tokenizer: its fast tokenizer.
        sentences: N sentences, each a list of words.
        labels: (N,) the true class ids.
        steps: IG interpolation steps.
        internal_batch_size: rows (sentences x steps) per forward pass inside captum. Each captum call
            gets the sentences of one such pass, ``internal_batch_size // steps`` of similar length:
            a call pads all its sentences to its longest, and 25 sentences in one call took twice as
            long as the same sentences two at a time (32 steps, 2026-12-06).
        max_length: tokens per sentence; words past it score 0.

    Returns:
        Per sentence, float64 scores of shape (len(words),).
    """
    labels = torch.as_tensor(labels)
    if len(labels) != len(sentences):
        raise ValueError(f"ig_prior: {len(sentences)} sentences but {len(labels)} labels")
    device = next(model.parameters()).device
    explainer = LayerIntegratedGradients(
        lambda input_ids, attention_mask: model(input_ids=input_ids, attention_mask=attention_mask).logits,
        model.get_input_embeddings(),
    )

    def attribute(encoding: BatchEncoding, word_index: Tensor, rows: np.ndarray) -> Tensor:
        return explainer.attribute(
            encoding["input_ids"],
            baselines=pad_baseline(input_ids=encoding["input_ids"], word_index=word_index, pad_token_id=tokenizer.pad_token_id),
            additional_forward_args=(encoding["attention_mask"],),
            target=labels[torch.from_numpy(rows)].to(device),
            n_steps=steps,
            method="riemann_middle",
            internal_batch_size=internal_batch_size,
        ).sum(-1)

    return word_scores(model, tokenizer, sentences=sentences, attribute=attribute,
                       batch_size=max(1, internal_batch_size // steps), max_length=max_length)


def completeness_gaps(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    sentences: Sequence[Sequence[str]],
    labels: Tensor,
    scores: Sequence[np.ndarray],
    batch_size: int,
    max_length: int = 128,
) -> np.ndarray:
    """How far :func:`ig_prior`'s scores are from IG's completeness, per sentence.

    IG's attributions sum to f_y(x) - f_y(x') (x' the pad baseline, f_y the label's logit) only in the
    limit of many steps; the relative gap |sum_w a_w - (f_y(x) - f_y(x'))| / |f_y(x) - f_y(x')| says how
    far from that limit a step count is. A student trained to shape its input gradients can bend the path
    so much that 32 steps leave gaps of 5-60 % (docs/results/2026-12-06-ig-convergence.md).

    Args:
        model: the classifier the scores were computed on.
        tokenizer: its fast tokenizer.
        sentences: N sentences, each a list of words.
        labels: (N,) the class each sentence's scores are for.
        scores: per sentence, its word scores from :func:`ig_prior` with these labels and ``max_length``.
        batch_size: sentences per forward pass.
        max_length: tokens per sentence, as for the scores.

    Returns:
        (N,) float64 gaps; NaN where f_y(x) = f_y(x').
    """
    labels = torch.as_tensor(labels)
    if not len(labels) == len(scores) == len(sentences):
        raise ValueError(f"completeness_gaps: {len(sentences)} sentences, {len(labels)} labels, {len(scores)} score rows")
    device = next(model.parameters()).device
    difference = np.zeros(len(sentences))
    with torch.no_grad(), eval_mode(model):  # dropout off, as for the scores
        for rows in length_batches(sentences, batch_size=batch_size):
            encoding, word_index = encode_words(tokenizer, [sentences[i] for i in rows], max_length=max_length, device=device)
            baseline = pad_baseline(input_ids=encoding["input_ids"], word_index=word_index, pad_token_id=tokenizer.pad_token_id)
            logits = [model(input_ids=ids, attention_mask=encoding["attention_mask"]).logits
                      for ids in (encoding["input_ids"], baseline)]
            target = labels[torch.from_numpy(rows)].to(device)[:, None]
            difference[rows] = (logits[0].gather(1, target) - logits[1].gather(1, target)).squeeze(1).double().cpu().numpy()
    totals = np.array([float(np.sum(row)) for row in scores])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(difference != 0, np.abs(totals - difference) / np.abs(difference), np.nan)


def checkpoint_ig(folder: Path, sentences: pl.DataFrame, *, params: Params) -> list[np.ndarray]:
    """:func:`ig_prior` of each sentence's true label under a trained student checkpoint.

    Args:
        folder: a checkpoint written by the train stage (its config maps label names to ids).
        sentences: text and label columns.
        params: ``priors.ig`` (steps, internal batch size), ``student.max_length`` and ``device``.

    Returns:
        Per sentence, float64 scores of shape (n_words,).
    """
    model, tokenizer = load_trained_student(folder, device=resolve_device(params.device))
    return ig_prior(model, tokenizer, sentences=[text.split() for text in sentences["text"]],
                    labels=torch.tensor([model.config.label2id[label] for label in sentences["label"]]),
                    steps=params.priors.ig.steps, internal_batch_size=params.priors.ig.internal_batch_size,
                    max_length=params.student.max_length)


def checkpoint_ig_priors(folder: Path, sentences: pl.DataFrame, *, params: Params) -> pl.DataFrame:
    """:func:`checkpoint_ig` of ``sentences`` in the priors contract (id, whitespace words, scores).

    Args:
        folder: a checkpoint written by the train stage.
        sentences: id, text and label columns.
        params: as for :func:`checkpoint_ig`.

    Returns:
        one row per sentence, in order.
    """
    scores = checkpoint_ig(folder, sentences, params=params)
    return priors_frame(sentences["id"].to_list(), [text.split() for text in sentences["text"]], scores)
