"""Control priors: they answer whether alignment can help at all here, and whether any prior does.

- ``oracle``: Integrated Gradients of a cross-entropy student trained on the dataset's full training
  pool (every train row outside validation), a task-aware prior the few-shot student never sees.
  It is ``pipeline.priors.ig.checkpoint_ig_priors`` on that teacher.
- ``random``: a seeded uniform score in [0, 1) per word, drawn per sentence from (seed, id), so it
  does not depend on row order.
- ``decoy_truth``: the decoy benchmark's annotation (``pipeline.data.decoy.decoy_truth_prior``): 0 on the
  planted decoy, 1 on every other word; on a dataset without decoys it is uniform, which is what the
  annotation says there.

For a decoy benchmark the oracle's teacher is trained on the decoy-free text (stages/oracle_teacher.py),
so its IG on the decoyed training sentences is that of a model that never saw the shortcut.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from pipeline.artifacts import priors_frame
from pipeline.data.decoy import decoy_truth_prior
from pipeline.data.perturb import sentence_rng
from pipeline.priors.ig import checkpoint_ig_priors

if TYPE_CHECKING:
    from pipeline.params import Params


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


def control_priors(sentences: pl.DataFrame, *, teacher: Path, params: Params, decoys: Iterable[str] = (),
                   ) -> dict[str, pl.DataFrame]:
    """Every control prior of a setting's training sentences.

    Args:
        sentences: id, text, label.
        teacher: the oracle teacher's checkpoint (the full-pool cross-entropy student).
        params: ``priors.seed`` (random) and what :func:`checkpoint_ig_priors` reads (oracle).
        decoys: the dataset's decoy words (``pipeline.data.decoy.decoy_words``; none: decoy_truth is uniform).

    Returns:
        {"oracle": frame, "random": frame, "decoy_truth": frame} in the priors contract.
    """
    ids, words = sentences["id"].to_list(), [text.split() for text in sentences["text"]]
    return {
        "oracle": checkpoint_ig_priors(teacher, sentences, params=params),
        "random": priors_frame(ids, words, random_prior(ids, words, seed=params.priors.seed)),
        "decoy_truth": priors_frame(ids, words, decoy_truth_prior(words, decoys)),
    }
