"""Cross-entropy only: the reference of every comparison and the teacher of the IG prior."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.training.objectives.base import Objective


@dataclass(frozen=True)
class Baseline(Objective):
    """L = CE. Logs no further term."""

    display = "Baseline"

    def loss(self, *, model, modules, batch, logits, ce, phase, epoch):
        return ce, {}
