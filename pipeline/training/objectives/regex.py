"""REGEX, robust and faithful explanations (papers/regex-faithful-explanations.txt; SIBLINGS.md §2).

L = CE + alpha * L_grad + beta * L_vat + gamma * L_cons + delta * L_att, one joint objective:
- L_grad = mean_b ||d CE_b / d X_b||^2, the input-gradient penalty (double backward);
- L_vat = KL(p(X) detached || p(X + r)), r = epsilon g / ||g|| per sentence, g = the gradient of
  KL(p(X) || p(X + xi d)) w.r.t. d, d a random unit direction on the real tokens (one power
  iteration, Miyato et al.);
- L_cons = KL(p(x) detached || p(x~)), x~ = x with the floor(K |R|) real tokens of lowest |a|
  replaced by the pad token;
- L_att = KL(alpha_att || a^) over the real tokens, alpha_att = the last layer's [CLS] attention
  averaged over heads and renormalised over R, a^ = |a| / sum |a| (detached), 1e-8 added to both.
X is the output of the encoder's embedding block (word + position + type embeddings, then its
LayerNorm: the first transformer layer's input), not the raw word-piece embeddings E that
SIBLINGS.md writes (issue 22, bench/siblings_defects.py). The LayerNorm divides by E's small spread
(MiniLM: component sd ~0.06), so ||d CE / d E||^2 is ~80x ||d CE / d X||^2 and at alpha = 1 its
gradient matched CE's and opposed it (cosine -0.32 after one epoch): the student did not fit (CE
0.69 after 16 steps). And epsilon = 1 on E moves a sentence by a quarter of its norm; on X, by a
few per cent. Defaults from two draws' training CE and validation (docs/results/2026-12-05-sibling-
defects.md): alpha = 1 on X (the largest within 2 points of alpha = 0; about 0.013 on E's scale),
beta = gamma = 1, delta = 0.01: the attention term's gradient is 3-5x CE's at delta = 1, and at
0.1 the training CE still ended 0.05 above the baseline's on one draw (0.01: within 0.02 on both).
A warm-up epoch of CE alone (the loop tells objectives the epoch, not the step) did not help.
a is the gold label's IG (``ig_steps`` points, pad baseline) or gradient x input, detached.
``RegexNoExplanation`` (the ``regex-no-explanation`` ablation): gamma = delta = 0 by default, the
robustness terms without the explanation terms; its own class so that reports name it apart.

Every term is computed with dropout off, on one shared forward of the word embeddings E (X is its
embedding block's output): each is a property of the function (its gradient, its neighbourhood,
its attention), and with dropout p(X) and p(X + 0) would already differ. A zero weight skips its term entirely (nothing computed,
nothing logged): with all four at 0 the loss is the cross-entropy itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel

from pipeline.attribution.attribution import gradient_x_input, integrated_gradients, pad_baseline
from pipeline.errors import ConfigError
from pipeline.models import eval_mode
from pipeline.training.objectives.base import Ablation, Batch, Objective
from pipeline.training.objectives.selection import lowest, replace

_WEIGHTS = {"input_grad": "alpha", "vat": "beta", "cons": "gamma", "att": "delta"}  # logged term -> its weight


@dataclass(frozen=True)
class Regex(Objective):
    """Cross-entropy plus input-gradient, virtual-adversarial, salient-masking and attention terms.

    Attributes:
        alpha, beta, gamma, delta: weights of L_grad, L_vat, L_cons, L_att (0 removes the term).
        epsilon: norm of the virtual adversarial perturbation of X, per sentence.
        xi: step of the power iteration.
        mask_fraction: K, the share of each sentence's real tokens masked in x~.
        attribution: ``"ig"`` (Integrated Gradients, ``ig_steps`` points) or ``"grad_input"``.
        ig_steps: m, IG's interpolation points.
    """

    display = "REGEX"
    ablation = Ablation("no explanation terms (γ = δ = 0)", objective="regex-no-explanation")

    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    delta: float = 0.01
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
            with embedding_output(model) as normalised:
                out = model(inputs_embeds=embeddings, attention_mask=batch.attention_mask, output_attentions="att" in weights)
            log_probs = out.logits.float().log_softmax(-1)
            clean = log_probs.detach()
            if "cons" in weights or "att" in weights:
                scores = self._attribution(model, batch=batch, embeddings=embeddings, log_probs=log_probs).abs()
            if "input_grad" in weights:
                terms["input_grad"] = input_gradient_penalty(inputs=normalised[0], log_probs=log_probs, labels=batch.labels)
            if "vat" in weights:
                r = virtual_adversarial_perturbation(
                    model, shape=normalised[0].shape, input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                    real=real, clean=clean, xi=self.xi, epsilon=self.epsilon,
                )
                with embedding_output(model, add=r):
                    adversarial = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
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
    ablation = None

    gamma: float = 0.0
    delta: float = 0.0


@contextmanager
def embedding_output(model: PreTrainedModel, *, add: Tensor | None = None) -> Iterator[list[Tensor]]:
    """Collect (and optionally shift) the output of the encoder's embedding block in the forwards inside the block.

    BERT and RoBERTa (``model.base_model.embeddings``): word + position + token-type embeddings, then
    LayerNorm, then dropout (identity in eval mode): X, (B, T, H), the first transformer layer's input.

    Args:
        model: the classifier.
        add: (B, T, H) added to X in every forward inside the block (VAT's perturbation); None adds nothing.

    Yields:
        A list that each forward appends its X to (before ``add``; part of the forward's graph).
    """
    outputs: list[Tensor] = []

    def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        outputs.append(output)
        return output if add is None else output + add

    handle = model.base_model.embeddings.register_forward_hook(hook)
    try:
        yield outputs
    finally:
        handle.remove()


def input_gradient_penalty(*, inputs: Tensor, log_probs: Tensor, labels: Tensor) -> Tensor:
    """mean_b ||d CE_b / d X_b||^2, differentiable w.r.t. the parameters.

    Args:
        inputs: (B, T, H) X, a tensor of the forward's graph (the objective: the embedding block's output).
        log_probs: (B, C) log-softmax of that forward's logits.
        labels: (B,) gold classes.

    Returns:
        Scalar. Sentences are independent, so the gradient of sum_b CE_b is each CE_b's own.
    """
    ce_sum = -log_probs.gather(1, labels.unsqueeze(1)).sum()
    (grad,) = torch.autograd.grad(ce_sum, inputs, create_graph=True)
    return grad.pow(2).sum((1, 2)).mean()


def virtual_adversarial_perturbation(
    model: PreTrainedModel,
    *,
    shape: torch.Size,
    input_ids: Tensor,
    attention_mask: Tensor,
    real: Tensor,
    clean: Tensor,
    xi: float,
    epsilon: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """r = epsilon g / ||g|| per sentence after one power iteration from a random direction on R, in X's space.

    The perturbation is added to X, the embedding block's output (:func:`embedding_output`), where
    every coordinate has the LayerNorm's unit scale, not to the raw word embeddings (component sd
    ~0.06 in MiniLM, so that epsilon = 1 there moved a sentence by a quarter of its norm).

    Args:
        model: the classifier, in the mode the caller wants (the objective: eval).
        shape: (B, T, H), X's shape.
        input_ids: (B, T) the batch.
        attention_mask: (B, T).
        real: (B, T) bool, True for real tokens; d and r are 0 elsewhere.
        clean: (B, C) detached log p(X).
        xi: the finite-difference step of the power iteration.
        epsilon: the norm of r per sentence.
        generator: the source of d; None uses torch's global generator.

    Returns:
        (B, T, H) detached perturbation with ||r_b|| = epsilon (0 where a sentence has no real token).
    """
    on_real = real.unsqueeze(-1).float()
    d = torch.randn(shape, generator=generator, device=input_ids.device) * on_real
    d = _unit_per_sentence(d).requires_grad_()
    with torch.enable_grad(), embedding_output(model, add=xi * d):
        probed = model(input_ids=input_ids, attention_mask=attention_mask).logits
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
