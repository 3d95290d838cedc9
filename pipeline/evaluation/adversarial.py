"""Rule-based adversarial test sets: keyword addition and keyword replacement (true label unchanged).

Class keywords come from CAP word scores on the train split; class pairs that share many keywords
are the hard ones, and each test sentence is attacked with the keywords of classes that overlap
its own. Everything is deterministic given the seed.
"""

from __future__ import annotations

import string
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import polars as pl

from pipeline.artifacts import ADVERSARIAL_SCHEMA
from pipeline.data.perturb import sentence_rng

# Function words only: broader lists (e.g. sklearn's) drop intent keywords such as "call", "bill", "find", "show".
STOPWORDS = frozenset(
    """a an the and or but nor so yet if then than because as of at by for from in into on onto out
    over under up down off to with without about above below between through during before after
    again i me my mine myself we us our ours you your yours he him his she her hers it its they them
    their theirs this that these those who whom whose which what when where why how am is are was
    were be been being do does did doing have has had having can could will would shall should may
    might must not no all any some each both just too very also there here please i'm i'd i've i'll
    it's that's there's what's don't doesn't didn't can't won't isn't""".split()
)


def class_keywords(
    *,
    labels: Sequence[str],
    words: Sequence[Sequence[str]],
    scores: Sequence[np.ndarray],
    top_k: int = 10,
    stopwords: frozenset[str] = STOPWORDS,
) -> dict[str, list[str]]:
    """Each class's top words by mean CAP score over the class's sentences.

    Words are lower-cased with surrounding punctuation stripped; stopwords and empty words are
    skipped. Each sentence's scores are first divided by their L2 norm (signs kept), so that every
    sentence weighs the same: raw CAP scores scale with the LLM's confidence. A word absent from a
    sentence counts 0 there, so frequent high-scoring words rank first. Ties break alphabetically.

    Args:
        labels: per train sentence, its class.
        words: per train sentence, its whitespace words.
        scores: per train sentence, its CAP scores (one per word).
        top_k: keywords kept per class.
        stopwords: lower-case words never used as keywords.

    Returns:
        class -> up to ``top_k`` keywords, best first, for every class in ``labels`` (sorted).
    """
    if not len(labels) == len(words) == len(scores):
        raise ValueError(f"class_keywords: {len(labels)} labels, {len(words)} word lists, {len(scores)} score vectors")
    totals: dict[str, defaultdict[str, float]] = {label: defaultdict(float) for label in sorted(set(labels))}
    for i, (label, sentence, sentence_scores) in enumerate(zip(labels, words, scores)):
        if len(sentence) != len(sentence_scores):
            raise ValueError(f"class_keywords: sentence {i} has {len(sentence)} words but {len(sentence_scores)} scores")
        norm = np.linalg.norm(sentence_scores)
        for word, score in zip(sentence, np.asarray(sentence_scores) / (norm if norm > 0 else 1.0)):
            key = keyword_form(word)
            if key and key not in stopwords:
                totals[label][key] += float(score)
    # dividing by the class's sentence count would give the mean without changing the order
    return {
        label: [word for word, _ in sorted(total.items(), key=lambda item: (-item[1], item[0]))[:top_k]]
        for label, total in totals.items()
    }


def class_overlap(keywords: dict[str, list[str]]) -> dict[tuple[str, str], float]:
    """Pairwise class difficulty: Jaccard overlap |K_a & K_b| / |K_a | K_b| of the keyword sets.

    Args:
        keywords: class -> keywords (``class_keywords``).

    Returns:
        (a, b) -> overlap in [0, 1] for every ordered pair of distinct classes (symmetric).
    """
    sets = {label: set(words) for label, words in keywords.items()}
    return {
        (a, b): len(sets[a] & sets[b]) / len(sets[a] | sets[b]) if sets[a] | sets[b] else 0.0
        for a in sets
        for b in sets
        if a != b
    }


def target_classes(
    overlap: dict[tuple[str, str], float], *, per_class: int, rng: np.random.Generator
) -> dict[str, list[str]]:
    """For each source class, ``per_class`` adversarial targets drawn among its most overlapping classes.

    The other classes are ranked by overlap (ties in random order), and ``per_class`` of the top
    ``2 * per_class`` are drawn uniformly without replacement.

    Args:
        overlap: ``class_overlap`` output.
        per_class: targets per source class (1 HWU64, 2 Banking77, 3 CLINC150 in the paper).
        rng: the generator (classes are visited in sorted order, so the result is reproducible).

    Returns:
        source class -> its targets, most overlapping first.
    """
    classes = sorted({a for a, _ in overlap})
    if not 1 <= per_class < len(classes):
        raise ValueError(
            f"target_classes: per_class must be in 1..{len(classes) - 1} for {len(classes)} classes, got {per_class}"
        )
    targets = {}
    for source in classes:
        others = [classes[j] for j in rng.permutation(len(classes)) if classes[j] != source]
        pool = sorted(others, key=lambda other: -overlap[(source, other)])[: 2 * per_class]  # stable: ties stay random
        targets[source] = [pool[j] for j in sorted(rng.choice(len(pool), size=per_class, replace=False))]
    return targets


