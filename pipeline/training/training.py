"""The student training loop, shared by every objective, and batched prediction.

One loop for CPU and CUDA: AdamW, linear warm-up then linear decay, gradient clipping (the whole
gradient, or the cross-entropy's and the other terms' each on their own: ``_step_gradients``, which
can also measure both norms), bfloat16 autocast on CUDA only. ``seed`` fixes the shuffling (a private
``torch.Generator``) and every dropout mask (``set_seed``); the classifier head is seeded where it
is drawn (``pipeline.models.load_student``). The objective (``pipeline.training.objectives``) says what the
batches carry, which extra modules train beside the classifier and which phases each step runs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from pipeline.attribution.attribution import encode_words
from pipeline.errors import DataError
from pipeline.io import atomic_write
from pipeline.progress import progress
from pipeline.training.objectives.base import Batch, Objective, Task

MODULES_FILE = "modules.pt"  # the extra modules' state dicts, beside a checkpoint that has any
_LOG_SCHEMA = {
    "step": pl.Int64, "epoch": pl.Int64, "lr": pl.Float64, "loss": pl.Float64, "ce": pl.Float64, "align": pl.Float64,
    "grad_norm": pl.Float64, "grad_norm_ce": pl.Float64, "grad_norm_rest": pl.Float64,
}
Clip = Literal["total", "per_term", "none"]
CURVE_COLUMNS = ("step", "loss", "ce", "align")  # the training log's columns that dvc.yaml plots by step, first


class Example(NamedTuple):
    """One training sentence.

    Attributes:
        words: its whitespace words.
        label: the class id.
        prior: (len(words),) scores for objectives that need a prior, else None.
        columns: the values of the extra columns the objective declared (e.g. ``{"category": "books"}``).
    """

    words: list[str]
    label: int
    prior: np.ndarray | None = None
    columns: Mapping[str, str] | None = None


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
    objective: Objective,
    task: Task,
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
    gradient_split: bool = True,
) -> tuple[PreTrainedModel, pl.DataFrame, dict[str, nn.Module]]:
    """Fine-tune a sequence classifier with ``objective``'s loss.

    Every step runs the objective's phases in order on the same batch; each phase freezes all but
    what it updates, runs the classifier's forward, back-propagates the objective's loss and steps
    the optimisers of what it updates (one AdamW per module, each on the same warm-up and decay
    counted in its own steps, so a module whose phase starts late warms up when it starts).

    Args:
        model: the student (``load_student``); trained in place.
        tokenizer: its fast tokenizer.
        train: N examples; ``prior`` is used when ``objective.needs_prior``, ``columns`` must hold
            every column in ``objective.columns``.
        objective: the objective (``pipeline.training.objectives.get_objective``).
        task: the label count and extra columns' values the objective's modules are sized by.
        epochs: passes over ``train``, each in a fresh seeded order.
        lr: peak learning rate.
        batch_size: examples per step (the last batch of an epoch may be smaller).
        warmup_fraction: share of all steps spent warming up linearly from 0, in [0, 1).
        seed: seeds shuffling, dropout and the objective's modules.
        device: "cpu", "cuda", ...
        max_length: tokens per sentence; later words are dropped from the loss.
        max_grad_norm: the gradient clipping threshold.
        clip: ``"total"`` clips the whole gradient of a phase to ``max_grad_norm`` (one global clip,
            as ``clip_grad_norm_``); ``"per_term"`` clips the cross-entropy gradient and the rest of
            the loss's gradient (beta x alignment, ...) each on its own before adding them, so a
            large alignment gradient cannot shrink the cross-entropy step; ``"none"`` does not clip.
        log_every: log one row every this many steps.
        gradient_split: measure the norms of the cross-entropy's gradient and the rest's on their own
            every step: one extra cross-entropy backward per step (~25 % of a guided step on CPU).
            ``clip="per_term"`` measures them anyway; off, both are NaN where the loss has more terms.

    Returns:
        (model in eval mode, log, extra modules by name in eval mode). The log has one row per
        logged step: step (1-based), epoch (0-based), lr (the rate used by that step), loss, ce,
        grad_norm, grad_norm_ce and grad_norm_rest (the L2 norms of the gradients of loss, ce and
        loss - ce, before clipping) of the step's last phase, align (NaN for objectives that do not log it)
        and every further term the objective logs.
    """
    _check_examples(train, objective=objective)
    if epochs < 1 or batch_size < 1 or log_every < 1 or lr <= 0 or not 0 <= warmup_fraction < 1:
        raise ValueError(
            f"train_student: need epochs, batch_size, log_every >= 1, lr > 0, 0 <= warmup_fraction < 1; got "
            f"{epochs}, {batch_size}, {log_every}, {lr}, {warmup_fraction}"
        )
    set_seed(seed)
    device = torch.device(device)
    model.to(device).train()
    extras = objective.modules(model=model, task=task)
    idle = sorted(set(extras) - {name for phase in objective.phases for name in phase.updates})
    if idle:
        raise ValueError(f"{type(objective).__name__}: module {idle[0]!r} is updated by none of its phases")
    modules = {name: extra.module.to(device).train() for name, extra in extras.items()}
    trained = {"model": model, **modules}
    optimizers = {  # fused: one kernel, 4x faster on CPU
        name: torch.optim.AdamW(module.parameters(), lr=lr if name == "model" or extras[name].lr is None else extras[name].lr,
                                fused=True)
        for name, module in trained.items()
    }
    total = epochs * math.ceil(len(train) / batch_size)
    schedules = {name: get_linear_schedule_with_warmup(o, int(warmup_fraction * total), total) for name, o in optimizers.items()}
    stepped: set[str] = set()
    order = torch.Generator().manual_seed(seed)
    rows: list[dict[str, float]] = []
    step = 0
    with progress(total=total, desc=f"training ({epochs} epochs of {len(train)} sentences)", unit="steps") as update:
        for epoch in range(epochs):
            for indices in torch.randperm(len(train), generator=order).split(batch_size):
                batch = _collate([train[i] for i in indices.tolist()], tokenizer, objective=objective, task=task,
                                 max_length=max_length, device=device)
                rate = schedules["model"].get_last_lr()[0]
                parts: dict[str, float] = {}
                for phase in objective.phases:
                    if epoch < phase.start_epoch:
                        continue
                    parameters = _unfreeze_only(trained, phase.updates)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
                        ce = F.cross_entropy(logits.float(), batch.labels)
                        loss, terms = objective.loss(model=model, modules=modules, batch=batch, logits=logits, ce=ce,
                                                     phase=phase.name, epoch=epoch)
                    norms = _step_gradients(parameters, ce=ce, loss=loss, clip=clip, max_norm=max_grad_norm,
                                            split=gradient_split)
                    for name in phase.updates:
                        optimizers[name].step()
                        stepped.add(name)
                    parts |= terms
                _unfreeze_only(trained, tuple(trained))
                for name in stepped:
                    schedules[name].step()
                stepped.clear()
                step += 1
                update(1)
                if step % log_every == 0:
                    rows.append({"step": step, "epoch": epoch, "lr": rate, "loss": loss.item(), "ce": ce.item(),
                                 "align": math.nan, **norms._asdict(), **parts})
    extra = {key: pl.Float64 for row in rows for key in row if key not in _LOG_SCHEMA}
    return model.eval(), pl.DataFrame(rows, schema=_LOG_SCHEMA | extra), {name: m.eval() for name, m in modules.items()}


def _unfreeze_only(trained: Mapping[str, nn.Module], names: tuple[str, ...]) -> list[nn.Parameter]:
    """Let only the modules in ``names`` take gradients; return their parameters."""
    unknown = sorted(set(names) - set(trained))
    if unknown:
        raise ValueError(f"a phase updates {unknown[0]!r}, which is neither 'model' nor one of the objective's modules")
    for name, module in trained.items():
        module.requires_grad_(name in names)
    return [p for name in names for p in trained[name].parameters()]


class GradientNorms(NamedTuple):
    """L2 norms of one phase's gradients before clipping, as the training log names them."""

    grad_norm: float  # of the loss
    grad_norm_ce: float  # of the cross-entropy (NaN: not measured)
    grad_norm_rest: float  # of loss - ce, every other term (NaN: not measured)


