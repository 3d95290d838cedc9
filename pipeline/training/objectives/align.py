"""ALIGN: a masker and a classifier trained in turn (SIBLINGS.md §4, text form).

The masker (a three-layer 1-D convolution over the detached, per-token standardised word
embeddings) scores each token; its keep weight M in (0, 1) is a soft top-rho selection of the
scores (``keep_rate`` rho, ``temperature`` tau): M = sigmoid((z - q) / tau), z = the scores
standardised over the sentence's real tokens, q = their (1 - rho)-quantile (detached). Special and
padding tokens keep M = 1. A masked input interpolates every word token towards the pad baseline
that IG uses: x ⊙ M = M e + (1 - M) e_pad (``masked_embeddings``; special tokens are their own baseline).

- Masker phase (classifier frozen, dropout off): with f_y the softmax probability of the gold label,
  L_M = (f_y(x ⊙ M) - f_y(x ⊙ (1 - M)) - 1)^2 + lambda2 mean_t |M_t - M_t+1|.
- Masker pre-training (the same phase during the first ``warmup_epochs`` epochs): L_M = BCE(M, A),
  A = 1 on the top-rho tokens of the classifier's own text Grad-CAM of y, 0 elsewhere (detached).
- Classifier phase (masker frozen): L_C = CE + lambda3 BCE(s, M) + lambda4 L_mix, s = the
  classifier's text Grad-CAM of y on hidden layer ``layer`` (``pipeline.attribution.gradcam``, eval mode)
  clamped into (0, 1), M detached, L_mix = embedding mixup with a Beta(alpha, alpha) weight.
- Warm-up: the first ``warmup_epochs`` epochs train the classifier on CE + lambda4 L_mix only.
- ``align-fixed`` (ablation): the classifier phase with a fixed mask, 1 on tokens of
  non-stop words (scikit-learn's English list), 0 on tokens of stop words; no masker.

Why not SIBLINGS' literal masker (sigmoid output, L1 term lambda1 mean_R M), issue 22: the raw word
embeddings (component sd ~0.06) barely move a freshly initialised convolution, so M was 0.49 on
every token (per-sentence sd 0.00); the contrast term rewards keeping more (removing everything
leaves the pad baseline, about as uninformative as any complement), which lambda1 = 0.2 does not
outweigh (the mean drifted to 0.56 in 16 masker steps, still flat); and the classifier's Grad-CAM
was pulled towards that flat mask. Here the keep rate is fixed by construction
(keep-all is not a mask the masker can output, so the contrast term must choose which rho of the
tokens to keep), the masker starts from the classifier's own attribution, and the mask's mean and
per-sentence spread are logged (``mask_mean``, ``mask_spread``) in both phases.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel

from pipeline.attribution.attribution import pad_baseline
from pipeline.attribution.gradcam import hidden_and_pooled, sequence_head, text_grad_cam
from pipeline.errors import ConfigError
from pipeline.models import eval_mode
from pipeline.training.objectives.base import Ablation, Batch, ExtraModule, Objective, Phase, Task
from pipeline.training.objectives.selection import above_quantile


class Masker(nn.Module):
    """Three 1-D convolutions (kernel 3, same length) with ReLU between, then a soft top-rho selection.

    Args:
        embedding_dim: D, the word-embedding width.
        width: channels of the two hidden layers.
        keep_rate: rho, the share of each sentence's real tokens whose M is above 1/2.
        temperature: tau, in units of the scores' standard deviation over the sentence.
    """

    def __init__(self, *, embedding_dim: int, width: int = 64, keep_rate: float = 0.3, temperature: float = 0.5) -> None:
        super().__init__()
        self.keep_rate, self.temperature = keep_rate, temperature
        self.net = nn.Sequential(
            nn.Conv1d(embedding_dim, width, 3, padding=1), nn.ReLU(),
            nn.Conv1d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv1d(width, 1, 3, padding=1),
        )

    def forward(self, embeds: Tensor, *, attention_mask: Tensor, real: Tensor) -> Tensor:
        """The soft mask.

        Args:
            embeds: (B, T, D) word embeddings (detached by the caller: the masker does not train them);
                standardised per token here (raw word embeddings are ~0.06 per coordinate).
            attention_mask: (B, T); padding is zeroed before the convolutions, as beyond the ends.
            real: (B, T) bool, the word tokens; every other token gets M = 1.

        Returns:
            M, (B, T) in (0, 1) on real tokens (a share ~rho above 1/2), exactly 1 elsewhere.
        """
        inputs = F.layer_norm(embeds, embeds.shape[-1:]) * attention_mask.unsqueeze(-1).to(embeds.dtype)
        scores = self.net(inputs.transpose(1, 2)).squeeze(1).float()  # float32: nanquantile refuses CUDA autocast's bf16
        z = standardise(scores, real=real)
        # detached threshold: a selection cut, as AGM's quantile; the scores it ranks carry the gradient
        threshold = torch.nanquantile(z.detach().masked_fill(~real, torch.nan), 1 - self.keep_rate, dim=1, keepdim=True)
        soft = torch.sigmoid((z - threshold.nan_to_num(0.0)) / self.temperature)
        return torch.where(real, soft, torch.ones_like(soft))


def standardise(scores: Tensor, *, real: Tensor) -> Tensor:
    """(B, T) scores minus their mean over each sentence's real tokens, divided by their standard deviation there
    (a sentence with one real token, or equal scores, gets 0)."""
    weights = real.to(scores.dtype)
    count = weights.sum(1, keepdim=True).clamp(min=1)
    centred = (scores - (scores * weights).sum(1, keepdim=True) / count) * weights
    spread = (centred.pow(2).sum(1, keepdim=True) / count).sqrt()
    return centred / spread.clamp(min=1e-6)


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
    """mean_R M per sentence, averaged over the batch (``mask_mean``; M >= 0)."""
    return ((mask * real).sum(1) / real.sum(1).clamp(min=1)).mean()


def spread(mask: Tensor, *, real: Tensor) -> Tensor:
    """The standard deviation of M over each sentence's real tokens, averaged over the batch (``mask_spread``):
    0 for a flat mask, 0.5 for one half kept and half dropped."""
    weights = real.to(mask.dtype)
    count = weights.sum(1).clamp(min=1)
    mean = (mask * weights).sum(1) / count
    return ((((mask - mean.unsqueeze(1)) ** 2) * weights).sum(1) / count).sqrt().mean()


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
    """ALIGN: a masker phase (pre-training during the warm-up, then L_M) and a classifier phase every step.

    Attributes:
        keep_rate: rho, the share of each sentence's tokens the mask keeps (in (0, 1)).
        temperature: tau, the softness of the mask's top-rho selection (in score standard deviations).
        lambda2: weight of the mask's total variation.
        lambda3: weight of BCE(s, M) in the classifier phase.
        lambda4: weight of the mixup loss.
        alpha: the mixup weight's Beta(alpha, alpha).
        warmup_epochs: epochs of CE + mixup only for the classifier, while the masker pre-trains on
            the classifier's Grad-CAM.
        layer: the hidden states the classifier's Grad-CAM reads (``pipeline.attribution.gradcam``; -2 = the layer
            before the last, where every token reaches the logits).
        masker_lr: the masker's learning rate.
        masker_width: channels of the masker's hidden layers.
        fixed_mask: ``align-fixed``: no masker (the masker's settings unused); the stop-word mask is the target.
    """

    display = "ALIGN"
    ablation = Ablation("fixed mask", objective="align-fixed")
    fit_terms = ("mask_mean", "mask_spread")  # a mask that keeps everything, or one value per sentence, is blind
    keep_rate: float = 0.3
    temperature: float = 0.5
    lambda2: float = 0.1
    lambda3: float = 1.0
    lambda4: float = 1.0
    alpha: float = 0.4
    warmup_epochs: int = 1
    layer: int = -2
    masker_lr: float = 1e-3
    masker_width: int = 64
    fixed_mask: bool = False

    def __post_init__(self) -> None:
        self._check_non_negative("lambda2", "lambda3", "lambda4", "warmup_epochs")
        for name in ("alpha", "temperature", "masker_lr", "masker_width"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"align: {name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.keep_rate < 1:
            raise ConfigError(f"align: keep_rate must be in (0, 1), got {self.keep_rate}")
        if self.layer >= 0:
            raise ConfigError(f"align: layer counts from the last (-1, -2, ...), got {self.layer}")

    @property
    def phases(self) -> tuple[Phase, ...]:
        classifier = Phase("classifier", updates=("model",))
        if self.fixed_mask:
            return (classifier,)
        return Phase("masker", updates=("masker",)), classifier

    def modules(self, *, model: PreTrainedModel, task: Task) -> dict[str, ExtraModule]:
        if self.fixed_mask:
            return {}
        masker = Masker(embedding_dim=model.get_input_embeddings().embedding_dim, width=self.masker_width,
                        keep_rate=self.keep_rate, temperature=self.temperature)
        return {"masker": ExtraModule(masker, lr=self.masker_lr)}

    def loss(
        self, *, model: PreTrainedModel, modules: Mapping[str, nn.Module], batch: Batch, logits: Tensor, ce: Tensor,
        phase: str, epoch: int,
    ) -> tuple[Tensor, dict[str, float]]:
        if phase == "masker":
            return self._masker_loss(model=model, masker=modules["masker"], batch=batch, pretrain=epoch < self.warmup_epochs)
        if self.fixed_mask:
            mask = stopword_mask(words=batch.words, word_index=batch.word_index)
        else:
            with torch.no_grad():
                embeds, _ = word_embeddings(model, input_ids=batch.input_ids, word_index=batch.word_index)
                mask = modules["masker"](embeds, attention_mask=batch.attention_mask, real=batch.word_index >= 0)
        return self._classifier_loss(model=model, mask=mask, batch=batch, ce=ce, warm_up=epoch < self.warmup_epochs)

    def _saliency(self, model: PreTrainedModel, *, batch: Batch, create_graph: bool) -> Tensor:
        """(B, T) s, the classifier's text Grad-CAM of y on ``layer``, in eval mode."""
        embeds = model.get_input_embeddings()(batch.input_ids)
        if not embeds.requires_grad:  # a frozen classifier (the masker phase): track its forward from the input
            embeds = embeds.detach().requires_grad_()
        with eval_mode(model):
            hidden, pooled = hidden_and_pooled(model, inputs_embeds=embeds, attention_mask=batch.attention_mask,
                                               layer=self.layer)
            return text_grad_cam(hidden=hidden, scores=sequence_head(model).out(pooled), target=batch.labels,
                                 attention_mask=batch.attention_mask, real=batch.word_index >= 0, create_graph=create_graph)

    def _masker_loss(
        self, *, model: PreTrainedModel, masker: nn.Module, batch: Batch, pretrain: bool
    ) -> tuple[Tensor, dict[str, float]]:
        """L_M with the classifier in eval mode (a fixed function for the masker to explain), or, while ``pretrain``,
        BCE(M, the top-rho tokens of the classifier's Grad-CAM)."""
        real = batch.word_index >= 0
        embeds, baseline = (e.detach() for e in word_embeddings(model, input_ids=batch.input_ids, word_index=batch.word_index))
        mask = masker(embeds, attention_mask=batch.attention_mask, real=real)
        logged = {"mask_mean": sparsity(mask, real=real).item(), "mask_spread": spread(mask, real=real).item()}
        if pretrain:
            with torch.enable_grad():  # Grad-CAM needs the gradient of the frozen classifier's score
                saliency = self._saliency(model, batch=batch, create_graph=False)
            target = above_quantile(saliency, real=real, quantile=1 - self.keep_rate).float()
            loss = alignment(mask, target, real=real)  # BCE(M, A): the same form as the classifier's BCE(s, M)
            return loss, logged | {"masker_pretrain": loss.item()}
        with eval_mode(model):
            gap = contrast(model, embeds=embeds, baseline=baseline, mask=mask, attention_mask=batch.attention_mask,
                           labels=batch.labels)
        tv = total_variation(mask, real=real)
        loss = gap + self.lambda2 * tv
        return loss, logged | {"masker_contrast": gap.item(), "masker_tv": tv.item(), "masker_loss": loss.item()}

    def _classifier_loss(
        self, *, model: PreTrainedModel, mask: Tensor, batch: Batch, ce: Tensor, warm_up: bool
    ) -> tuple[Tensor, dict[str, float]]:
        """L_C = CE + lambda3 BCE(s, M) + lambda4 L_mix, the BCE left out while ``warm_up``."""
        real = batch.word_index >= 0
        embeds = model.get_input_embeddings()(batch.input_ids)
        weight = torch.distributions.Beta(self.alpha, self.alpha).sample().item()
        order = torch.randperm(len(batch.labels), device=batch.labels.device)
        mixed = mixup(model, embeds=embeds, attention_mask=batch.attention_mask, labels=batch.labels, weight=weight, order=order)
        loss, bce = ce + self.lambda4 * mixed, torch.tensor(float("nan"))
        if not warm_up:
            bce = alignment(self._saliency(model, batch=batch, create_graph=True), mask.detach(), real=real)
            loss = loss + self.lambda3 * bce
        return loss, {"mask_mean": sparsity(mask, real=real).item(), "mask_spread": spread(mask, real=real).item(),
                      "mix": mixed.item(), "bce": bce.item()}


@dataclass(frozen=True)
class AlignFixed(Align):
    """The ablation ``align-fixed``: the classifier phase towards the stop-word mask, no masker; its own class
    so that reports name it apart."""

    display = "ALIGN (fixed mask)"
    ablation = None
    fixed_mask: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.fixed_mask:
            raise ConfigError("align-fixed: fixed_mask is true by definition; use align for a learned mask")
