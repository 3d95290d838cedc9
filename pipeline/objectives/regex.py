"""REGEX, robust and faithful explanations (papers/regex-faithful-explanations.txt; SIBLINGS.md §2).

L = CE + alpha * L_grad + beta * L_vat + gamma * L_cons + delta * L_att, one joint objective:
- L_grad = mean_b ||d CE_b / d E_b||^2, the input-gradient penalty (double backward);
- L_vat = KL(p(E) detached || p(E + r)), r = epsilon g / ||g|| per sentence, g = the gradient of
  KL(p(E) || p(E + xi d)) w.r.t. d, d a random unit direction on the real tokens (one power
  iteration, Miyato et al.);
- L_cons = KL(p(x) detached || p(x~)), x~ = x with the floor(K |R|) real tokens of lowest |a|
  replaced by the pad token;
- L_att = KL(alpha_att || a^) over the real tokens, alpha_att = the last layer's [CLS] attention
  averaged over heads and renormalised over R, a^ = |a| / sum |a| (detached), 1e-8 added to both.
a is the gold label's IG (``ig_steps`` points, pad baseline) or gradient x input, detached.
``RegexNoExplanation`` (the ``regex-no-explanation`` ablation): gamma = delta = 0 by default, the
robustness terms without the explanation terms; its own class so that reports name it apart.

Every term is computed with dropout off, on one shared forward of E = the word embeddings: each
is a property of the function (its gradient, its neighbourhood, its attention), and with dropout
p(E) and p(E + 0) would already differ. A zero weight skips its term entirely (nothing computed,
nothing logged): with all four at 0 the loss is the cross-entropy itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel

from pipeline.attribution import gradient_x_input, integrated_gradients, pad_baseline
from pipeline.errors import ConfigError
from pipeline.models import eval_mode
from pipeline.objectives.base import Batch, Objective
from pipeline.objectives.selection import lowest, replace

_WEIGHTS = {"input_grad": "alpha", "vat": "beta", "cons": "gamma", "att": "delta"}  # logged term -> its weight


@dataclass(frozen=True)
class Regex(Objective):
    """Cross-entropy plus input-gradient, virtual-adversarial, salient-masking and attention terms.

    Attributes:
        alpha, beta, gamma, delta: weights of L_grad, L_vat, L_cons, L_att (0 removes the term).
        epsilon: norm of the virtual adversarial perturbation, per sentence.
        xi: step of the power iteration.
        mask_fraction: K, the share of each sentence's real tokens masked in x~.
        attribution: ``"ig"`` (Integrated Gradients, ``ig_steps`` points) or ``"grad_input"``.
        ig_steps: m, IG's interpolation points.
    """

    display = "REGEX"

    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    delta: float = 1.0
    epsilon: float = 1.0
    xi: float = 1e-3
    mask_fraction: float = 0.2
    attribution: Literal["ig", "grad_input"] = "ig"
    ig_steps: int = 8

    def __post_init__(self) -> None:
        self._check_non_negative("alpha", "beta", "gamma", "delta", "epsilon")
        if self.xi <= 0:
            raise ConfigError(f"regex: xi must be > 0, got {self.xi}")
        if not 0 <= self.mask_fraction <= 1:
            raise ConfigError(f"regex: mask_fraction must be in [0, 1], got {self.mask_fraction}")
        if self.attribution not in ("ig", "grad_input"):
            raise ConfigError(f"regex: attribution must be 'ig' or 'grad_input', got {self.attribution!r}")
        if self.ig_steps < 1:
            raise ConfigError(f"regex: ig_steps must be >= 1, got {self.ig_steps}")

    def loss(
        self, *, model: PreTrainedModel, modules: Mapping[str, nn.Module], batch: Batch, logits: Tensor, ce: Tensor,
        phase: str, epoch: int,
    ) -> tuple[Tensor, dict[str, float]]:
        weights = {term: getattr(self, weight) for term, weight in _WEIGHTS.items() if getattr(self, weight) > 0}
        if not weights:
            return ce, {}
        real = batch.word_index >= 0
        terms: dict[str, Tensor] = {}
        with eval_mode(model):
            embeddings = model.get_input_embeddings()(batch.input_ids)
            out = model(inputs_embeds=embeddings, attention_mask=batch.attention_mask, output_attentions="att" in weights)
            log_probs = out.logits.float().log_softmax(-1)
            clean = log_probs.detach()
            if "cons" in weights or "att" in weights:
                scores = self._attribution(model, batch=batch, embeddings=embeddings, log_probs=log_probs).abs()
            if "input_grad" in weights:
                terms["input_grad"] = input_gradient_penalty(embeddings=embeddings, log_probs=log_probs, labels=batch.labels)
            if "vat" in weights:
                r = virtual_adversarial_perturbation(
                    model, embeddings=embeddings.detach(), attention_mask=batch.attention_mask, real=real,
                    clean=clean, xi=self.xi, epsilon=self.epsilon,
                )
                adversarial = model(inputs_embeds=embeddings + r, attention_mask=batch.attention_mask).logits
                terms["vat"] = kl_divergence(clean, adversarial.float().log_softmax(-1))
            if "cons" in weights:
                masked = replace(
                    batch.input_ids, selected=lowest(scores, real=real, fraction=self.mask_fraction),
                    token_id=model.config.pad_token_id,
                )
                perturbed = model(input_ids=masked, attention_mask=batch.attention_mask).logits
                terms["cons"] = kl_divergence(clean, perturbed.float().log_softmax(-1))
            if "att" in weights:
                cls_attention = out.attentions[-1][:, :, 0, :].float().mean(1)
                terms["att"] = attention_attribution_kl(cls_attention, scores, real=real)
        loss = ce + sum(weights[term] * value for term, value in terms.items())
        return loss, {term: value.item() for term, value in terms.items()}

    def _attribution(self, model: PreTrainedModel, *, batch: Batch, embeddings: Tensor, log_probs: Tensor) -> Tensor:
        """(B, T) detached attribution of the gold label, from the shared forward or IG."""
        if self.attribution == "grad_input":
            return gradient_x_input(embeddings=embeddings, log_probs=log_probs, target=batch.labels, retain_graph=True)
        baseline = pad_baseline(input_ids=batch.input_ids, word_index=batch.word_index, pad_token_id=model.config.pad_token_id)
        return integrated_gradients(
            model, input_ids=batch.input_ids, baseline_ids=baseline, attention_mask=batch.attention_mask,
            target=batch.labels, steps=self.ig_steps,
        )


@dataclass(frozen=True)
class RegexNoExplanation(Regex):
    """The ablation: REGEX's input-gradient and virtual-adversarial terms only (gamma = delta = 0)."""

    display = "REGEX w/o expl."

    gamma: float = 0.0
    delta: float = 0.0


