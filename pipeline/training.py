"""The student training loop, shared by every method, and batched prediction.

One loop for CPU and CUDA: AdamW, linear warm-up then linear decay, gradient clipping (the whole
gradient, or the cross-entropy's and the other terms' each on their own: ``_step_gradients``, which
also measures both norms), bfloat16 autocast on CUDA only. ``seed`` fixes the shuffling (a private ``torch.Generator``) and
every dropout mask (``set_seed``); the classifier head is seeded where it is drawn
(``pipeline.models.load_student``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from pipeline.attribution import encode_words
from pipeline.errors import DataError
from pipeline.io import atomic_write
from pipeline.methods import Batch, Method

Example = tuple[list[str], int, np.ndarray | None]
_LOG_SCHEMA = {
    "step": pl.Int64, "epoch": pl.Int64, "lr": pl.Float64, "loss": pl.Float64, "ce": pl.Float64, "align": pl.Float64,
    "grad_norm_ce": pl.Float64, "grad_norm_rest": pl.Float64,
}
Clip = Literal["total", "per_term", "none"]
CURVE_COLUMNS = ("step", "loss", "ce", "align")  # the training log's columns that dvc.yaml plots by step


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_student(
    *,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train: Sequence[Example],
    method: Method,
    epochs: int,
    lr: float,
    batch_size: int,
    warmup_fraction: float,
    seed: int,
    device: str | torch.device,
    max_length: int = 128,
    max_grad_norm: float = 1.0,
    clip: Clip = "total",
    log_every: int = 1,
) -> tuple[PreTrainedModel, pl.DataFrame]:
    """Fine-tune a sequence classifier with ``method``'s loss.

    Args:
        model: the student (``load_student``); trained in place.
        tokenizer: its fast tokenizer.
        train: N examples ``(words, label_id, prior)``; ``prior`` is a (len(words),) score array
            when ``method.needs_prior`` is set and is ignored otherwise.
        method: the objective (``pipeline.methods.get_method``).
        epochs: passes over ``train``, each in a fresh seeded order.
        lr: peak learning rate.
        batch_size: examples per step (the last batch of an epoch may be smaller).
        warmup_fraction: share of all steps spent warming up linearly from 0, in [0, 1).
        seed: seeds shuffling and dropout.
        device: "cpu", "cuda", ...
        max_length: tokens per sentence; later words are dropped from the loss.
        max_grad_norm: the gradient clipping threshold.
        clip: ``"total"`` clips the whole gradient to ``max_grad_norm`` (one global clip, as
            ``clip_grad_norm_``); ``"per_term"`` clips the cross-entropy gradient and the rest of the
            loss's gradient (beta x alignment, ...) each on its own before adding them, so a large
            alignment gradient cannot shrink the cross-entropy step; ``"none"`` does not clip.
        log_every: log one row every this many steps.

    Returns:
        (model in eval mode, log) with one row per logged step: step (1-based), epoch (0-based),
        lr (the rate used by that step), loss, ce, align (NaN for methods without an alignment
        term), grad_norm_ce and grad_norm_rest (the L2 norms of the gradients of ce and of
        loss - ce, before clipping) and any further terms the method reports.
    """
    _check_examples(train, with_prior=method.needs_prior is not None, name=method.name)
    if epochs < 1 or batch_size < 1 or log_every < 1 or lr <= 0 or not 0 <= warmup_fraction < 1:
        raise ValueError(
            f"train_student: need epochs, batch_size, log_every >= 1, lr > 0, 0 <= warmup_fraction < 1; got "
            f"{epochs}, {batch_size}, {log_every}, {lr}, {warmup_fraction}"
        )
    set_seed(seed)
    device = torch.device(device)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)  # one kernel: 4x faster on CPU
    total = epochs * math.ceil(len(train) / batch_size)
    schedule = get_linear_schedule_with_warmup(optimizer, int(warmup_fraction * total), total)
    order = torch.Generator().manual_seed(seed)
    rows: list[dict[str, float]] = []
    step = 0
    for epoch in range(epochs):
        for indices in torch.randperm(len(train), generator=order).split(batch_size):
            examples = [train[i] for i in indices.tolist()]
            batch = _collate(examples, tokenizer, with_prior=method.needs_prior is not None, max_length=max_length, device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
                ce = F.cross_entropy(logits.float(), batch.labels)
                loss, parts = method.loss(model=model, batch=batch, logits=logits, ce=ce)
            norm_ce, norm_rest = _step_gradients(model, ce=ce, loss=loss, clip=clip, max_norm=max_grad_norm)
            rate = schedule.get_last_lr()[0]
            optimizer.step()
            schedule.step()
            step += 1
            if step % log_every == 0:
                rows.append({"step": step, "epoch": epoch, "lr": rate, "loss": loss.item(), "ce": ce.item(), "align": math.nan,
                             "grad_norm_ce": norm_ce, "grad_norm_rest": norm_rest, **parts})
    extra = {key: pl.Float64 for key in (rows[0] if rows else {}) if key not in _LOG_SCHEMA}
    return model.eval(), pl.DataFrame(rows, schema=_LOG_SCHEMA | extra)


def _step_gradients(model: PreTrainedModel, *, ce: Tensor, loss: Tensor, clip: Clip, max_norm: float) -> tuple[float, float]:
    """Write the clipped gradient of ``loss`` into ``.grad``; return the norms of d ce and d (loss - ce).

    The cross-entropy gradient is taken first (its graph kept), then ``loss``'s; their difference is
    the gradient of every other term, so the split costs one extra cross-entropy backward.
    """
    parameters = [p for p in model.parameters() if p.requires_grad]

    def grads(value: Tensor, *, retain: bool) -> list[Tensor]:
        found = torch.autograd.grad(value, parameters, retain_graph=retain, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(parameters, found)]

    def norm(tensors: list[Tensor]) -> float:
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors])).item()

    split = loss is not ce  # more terms than the cross-entropy: take its gradient on its own first
    grad_ce = grads(ce, retain=True) if split else None
    grad_total = grads(loss, retain=False)
    if not split:  # cross-entropy only: its gradient is the whole gradient
        grad_ce, grad_rest = grad_total, []
    else:
        grad_rest = [t - c for t, c in zip(grad_total, grad_ce)]
    norm_ce, norm_rest = norm(grad_ce), (norm(grad_rest) if split else 0.0)
    if clip == "per_term" and split:
        scale_ce, scale_rest = (min(1.0, max_norm / (n + 1e-6)) for n in (norm_ce, norm_rest))
        clipped = [c * scale_ce + r * scale_rest for c, r in zip(grad_ce, grad_rest)]
    else:  # as torch.nn.utils.clip_grad_norm_ on the whole gradient
        total = norm(grad_total) if split else norm_ce
        scale = 1.0 if clip == "none" else min(1.0, max_norm / (total + 1e-6))
        clipped = [g * scale for g in grad_total]
    for p, g in zip(parameters, clipped):
        p.grad = g
    return norm_ce, norm_rest


def write_training_curve(log: pl.DataFrame, path: str | Path) -> None:
    """Write the training log's loss, CE and alignment by step to the CSV ``path`` (a DVC plot), atomically."""
    with atomic_write(path) as tmp:
        log.select(CURVE_COLUMNS).write_csv(tmp, float_precision=6)