def _step_gradients(parameters: list[nn.Parameter], *, ce: Tensor, loss: Tensor, clip: Clip, max_norm: float,
                    split: bool = True) -> GradientNorms:
    """Write the clipped gradient of ``loss`` into the ``.grad`` of ``parameters``; return its norms.

    The split into d ce and d (loss - ce) costs one extra cross-entropy backward (d ce first, its
    graph kept, then d loss; the rest is their difference): it is taken where ``clip="per_term"``
    needs it or ``split`` asks for it. It is free where the loss is the cross-entropy (the rest is
    0) and in a phase where ce does not depend on ``parameters`` (a frozen classifier: d ce is 0).
    """

    def grads(value: Tensor, *, retain: bool = False) -> list[Tensor]:
        found = torch.autograd.grad(value, parameters, retain_graph=retain, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(parameters, found)]

    def norm(tensors: list[Tensor]) -> float:
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors])).item()

    def scaled(tensors: list[Tensor], size: float) -> list[Tensor]:
        scale = 1.0 if clip == "none" else min(1.0, max_norm / (size + 1e-6))
        return [t * scale for t in tensors]

    if ce.requires_grad and loss is not ce and (split or clip == "per_term"):
        grad_ce = grads(ce, retain=True)
        grad_total = grads(loss)
        grad_rest = [t - c for t, c in zip(grad_total, grad_ce)]
        norms = GradientNorms(norm(grad_total), norm(grad_ce), norm(grad_rest))
        clipped = ([c + r for c, r in zip(scaled(grad_ce, norms.grad_norm_ce), scaled(grad_rest, norms.grad_norm_rest))]
                   if clip == "per_term" else scaled(grad_total, norms.grad_norm))
    else:
        grad_total = grads(loss)
        total = norm(grad_total)
        if not ce.requires_grad:  # a phase that does not update the classifier's inputs to ce: everything is "rest"
            norms = GradientNorms(total, 0.0, total)
        elif loss is ce:
            norms = GradientNorms(total, total, 0.0)
        else:
            norms = GradientNorms(total, math.nan, math.nan)
        clipped = scaled(grad_total, total)  # per_term with one term is the total clip
    for p, g in zip(parameters, clipped):
        p.grad = g
    return norms


