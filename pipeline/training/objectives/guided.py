"""The CAP family's objective: cross-entropy plus alignment of the student's own attribution to a prior.

L = CE + beta * L_align over the real words of each sentence, averaged over the batch; a_p is the
prior (a fusion of CAP, LIME, IG, or a control), a_s the student's own word attribution of
``target`` computed with ``create_graph=True`` so that the alignment trains the student.

The paper-literal form (``attribution: ig, target: logit, alignment: abs_mse``) is
MSE(|a_s| / ||a_s||, |a_p| / ||a_p||) with a_s the m-step IG of the raw true-label logit. Each choice
is a setting, so the forms can be compared on the decoy benchmark (docs/results/): which
attribution (IG projects the gradient on the embedding, which a student can game; ``gradient_norm``
constrains the whole input-gradient vector), which target, which alignment, a warm-up and a floor
on the attribution's norm (the L2 normalisation's gradient grows like 1 / ||a_s||).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.attribution.attribution import integrated_gradients, occlusion, pad_baseline, tokens_to_words, word_gradient_norms
from pipeline.errors import ConfigError
from pipeline.models import eval_mode
from pipeline.priors.fusion import Normalisation, normalise
from pipeline.training.objectives.base import Ablation, Objective

Attribution = Literal["ig", "gradient_norm", "occlusion"]
Target = Literal["logit", "log_softmax", "centred_logit"]
Alignment = Literal["abs_mse", "signed_mse", "cosine"]


def target_output(logits: Tensor, labels: Tensor, *, target: Target) -> Tensor:
    """The per-sentence scalar whose attribution is aligned: (B, C) logits -> (B,).

    ``logit`` is the raw gold logit (the paper's); ``log_softmax`` its log-probability, whose
    gradient is the logit's minus the softmax-weighted others'; ``centred_logit`` the gold logit
    minus the mean logit (a shift-invariant margin that does not saturate like log p).
    """
    picked = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    if target == "logit":
        return picked
    if target == "log_softmax":
        return logits.log_softmax(-1).gather(1, labels.unsqueeze(1)).squeeze(1)
    return picked - logits.mean(-1)


@dataclass(frozen=True)
class Guided(Objective):
    """Cross-entropy plus beta times the misalignment between the student's own attribution and the prior.

    Both sides are compared over the words the model sees (truncated words are left out of both), so
    a fused prior and a truncated sentence stay on the student's scale. The self-attribution is taken
    with dropout off: an attribution is defined for one fixed function, not a fresh dropout mask.

    Attributes:
        beta: weight of the alignment term.
        ig_steps: m, interpolation steps of the differentiable IG (``attribution: ig``).
        attribution: ``ig``: word IG (the gradient projected on the embedding, summed over hidden
            units); ``gradient_norm``: per word, the L2 norm of the whole input gradient;
            ``occlusion``: per word, the drop of ``target`` when the word becomes padding (one
            forward per word; ``pipeline.attribution.attribution.occlusion``).
        target: the scalar attributed (``target_output``).
        alignment: ``abs_mse``: MSE of |a| after ``normalisation`` (the paper's); ``signed_mse``: MSE
            of a / ||a||_2 against the normalised prior; ``cosine``: 1 - cosine(a, prior).
        warmup_epochs: epochs of cross-entropy alone before the alignment starts.
        norm_floor: ``abs_mse`` / ``signed_mse`` with l2: divide a_s by max(||a_s||, norm_floor), so a
            vanishing attribution cannot blow the alignment gradient up (0: no floor).
        normalisation: ``"l2"`` or ``"minmax"`` (``pipeline.priors.fusion.normalise``); the stage
            passes ``priors.normalisation``, the fusion's.
    """

    display = "Guided"
    needs_prior = True
    paper = True
    ablation = Ablation("random prior", prior="random")
    beta: float = 1.0
    ig_steps: int = 8
    attribution: Attribution = "ig"
    target: Target = "logit"
    alignment: Alignment = "abs_mse"
    warmup_epochs: int = 0
    norm_floor: float = 0.0
    normalisation: Normalisation = "l2"

    def __post_init__(self) -> None:
        self._check_non_negative("beta", "warmup_epochs", "norm_floor")
        if self.ig_steps < 1:
            raise ConfigError(f"guided: ig_steps must be >= 1, got {self.ig_steps}")
        for name, allowed in (("attribution", Attribution), ("target", Target), ("alignment", Alignment),
                              ("normalisation", Normalisation)):
            if getattr(self, name) not in allowed.__args__:
                raise ConfigError(f"guided: {name} must be one of {', '.join(allowed.__args__)}; got {getattr(self, name)!r}")

    def own_attribution(self, model, batch) -> tuple[Tensor, Tensor]:
        """The student's differentiable word attribution (B, W) and the word mask (B, W)."""
        n_words = batch.prior.shape[1]
        with eval_mode(model):
            if self.attribution == "occlusion":
                return occlusion(
                    model, input_ids=batch.input_ids, attention_mask=batch.attention_mask, word_index=batch.word_index,
                    n_words=n_words, target=batch.labels, pad_token_id=model.config.pad_token_id,
                    output=lambda logits, labels: target_output(logits, labels, target=self.target),
                )
            if self.attribution == "gradient_norm":
                return word_gradient_norms(
                    model, input_ids=batch.input_ids, attention_mask=batch.attention_mask, word_index=batch.word_index,
                    n_words=n_words, output=lambda logits: target_output(logits, batch.labels, target=self.target),
                    create_graph=True,
                )
            tokens = integrated_gradients(
                model,
                input_ids=batch.input_ids,
                baseline_ids=pad_baseline(
                    input_ids=batch.input_ids,
                    word_index=batch.word_index,
                    pad_token_id=model.config.pad_token_id,
                ),
                attention_mask=batch.attention_mask,
                target=batch.labels,
                steps=self.ig_steps,
                create_graph=True,
                output=lambda logits, labels: target_output(logits, labels, target=self.target),
            )
        return tokens_to_words(tokens, batch.word_index, n_words=n_words)

    def misalignment(self, own: Tensor, prior: Tensor, mask: Tensor) -> Tensor:
        """Per sentence, the alignment loss between the student's attribution and the prior: (B,)."""
        prior = normalise(prior.to(own.dtype), method=self.normalisation, mask=mask)
        if self.alignment == "cosine":
            return 1 - F.cosine_similarity(own * mask, prior, dim=-1, eps=1e-8)
        if self.alignment == "abs_mse":
            own = own.abs()
        if self.normalisation == "l2":
            norm = torch.linalg.vector_norm(own * mask, dim=-1, keepdim=True)
            own = own * mask / torch.clamp(norm, min=max(self.norm_floor, 1e-12))
        else:
            own = normalise(own, method="minmax", mask=mask)
        return ((own - prior) ** 2 * mask).sum(1) / mask.sum(1).clamp(min=1)

    def loss(self, *, model, modules, batch, logits, ce, phase, epoch):
        if batch.prior is None:
            raise ValueError("guided: the batch carries no prior")
        if epoch < self.warmup_epochs:
            return ce, {"align": float("nan"), "own_norm": float("nan")}
        own, mask = self.own_attribution(model, batch)
        align = self.misalignment(own, batch.prior, mask).mean()
        # logged because the L2-normalised alignment's gradient grows like 1 / ||a_s|| as it shrinks
        own_norm = torch.linalg.vector_norm(own.detach() * mask, dim=-1).mean()
        return ce + self.beta * align, {"align": align.item(), "own_norm": own_norm.item()}
