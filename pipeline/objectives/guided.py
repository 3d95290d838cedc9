"""The CAP family's objective: cross-entropy plus alignment of the student's own IG to a prior.

L = CE + beta * L_align, L_align = MSE(normalise(a_s), normalise(a_p)) over the real words of each
sentence, averaged over the batch; a_s is the student's word-level IG of the true-label logit
(m steps, create_graph=True), a_p the prior (a fusion of CAP, LIME, IG, or a control).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.attribution import integrated_gradients, pad_baseline, tokens_to_words
from pipeline.errors import ConfigError
from pipeline.models import eval_mode
from pipeline.objectives.base import Objective
from pipeline.priors.fusion import Normalisation, normalise


@dataclass(frozen=True)
class Guided(Objective):
    """Cross-entropy plus beta times the MSE between the student's own IG and the prior.

    Both sides are normalised per sentence over the words the model sees (truncated words are
    left out of both), so a fused prior and a truncated sentence stay on the student's scale.
    The self-attribution is taken with dropout off: IG's path integral is only defined for one
    fixed function, not a fresh dropout mask at every interpolation point.

    Attributes:
        beta: weight of the alignment term.
        ig_steps: m, interpolation steps of the differentiable IG.
        normalisation: ``"l2"`` or ``"minmax"`` (``pipeline.priors.fusion.normalise``); the stage
            passes ``priors.normalisation``, the fusion's.
    """

    display = "Guided"
    needs_prior = True
    beta: float = 1.0
    ig_steps: int = 8
    normalisation: Normalisation = "l2"

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise ConfigError(f"guided: beta must be >= 0, got {self.beta}")
        if self.ig_steps < 1:
            raise ConfigError(f"guided: ig_steps must be >= 1, got {self.ig_steps}")
        if self.normalisation not in ("l2", "minmax"):
            raise ConfigError(f"guided: normalisation must be 'l2' or 'minmax', got {self.normalisation!r}")

    def loss(self, *, model, modules, batch, logits, ce, phase, epoch):
        if batch.prior is None:
            raise ValueError("guided: the batch carries no prior")
        with eval_mode(model):
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
            )
        own, mask = tokens_to_words(tokens, batch.word_index, n_words=batch.prior.shape[1])
        own = normalise(own, method=self.normalisation, mask=mask)
        prior = normalise(batch.prior.to(own.dtype), method=self.normalisation, mask=mask)
        per_sentence = ((own - prior) ** 2 * mask).sum(1) / mask.sum(1).clamp(min=1)
        align = per_sentence.mean()
        return ce + self.beta * align, {"align": align.item()}