def input_gradient_penalty(*, embeddings: Tensor, log_probs: Tensor, labels: Tensor) -> Tensor:
    """mean_b ||d CE_b / d E_b||^2, differentiable w.r.t. the parameters.

    Args:
        embeddings: (B, T, H) the embeddings the forward was fed, part of its graph.
        log_probs: (B, C) log-softmax of that forward's logits.
        labels: (B,) gold classes.

    Returns:
        Scalar. Sentences are independent, so the gradient of sum_b CE_b is each CE_b's own.
    """
    ce_sum = -log_probs.gather(1, labels.unsqueeze(1)).sum()
    (grad,) = torch.autograd.grad(ce_sum, embeddings, create_graph=True)
    return grad.pow(2).sum((1, 2)).mean()


def virtual_adversarial_perturbation(
    model: PreTrainedModel,
    *,
    embeddings: Tensor,
    attention_mask: Tensor,
    real: Tensor,
    clean: Tensor,
    xi: float,
    epsilon: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """r = epsilon g / ||g|| per sentence after one power iteration from a random direction on R.

    Args:
        model: the classifier, in the mode the caller wants (the objective: eval).
        embeddings: (B, T, H) detached word embeddings E.
        attention_mask: (B, T).
        real: (B, T) bool, True for real tokens; d and r are 0 elsewhere.
        clean: (B, C) detached log p(E).
        xi: the finite-difference step of the power iteration.
        epsilon: the norm of r per sentence.
        generator: the source of d; None uses torch's global generator.

    Returns:
        (B, T, H) detached perturbation with ||r_b|| = epsilon (0 where a sentence has no real token).
    """
    on_real = real.unsqueeze(-1).to(embeddings.dtype)
    d = torch.randn(embeddings.shape, generator=generator, device=embeddings.device) * on_real
    d = _unit_per_sentence(d).requires_grad_()
    with torch.enable_grad():
        probed = model(inputs_embeds=embeddings + xi * d, attention_mask=attention_mask).logits
        (g,) = torch.autograd.grad(kl_divergence(clean, probed.float().log_softmax(-1)), d)
    return epsilon * _unit_per_sentence(g * on_real)


def kl_divergence(clean: Tensor, log_probs: Tensor) -> Tensor:
    """mean_b KL(p_b || q_b) from (B, C) log-probabilities; exactly 0 where they are equal."""
    return (clean.exp() * (clean - log_probs)).sum(-1).mean()


def attention_attribution_kl(cls_attention: Tensor, scores: Tensor, *, real: Tensor) -> Tensor:
    """mean_b KL(alpha_b || a^_b) over the real tokens, both renormalised over R, 1e-8 added to both.

    Args:
        cls_attention: (B, T) the [CLS] row of the attention (differentiable).
        scores: (B, T) non-negative attribution |a| (detached here).
        real: (B, T) bool, True for real tokens.

    Returns:
        Scalar; 0 when the two distributions are equal on R.
    """
    attention = _distribution(cls_attention, real=real)
    attribution = _distribution(scores.detach(), real=real)
    per_token = (attention + 1e-8) * ((attention + 1e-8) / (attribution + 1e-8)).log()
    return (per_token * real).sum(1).mean()


def _distribution(values: Tensor, *, real: Tensor) -> Tensor:
    kept = values * real
    return kept / kept.sum(1, keepdim=True).clamp(min=1e-12)  # an all-zero row stays zero


def _unit_per_sentence(x: Tensor) -> Tensor:
    return F.normalize(x.flatten(1), dim=1).view_as(x)
