"""Word-level perturbation masks for the CAP and LIME priors.

A sentence is its whitespace words (``text.split()``); a mask is a bool vector over them, 1 = kept.
Every function draws from an explicit ``np.random.Generator``; ``sentence_rng`` derives one per
sentence from (seed, sentence id), so a sentence's masks do not depend on the order it is processed in.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from pipeline.params import PriorsParams


def sentence_rng(*, seed: int, sentence_id: str) -> np.random.Generator:
    """A generator seeded from ``(seed, sentence_id)`` through a stable hash.

    Python's ``hash()`` is salted per process, so blake2b is used instead: the same pair gives the
    same stream on every run and machine.

    Args:
        seed: the run's seed (any int, negative allowed).
        sentence_id: the sentence's stable id.

    Returns:
        A fresh ``np.random.Generator``.
    """
    digest = hashlib.blake2b(f"{seed}\x00{sentence_id}".encode(), digest_size=16).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def cap_masks(n_words: int, *, n: int, rng: np.random.Generator) -> np.ndarray:
    """CAP perturbations: ``n`` random masks, then the ``n_words`` single-word masks.

    Each random mask removes exactly ``s`` positions chosen uniformly without replacement, with ``s``
    uniform in ``[2, floor(d/2) + 1]`` (d = ``n_words``). For d >= 3 that range never removes every
    word. Short sentences, where it would be empty or remove every word, clamp it to
    ``[min(2, hi), hi]`` with ``hi = min(floor(d/2) + 1, d - 1)``:

    - d = 2: s = 1 (one of the two words removed; the empty sentence is never a random mask);
    - d = 1: s = 0 (the random masks keep the word). The single-word mask already gives the empty
      sentence; without kept rows the intercept-free ridge fit would score the word 0.

    Args:
        n_words: d >= 1.
        n: number of random masks, >= 0.
        rng: the sentence's generator.

    Returns:
        bool array of shape (n + d, d); row n + j removes word j only.
    """
    _check_sizes(n_words, n)
    hi = min(n_words // 2 + 1, n_words - 1)
    removed = rng.integers(min(2, hi), hi + 1, size=n)
    singles = ~np.eye(n_words, dtype=bool)
    return np.concatenate([_random_masks(n_words, removed, rng), singles])


def lime_masks(n_words: int, *, n: int, rng: np.random.Generator) -> np.ndarray:
    """LIME perturbations, drawn as ``LimeTextExplainer`` does with ``bow=False``.

    Row 0 is the unmasked sentence; each other row removes k positions chosen uniformly without
    replacement, k uniform in 1..d (so k = d, the empty sentence, can occur).

    Args:
        n_words: d >= 1.
        n: number of rows including the unmasked one, >= 1 (lime's ``num_samples``).
        rng: the sentence's generator.

    Returns:
        bool array of shape (n, d).
    """
    _check_sizes(n_words, n)
    if n < 1:
        raise ValueError(f"lime_masks: n must be >= 1 (row 0 is the unmasked sentence), got {n}")
    removed = np.concatenate([[0], rng.integers(1, n_words + 1, size=n - 1)])
    return _random_masks(n_words, removed, rng)


def masked_sentence(words: list[str], mask: np.ndarray) -> str:
    """The sentence with removed words deleted, joined by single spaces ("" if all are removed).

    Args:
        words: the sentence's words, length d.
        mask: bool array of shape (d,), 1 = kept.

    Returns:
        The masked sentence.
    """
    if len(words) != len(mask):
        raise ValueError(f"masked_sentence: {len(words)} words but a mask of length {len(mask)}")
    return " ".join(word for word, keep in zip(words, mask) if keep)


MASK_SOURCES = {"cap": cap_masks, "lime": lime_masks}


def perturbations(sentences: pl.DataFrame, *, params: PriorsParams) -> pl.DataFrame:
    """The seeded masks of every sentence: CAP's (n random + d single-word) and LIME's (n samples).

    Each (sentence, source) draws from its own generator seeded by (priors.seed, id, source), so
    the masks do not depend on row order or on the other source's settings.

    Args:
        sentences: id, text, label.
        params: ``priors`` (the seed, ``cap.n`` and ``lime.n``).

    Returns:
        id, source, mask (list of bool, one per whitespace word), label.
    """
    rows = []
    n_by_source = {"cap": params.cap.n, "lime": params.lime.n}
    for sentence_id, text, label in sentences.select("id", "text", "label").iter_rows():
        n_words = len(text.split())
        for source, draw in MASK_SOURCES.items():
            rng = sentence_rng(seed=params.seed, sentence_id=f"{sentence_id}/{source}")
            for mask in draw(n_words, n=n_by_source[source], rng=rng):
                rows.append((sentence_id, source, mask.tolist(), label))
    schema = {"id": pl.String, "source": pl.String, "mask": pl.List(pl.Boolean), "label": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")


def _check_sizes(n_words: int, n: int) -> None:
    if n_words < 1:
        raise ValueError(f"a sentence needs at least one word, got n_words={n_words}")
    if n < 0:
        raise ValueError(f"the number of masks must be >= 0, got n={n}")


def _random_masks(n_words: int, removed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Masks whose row i removes ``removed[i]`` positions, a uniform subset of that size.

    The ranks of i.i.d. uniform keys are a uniform random permutation per row, so "rank < s" is a
    uniform s-subset: one vectorised draw instead of a ``choice`` call per row.
    """
    ranks = rng.random((len(removed), n_words)).argsort(axis=1).argsort(axis=1)
    return ranks >= removed[:, None]