@torch.no_grad()
def predict_proba(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sentences: Sequence[Sequence[str]],
    *,
    batch_size: int,
    device: str | torch.device,
    max_length: int = 128,
) -> np.ndarray:
    """Class probabilities for pre-split sentences, in float32 on every device (no autocast):
    small probability differences feed the faithfulness metrics.

    Args:
        model: a sequence classifier (put in eval mode, restored afterwards).
        tokenizer: its fast tokenizer.
        sentences: N sentences, each a list of words.
        batch_size: sentences per forward pass.
        device: where to run.
        max_length: tokens per sentence.

    Returns:
        (N, C) float64 probabilities.
    """
    was_training = model.training
    model.to(device).eval()
    out = []
    for start in range(0, len(sentences), batch_size):
        encoding, _ = encode_words(tokenizer, sentences[start : start + batch_size], max_length=max_length, device=device)
        logits = model(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"]).logits
        out.append(logits.float().softmax(-1).cpu().double().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, model.config.num_labels))


def _collate(
    examples: Sequence[Example],
    tokenizer: PreTrainedTokenizerBase,
    *,
    with_prior: bool,
    max_length: int,
    device: torch.device,
) -> Batch:
    words = [e[0] for e in examples]
    encoding, word_index = encode_words(tokenizer, words, max_length=max_length, device=device)
    prior = None
    if with_prior:
        prior = torch.zeros(len(examples), max(len(w) for w in words), dtype=torch.float32)
        for row, (w, _, scores) in enumerate(examples):
            prior[row, : len(w)] = torch.from_numpy(np.asarray(scores, dtype=np.float32))
        prior = prior.to(device)
    return Batch(
        input_ids=encoding["input_ids"],
        attention_mask=encoding["attention_mask"],
        labels=torch.tensor([e[1] for e in examples], device=device),
        word_index=word_index,
        prior=prior,
    )


def _check_examples(train: Sequence[Example], *, with_prior: bool, name: str) -> None:
    if not train:
        raise DataError("train_student: no training examples")
    for i, (words, _, prior) in enumerate(train):
        if not words:
            raise DataError(f"training example {i}: no words")
        if with_prior:
            if prior is None or len(prior) != len(words):
                got = "no prior" if prior is None else f"a prior of {len(prior)} scores"
                raise DataError(f"training example {i}: method {name} needs one prior score per word ({len(words)}), got {got}")
            if not np.all(np.isfinite(prior)):
                raise DataError(f"training example {i}: non-finite prior score")
