"""Control priors: they answer whether alignment can help at all here, and whether any prior does.

- ``oracle``: Integrated Gradients of a cross-entropy student trained on the dataset's full training
  pool (every train row outside validation), a task-aware prior the few-shot student never sees.
  It is ``pipeline.priors.ig.ig_prior`` on that teacher; ``stages/controls.py`` wires it.
- ``random``: a seeded uniform score in [0, 1) per word, drawn per sentence from (seed, id), so it
  does not depend on row order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.perturb import sentence_rng


def random_prior(ids: Sequence[str], words: Sequence[Sequence[str]], *, seed: int) -> list[np.ndarray]:
    """One uniform [0, 1) score per word, seeded by (``seed``, sentence id).

    Args:
        ids: N sentence ids.
        words: N sentences, each a list of words.
        seed: the run's seed (``priors.seed``).

    Returns:
        Per sentence, float64 scores of shape (len(words),).
    """
    return [sentence_rng(seed=seed, sentence_id=f"{i}/random").uniform(size=len(w)) for i, w in zip(ids, words, strict=True)]
