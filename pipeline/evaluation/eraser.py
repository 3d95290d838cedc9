"""ERASER faithfulness (DeYoung et al. 2020) with the model's own word attribution as rationale.

For a sentence x with predicted label y (argmax on the full input) and rationale r = the top-k%
words by attribution score:

    comprehensiveness_k = p(y | x) - p(y | x \\ r)     (higher: the rationale is needed)
    sufficiency_k       = p(y | x) - p(y | r)         (lower: the rationale alone suffices)

Each is averaged over k (AOPC), then over sentences, and reported in percent like the paper.

Rationale size: n_k = max(1, floor(k * d)) words of a d-word sentence, i.e. never more than k%
of the sentence except for the one word every rationale needs. Ceil would turn the 50% bin of a
9-word utterance into 5 words (more than half), and intent utterances are that short.
Words are ranked by their signed score (the evidence *for* the predicted label); ties go to the
earlier word. Erasing deletes words and re-joins the rest with single spaces, so the model
re-tokenises the new text as it would any input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

FRACTIONS = (0.01, 0.05, 0.10, 0.20, 0.50)


def rationale_size(n_words: int, *, fraction: float) -> int:
    """Number of rationale words for a ``n_words``-word sentence: ``max(1, floor(fraction * n_words))``."""
    # the epsilon keeps float products such as 0.29 * 100 = 28.999... from losing a word
    return max(1, math.floor(fraction * n_words + 1e-9))


def erase(words: Sequence[str], scores: np.ndarray, *, fraction: float) -> tuple[str, str]:
    """Split a sentence into its text without the rationale and its rationale-only text.

    Args:
        words: the sentence's words, d >= 1.
        scores: attribution score per word, shape (d,); the top ``rationale_size`` scores form
            the rationale (ties broken by position, earlier first).
        fraction: rationale size as a fraction of the sentence, in (0, 1].

    Returns:
        (x without r, r alone): each keeps the original word order, joined by single spaces;
        the first is "" when the rationale is the whole sentence.
    """
    scores = np.asarray(scores, dtype=np.float64)
    _check_sentence(words, scores)
    _check_fraction(fraction)
    # stable sort of the negated scores: descending score, equal scores keep their position order
    top = np.argsort(-scores, kind="stable")[: rationale_size(len(words), fraction=fraction)]
    in_rationale = np.zeros(len(words), dtype=bool)
    in_rationale[top] = True
    without = " ".join(w for w, r in zip(words, in_rationale, strict=True) if not r)
    only = " ".join(w for w, r in zip(words, in_rationale, strict=True) if r)
    return without, only


def faithfulness(
    predict_proba: Callable[[list[str]], np.ndarray],
    sentences: Sequence[Sequence[str]],
    scores: Sequence[np.ndarray],
    *,
    fractions: Sequence[float] = FRACTIONS,
) -> dict[str, float]:
    """ERASER comprehensiveness and sufficiency (AOPC over ``fractions``), in percent: the means of ``aopc``.

    Returns:
        {"comprehensiveness": float, "sufficiency": float}: means over sentences of the per-sentence
        AOPC, times 100.
    """
    comprehensiveness, sufficiency = aopc(predict_proba, sentences, scores, fractions=fractions)
    return {
        "comprehensiveness": 100.0 * float(comprehensiveness.mean()),
        "sufficiency": 100.0 * float(sufficiency.mean()),
    }


def aopc(
    predict_proba: Callable[[list[str]], np.ndarray],
    sentences: Sequence[Sequence[str]],
    scores: Sequence[np.ndarray],
    *,
    fractions: Sequence[float] = FRACTIONS,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sentence ERASER comprehensiveness and sufficiency, each averaged over ``fractions`` (AOPC).

    Args:
        predict_proba: texts -> class probabilities, shape (len(texts), C); called once with
            every distinct text (full sentences and all erased variants), so it should batch.
        sentences: N sentences as word lists, each non-empty.
        scores: N attribution arrays, scores[i] of shape (len(sentences[i]),), scoring each word's
            evidence for the model's predicted label.
        fractions: rationale sizes k as fractions of the sentence, each in (0, 1].

    Returns:
        (comprehensiveness, sufficiency): each of shape (N,), probability differences (not percent).
    """
    if len(sentences) == 0:
        raise ValueError("faithfulness needs at least one sentence")
    if len(sentences) != len(scores):
        raise ValueError(f"{len(sentences)} sentences but {len(scores)} score arrays")
    if len(fractions) == 0:
        raise ValueError("faithfulness needs at least one fraction")
    for fraction in fractions:
        _check_fraction(fraction)

    full = [" ".join(words) for words in sentences]
    # erased[i][j] = (without, only) for sentence i and fraction j
    erased = [[erase(words, s, fraction=f) for f in fractions] for words, s in zip(sentences, scores, strict=True)]
    # short sentences give the same variant for several k: score each distinct text once
    texts = list(dict.fromkeys(full + [text for pairs in erased for pair in pairs for text in pair]))
    probs = np.asarray(predict_proba(texts), dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != len(texts):
        raise ValueError(f"predict_proba gave shape {probs.shape} for {len(texts)} texts, expected (n_texts, C)")
    row = {text: i for i, text in enumerate(texts)}
    at_full = np.array([row[t] for t in full])  # (N,)
    at_without = np.array([[row[without] for without, _ in pairs] for pairs in erased])  # (N, K)
    at_only = np.array([[row[only] for _, only in pairs] for pairs in erased])  # (N, K)

    predicted = probs[at_full].argmax(axis=1)  # (N,)
    p_y = probs[at_full, predicted]  # (N,)
    p_without = probs[at_without, predicted[:, None]]  # (N, K)
    p_only = probs[at_only, predicted[:, None]]  # (N, K)
    comprehensiveness = (p_y[:, None] - p_without).mean(axis=1)  # AOPC per sentence, (N,)
    sufficiency = (p_y[:, None] - p_only).mean(axis=1)
    return comprehensiveness, sufficiency


def _check_sentence(words: Sequence[str], scores: np.ndarray) -> None:
    if len(words) == 0:
        raise ValueError("cannot erase from an empty sentence")
    if scores.shape != (len(words),):
        raise ValueError(f"scores of shape {scores.shape} for the {len(words)}-word sentence {' '.join(words)!r}")
    if not np.isfinite(scores).all():
        raise ValueError(f"non-finite attribution score for the sentence {' '.join(words)!r}")


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"rationale fraction must be in (0, 1], got {fraction}")