def keyword_addition(text: str, *, target_keywords: list[str], rng: np.random.Generator, n_insert: int = 2) -> str:
    """Insert ``n_insert`` distinct target-class keywords (fewer if the list is shorter) at random word positions.

    Args:
        text: the test sentence.
        target_keywords: the adversarial class's keywords.
        rng: the generator.
        n_insert: keywords to insert, >= 1.

    Returns:
        The attacked sentence.
    """
    if not target_keywords or n_insert < 1:
        raise ValueError(
            "keyword_addition: needs target keywords and n_insert >= 1 "
            f"(got {len(target_keywords)} keywords, n_insert={n_insert})"
        )
    words = text.split()
    for j in rng.choice(len(target_keywords), size=min(n_insert, len(target_keywords)), replace=False):
        words.insert(int(rng.integers(len(words) + 1)), target_keywords[j])
    return " ".join(words)


def keyword_replacement(
    text: str,
    *,
    source_keywords: list[str],
    target_keywords: list[str],
    rng: np.random.Generator,
    stopwords: frozenset[str] = STOPWORDS,
) -> str:
    """Swap the source-class keywords in ``text`` for target-class keywords.

    Only source keywords that are not also target keywords are swapped (a shared one already points to
    the target). Each distinct swapped word gets one random target keyword, preferring target keywords
    that are not source keywords; surrounding punctuation is kept. Fallback when the text holds no
    source keyword: one random content word (not a stopword, not already a target keyword; any word
    if there is none) is replaced instead, so every sentence is attacked.

    Args:
        text: the test sentence (at least one word).
        source_keywords: the true class's keywords.
        target_keywords: the adversarial class's keywords (non-empty).
        rng: the generator.
        stopwords: words the fallback never replaces.

    Returns:
        The attacked sentence.
    """
    words = text.split()
    if not words or not target_keywords:
        raise ValueError(f"keyword_replacement: needs a non-empty text and target keywords (text {text!r})")
    swappable = set(source_keywords) - set(target_keywords)
    candidates = [word for word in target_keywords if word not in source_keywords] or list(target_keywords)
    positions = [j for j, word in enumerate(words) if keyword_form(word) in swappable]
    if not positions:
        skip = stopwords | set(target_keywords) | {""}
        content = [j for j, word in enumerate(words) if keyword_form(word) not in skip]
        pool = content or list(range(len(words)))
        positions = [pool[int(rng.integers(len(pool)))]]
    swaps: dict[str, str] = {}
    for j in positions:
        lead, core, tail = _split(words[j])
        if core.lower() not in swaps:
            swaps[core.lower()] = candidates[int(rng.integers(len(candidates)))]
        words[j] = lead + swaps[core.lower()] + tail  # punctuation kept: "alarm?" -> "volume?"
    return " ".join(words)


def make_adversarial(
    test: pl.DataFrame,
    keywords: dict[str, list[str]],
    targets: dict[str, list[str]],
    *,
    seed: int,
    n_insert: int = 2,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Build the keyword-addition and keyword-replacement test sets.

    Every test row gives one attacked row per target class of its label, with id
    ``f"{source_id}-add-{target}"`` / ``f"{source_id}-replace-{target}"`` and the true label kept.
    Each attacked row draws from its own generator seeded by (seed, its id), so rows do not depend
    on each other or on the order of ``test``.

    Args:
        test: columns id, text, label.
        keywords: class -> keywords (``class_keywords``).
        targets: class -> adversarial target classes (``target_classes``).
        seed: the run's seed.
        n_insert: keywords inserted per addition.

    Returns:
        (addition, replacement) frames with string columns id, text, label, source_id, target_class.
    """
    missing = {"id", "text", "label"} - set(test.columns)
    if missing:
        raise ValueError(f"make_adversarial: test split lacks columns {sorted(missing)}")
    added, replaced = [], []
    for row in test.select("id", "text", "label").iter_rows(named=True):
        if row["label"] not in targets or row["label"] not in keywords:
            raise ValueError(f"make_adversarial: test row {row['id']!r} has label {row['label']!r} with no keywords or targets")
        for target in targets[row["label"]]:
            add_id, replace_id = f"{row['id']}-add-{target}", f"{row['id']}-replace-{target}"
            add_text = keyword_addition(
                row["text"], target_keywords=keywords[target], rng=sentence_rng(seed=seed, sentence_id=add_id), n_insert=n_insert
            )
            replace_text = keyword_replacement(
                row["text"],
                source_keywords=keywords[row["label"]],
                target_keywords=keywords[target],
                rng=sentence_rng(seed=seed, sentence_id=replace_id),
            )
            added.append((add_id, add_text, row["label"], row["id"], target))
            replaced.append((replace_id, replace_text, row["label"], row["id"], target))
    return (
        pl.DataFrame(added, schema=ADVERSARIAL_SCHEMA, orient="row"),
        pl.DataFrame(replaced, schema=ADVERSARIAL_SCHEMA, orient="row"),
    )


def keyword_form(word: str) -> str:
    """A word's keyword form: surrounding punctuation stripped, lower-cased ("Alarm?" -> "alarm")."""
    return _split(word)[1].lower()


def _split(word: str) -> tuple[str, str, str]:
    """(leading punctuation, core, trailing punctuation); an all-punctuation word is all lead."""
    core = word.strip(string.punctuation)
    start = len(word) - len(word.lstrip(string.punctuation))
    return word[:start], core, word[start + len(core) :]
