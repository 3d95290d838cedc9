"""ALIGN: a masker and a classifier trained in turn (SIBLINGS.md §4, text form).

The masker (a three-layer 1-D convolution over the detached word embeddings, sigmoid output)
gives each token a keep weight M in (0, 1); special and padding tokens keep M = 1. A masked input
interpolates every word token towards the pad baseline that IG uses:
x ⊙ M = M e + (1 - M) e_pad (``masked_embeddings``; special tokens are their own baseline).

- Masker phase (classifier frozen, dropout off): with f_y the softmax probability of the gold label,
  L_M = (f_y(x ⊙ M) - f_y(x ⊙ (1 - M)) - 1)^2 + lambda1 mean_R M + lambda2 mean_t |M_t - M_t+1|.
- Classifier phase (masker frozen): L_C = CE + lambda3 BCE(s, M) + lambda4 L_mix, s = the
  classifier's text Grad-CAM of y (``pipeline.gradcam``, eval mode) clamped into (0, 1), M
  detached, L_mix = embedding mixup with a Beta(alpha, alpha) weight.
- Warm-up: the first ``warmup_epochs`` epochs train CE + lambda4 L_mix only; the masker waits.
- ``align-fixed`` (ablation): the classifier phase with a fixed mask, 1 on tokens of
  non-stop words (scikit-learn's English list), 0 on tokens of stop words; no masker.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel

from pipeline.attribution import pad_baseline
from pipeline.errors import ConfigError
from pipeline.gradcam import hidden_and_pooled, sequence_head, text_grad_cam
from pipeline.models import eval_mode
from pipeline.objectives.base import Batch, ExtraModule, Objective, Phase, Task


class Masker(nn.Module):
    """Three 1-D convolutions (kernel 3, same length) with ReLU between, sigmoid output.

    Args:
        embedding_dim: D, the word-embedding width.
        width: channels of the two hidden layers.
    """

    def __init__(self, *, embedding_dim: int, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(embedding_dim, width, 3, padding=1), nn.ReLU(),
            nn.Conv1d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv1d(width, 1, 3, padding=1),
        )

    def forward(self, embeds: Tensor, *, attention_mask: Tensor, real: Tensor) -> Tensor:
        """The soft mask.

        Args:
            embeds: (B, T, D) word embeddings (detached by the caller: the masker does not train them).
            attention_mask: (B, T); padding is zeroed before the convolutions, as beyond the ends.
            real: (B, T) bool, the word tokens; every other token gets M = 1.

        Returns:
            M, (B, T) in (0, 1) on real tokens, exactly 1 elsewhere.
        """
        inputs = (embeds * attention_mask.unsqueeze(-1).to(embeds.dtype)).transpose(1, 2)
        soft = torch.sigmoid(self.net(inputs).squeeze(1))
        return torch.where(real, soft, torch.ones_like(soft))


def masked_embeddings(*, embeds: Tensor, baseline: Tensor, mask: Tensor) -> Tensor:
    """x ⊙ M = M e + (1 - M) e_pad per token.

    Args:
        embeds: (B, T, D) word embeddings of the input.
        baseline: (B, T, D) word embeddings of its pad baseline (``pad_baseline``).
        mask: (B, T) M; ``1 - mask`` gives the complement x ⊙ (1 - M).

    Returns:
        (B, T, D): the input at M = 1, the pad baseline at M = 0.
    """
    keep = mask.unsqueeze(-1).to(embeds.dtype)
    return keep * embeds + (1 - keep) * baseline


def word_embeddings(model: PreTrainedModel, *, input_ids: Tensor, word_index: Tensor) -> tuple[Tensor, Tensor]:
    """The word embeddings of the input and of its pad baseline, (B, T, D) each, in one lookup."""
    baseline_ids = pad_baseline(input_ids=input_ids, word_index=word_index, pad_token_id=model.config.pad_token_id)
    embeds, baseline = model.get_input_embeddings()(torch.stack([input_ids, baseline_ids]))
    return embeds, baseline


def contrast(model: PreTrainedModel, *, embeds: Tensor, baseline: Tensor, mask: Tensor, attention_mask: Tensor,
             labels: Tensor) -> Tensor:
    """The masker's first term, mean over the batch of (f_y(x ⊙ M) - f_y(x ⊙ (1 - M)) - 1)^2.

    Both masked inputs go through ``model`` in one pass, in whatever mode it is in.

    Args:
        model: the classifier (accepts ``inputs_embeds``).
        embeds, baseline: (B, T, D) from ``word_embeddings``.
        mask: (B, T) M.
        attention_mask: (B, T).
        labels: (B,) y.

    Returns:
        A scalar: 0 when the kept part gives y probability 1 and its complement 0.
    """
    both = torch.cat([masked_embeddings(embeds=embeds, baseline=baseline, mask=m) for m in (mask, 1 - mask)])
    logits = model(inputs_embeds=both, attention_mask=attention_mask.repeat(2, 1)).logits
    kept, removed = logits.float().softmax(-1).gather(1, labels.repeat(2).unsqueeze(1)).squeeze(1).chunk(2)
    return ((kept - removed - 1) ** 2).mean()


def sparsity(mask: Tensor, *, real: Tensor) -> Tensor:
    """mean_R M per sentence, averaged over the batch (the L1 term; M >= 0)."""
    return ((mask * real).sum(1) / real.sum(1).clamp(min=1)).mean()


def total_variation(mask: Tensor, *, real: Tensor) -> Tensor:
    """mean_t |M_t - M_t+1| over neighbouring real tokens per sentence, averaged over the batch.

    Pairs that touch a special or padding token (fixed at M = 1) are left out, so the term does
    not push the sentence's first and last words towards 1.
    """
    pairs = real[:, 1:] & real[:, :-1]
    steps = (mask[:, 1:] - mask[:, :-1]).abs() * pairs
    return (steps.sum(1) / pairs.sum(1).clamp(min=1)).mean()


def alignment(saliency: Tensor, mask: Tensor, *, real: Tensor) -> Tensor:
    """BCE(s, M) over the real tokens of each sentence, averaged over the batch.

    Args:
        saliency: (B, T) s in [0, 1] (clamped here into (0, 1) so the log stays finite).
        mask: (B, T) M, the target (detached by the caller).
        real: (B, T) bool.
    """
    eps = 1e-6
    s, m = saliency.float().clamp(eps, 1 - eps), mask.float()
    # written out: F.binary_cross_entropy refuses to run under CUDA autocast (the bf16 training loop)
    per_token = -(m * s.log() + (1 - m) * (1 - s).log())
    return ((per_token * real).sum(1) / real.sum(1).clamp(min=1)).mean()


def mixup(model: PreTrainedModel, *, embeds: Tensor, attention_mask: Tensor, labels: Tensor, weight: float,
          order: Tensor) -> Tensor:
    """Embedding mixup: w CE(f(E_mix), y) + (1 - w) CE(f(E_mix), y[order]), E_mix = w E + (1 - w) E[order].

    Args:
        model: the classifier (its mode decides dropout).
        embeds: (B, T, D) word embeddings of the batch.
        attention_mask: (B, T); the mixed sentence attends to the tokens of either.
        labels: (B,).
        weight: w, drawn from Beta(alpha, alpha) by the caller.
        order: (B,) the partner of each sentence (a permutation).

    Returns:
        The scalar loss.
    """
    mixed = weight * embeds + (1 - weight) * embeds[order]
    logits = model(inputs_embeds=mixed, attention_mask=torch.maximum(attention_mask, attention_mask[order])).logits.float()
    return weight * F.cross_entropy(logits, labels) + (1 - weight) * F.cross_entropy(logits, labels[order])


def stopword_mask(*, words: Sequence[Sequence[str]], word_index: Tensor) -> Tensor:
    """The fixed mask of ``align-fixed``: 0 on tokens of English stop words, 1 on every other token.

    A word is looked up lower-cased with its surrounding punctuation stripped ("The," is "the").

    Args:
        words: B sentences, each its list of whitespace words.
        word_index: (B, T) word of each token, -1 for special and padding tokens (which get 1).

    Returns:
        (B, T) float mask on ``word_index``'s device.
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    width = max(len(w) for w in words)
    content = torch.ones(len(words), width + 1)  # the extra last column answers word_index = -1
    for row, sentence in enumerate(words):
        for column, word in enumerate(sentence):
            content[row, column] = float(word.lower().strip(string.punctuation) not in ENGLISH_STOP_WORDS)
    index = torch.where(word_index >= 0, word_index, width)
    return content.to(word_index.device).gather(1, index)