def write_training_curve(log: pl.DataFrame, path: str | Path) -> None:
    """Write the training log's loss, CE and alignment by step, then the objective's own logged terms, to the
    CSV ``path`` (a DVC plot), atomically."""
    terms = [c for c in log.columns if c not in _LOG_SCHEMA]
    with atomic_write(path) as tmp:
        log.select(*CURVE_COLUMNS, *terms).write_csv(tmp, float_precision=6)


def _collate(
    examples: Sequence[Example],
    tokenizer: PreTrainedTokenizerBase,
    *,
    objective: Objective,
    task: Task,
    max_length: int,
    device: torch.device,
) -> Batch:
    words = [e.words for e in examples]
    encoding, word_index = encode_words(tokenizer, words, max_length=max_length, device=device)
    prior = None
    if objective.needs_prior:
        prior = torch.zeros(len(examples), max(len(w) for w in words), dtype=torch.float32)
        for row, example in enumerate(examples):
            prior[row, : len(example.words)] = torch.from_numpy(np.asarray(example.prior, dtype=np.float32))
        prior = prior.to(device)
    columns = {
        name: torch.tensor([task.column_values[name].index(e.columns[name]) for e in examples], device=device)
        for name in objective.columns
    }
    return Batch(
        input_ids=encoding["input_ids"],
        attention_mask=encoding["attention_mask"],
        labels=torch.tensor([e.label for e in examples], device=device),
        word_index=word_index,
        words=words,
        prior=prior,
        columns=columns,
    )


def _check_examples(train: Sequence[Example], *, objective: Objective) -> None:
    if not train:
        raise DataError("train_student: no training examples")
    for i, example in enumerate(train):
        if not example.words:
            raise DataError(f"training example {i}: no words")
        if objective.needs_prior:
            prior = example.prior
            if prior is None or len(prior) != len(example.words):
                got = "no prior" if prior is None else f"a prior of {len(prior)} scores"
                raise DataError(
                    f"training example {i}: objective {type(objective).__name__} needs one prior score per word "
                    f"({len(example.words)}), got {got}"
                )
            if not np.all(np.isfinite(prior)):
                raise DataError(f"training example {i}: non-finite prior score")
        missing = [name for name in objective.columns if not example.columns or name not in example.columns]
        if missing:
            raise DataError(f"training example {i}: no value for column {missing[0]!r}, which the objective needs")