@dataclass(frozen=True)
class Align(Objective):
    """ALIGN: a masker phase (from ``warmup_epochs`` on) then a classifier phase every step.

    Attributes:
        lambda1: weight of the mask's L1 (mean_R M).
        lambda2: weight of its total variation.
        lambda3: weight of BCE(s, M) in the classifier phase.
        lambda4: weight of the mixup loss.
        alpha: the mixup weight's Beta(alpha, alpha).
        warmup_epochs: epochs of CE + mixup only before the masker starts.
        masker_lr: the masker's learning rate.
        masker_width: channels of the masker's hidden layers.
        fixed_mask: ``align-fixed``: no masker (lambda1, lambda2 and the masker's settings unused);
            the stop-word mask is the target.
    """

    display = "ALIGN"
    lambda1: float = 0.2
    lambda2: float = 0.1
    lambda3: float = 1.0
    lambda4: float = 1.0
    alpha: float = 0.4
    warmup_epochs: int = 1
    masker_lr: float = 1e-3
    masker_width: int = 64
    fixed_mask: bool = False

    def __post_init__(self) -> None:
        self._check_non_negative("lambda1", "lambda2", "lambda3", "lambda4", "warmup_epochs")
        for name in ("alpha", "masker_lr", "masker_width"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"align: {name} must be > 0, got {getattr(self, name)}")

    @property
    def phases(self) -> tuple[Phase, ...]:
        classifier = Phase("classifier", updates=("model",))
        if self.fixed_mask:
            return (classifier,)
        return Phase("masker", updates=("masker",), start_epoch=self.warmup_epochs), classifier

    def modules(self, *, model: PreTrainedModel, task: Task) -> dict[str, ExtraModule]:
        if self.fixed_mask:
            return {}
        masker = Masker(embedding_dim=model.get_input_embeddings().embedding_dim, width=self.masker_width)
        return {"masker": ExtraModule(masker, lr=self.masker_lr)}

    def loss(
        self, *, model: PreTrainedModel, modules: Mapping[str, nn.Module], batch: Batch, logits: Tensor, ce: Tensor,
        phase: str, epoch: int,
    ) -> tuple[Tensor, dict[str, float]]:
        if phase == "masker":
            return self._masker_loss(model=model, masker=modules["masker"], batch=batch)
        if self.fixed_mask:
            mask = stopword_mask(words=batch.words, word_index=batch.word_index)
        else:
            with torch.no_grad():
                embeds, _ = word_embeddings(model, input_ids=batch.input_ids, word_index=batch.word_index)
                mask = modules["masker"](embeds, attention_mask=batch.attention_mask, real=batch.word_index >= 0)
        return self._classifier_loss(model=model, mask=mask, batch=batch, ce=ce, warm_up=epoch < self.warmup_epochs)

    def _masker_loss(self, *, model: PreTrainedModel, masker: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """L_M, with the classifier in eval mode (a fixed function for the masker to explain)."""
        real = batch.word_index >= 0
        embeds, baseline = (e.detach() for e in word_embeddings(model, input_ids=batch.input_ids, word_index=batch.word_index))
        mask = masker(embeds, attention_mask=batch.attention_mask, real=real)
        with eval_mode(model):
            gap = contrast(model, embeds=embeds, baseline=baseline, mask=mask, attention_mask=batch.attention_mask,
                           labels=batch.labels)
        l1, tv = sparsity(mask, real=real), total_variation(mask, real=real)
        loss = gap + self.lambda1 * l1 + self.lambda2 * tv
        return loss, {"masker_contrast": gap.item(), "masker_l1": l1.item(), "masker_tv": tv.item(), "masker_loss": loss.item()}

    def _classifier_loss(
        self, *, model: PreTrainedModel, mask: Tensor, batch: Batch, ce: Tensor, warm_up: bool
    ) -> tuple[Tensor, dict[str, float]]:
        """L_C = CE + lambda3 BCE(s, M) + lambda4 L_mix, the BCE left out while ``warm_up``; mask_mean = mean_R M."""
        real = batch.word_index >= 0
        embeds = model.get_input_embeddings()(batch.input_ids)
        weight = torch.distributions.Beta(self.alpha, self.alpha).sample().item()
        order = torch.randperm(len(batch.labels), device=batch.labels.device)
        mixed = mixup(model, embeds=embeds, attention_mask=batch.attention_mask, labels=batch.labels, weight=weight, order=order)
        loss, bce = ce + self.lambda4 * mixed, torch.tensor(float("nan"))
        if not warm_up:
            with eval_mode(model):
                hidden, pooled = hidden_and_pooled(model, input_ids=batch.input_ids, attention_mask=batch.attention_mask)
                saliency = text_grad_cam(hidden=hidden, scores=sequence_head(model).out(pooled), target=batch.labels,
                                         attention_mask=batch.attention_mask, real=real, create_graph=True)
            bce = alignment(saliency, mask.detach(), real=real)
            loss = loss + self.lambda3 * bce
        return loss, {"mask_mean": sparsity(mask, real=real).item(), "mix": mixed.item(), "bce": bce.item()}


@dataclass(frozen=True)
class AlignFixed(Align):
    """The ablation ``align-fixed``: the classifier phase towards the stop-word mask, no masker; its own class
    so that reports name it apart."""

    display = "ALIGN (fixed mask)"
    fixed_mask: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.fixed_mask:
            raise ConfigError("align-fixed: fixed_mask is true by definition; use align for a learned mask")
