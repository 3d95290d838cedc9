"""The decoy benchmark: a planted, label-indicating word with a known right answer (the positive control).

Every training and validation sentence gets one decoy word at a uniform random position: with
probability ``rate`` the decoy of its own label, otherwise the decoy of another label drawn uniformly
(Rieger et al. 2020's decoy SST, Ross et al. 2017's decoy protocol). The test split is kept clean and
three decoyed copies are made of it, sharing each sentence's insertion position so they differ only
in the word planted there:

- ``matched``: the decoy of the sentence's true label (the shortcut pays);
- ``randomised``: the decoy of a uniformly drawn label (the shortcut is noise: a student that ignores
  the decoy keeps its clean accuracy, one that follows it falls towards chance);
- ``swapped``: the decoy of a uniformly drawn *other* label; the share of predictions that change
  from ``matched`` to ``swapped`` is the decoy-swap flip rate.

Decoy words are nonce words: they must never occur in the dataset (checked on every split,
case-insensitively, as whole words) and must survive the student's tokenizer as their own word
(no unknown token, and no two labels' decoys tokenised alike). Every draw comes from
``sentence_rng(seed, id)``, so a sentence's decoy does not depend on row order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from pipeline.artifacts import decoy_test_split
from pipeline.errors import ConfigError, DataError
from pipeline.params import DECOY_COLUMN
from pipeline.data.perturb import sentence_rng

if TYPE_CHECKING:
    from pipeline.params import DecoyParams, Params

TEST_VARIANTS = ("matched", "randomised", "swapped")


def check_decoy_words(decoys: Mapping[str, str], *, labels: Sequence[str], where: str) -> None:
    """Refuse a decoy map that does not give each label one distinct single word.

    Args:
        decoys: label -> decoy word.
        labels: the dataset's label set.
        where: the params key, for the message.

    Raises:
        ConfigError: a label without a decoy, a decoy for an unknown label, a word with whitespace,
            or two labels sharing a word.
    """
    missing = [label for label in labels if label not in decoys]
    if missing:
        raise ConfigError(f"{where}: no decoy word for label {missing[0]!r}")
    unknown = [label for label in decoys if label not in labels]
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]!r} is not a label of the dataset ({', '.join(labels)})")
    for label, word in decoys.items():
        if not word or word.split() != [word]:
            raise ConfigError(f"{where}.{label}: {word!r} is not one word")
    lowered = [word.lower() for word in decoys.values()]
    if len(set(lowered)) < len(lowered):
        raise ConfigError(f"{where}: two labels share a decoy word")


def check_decoys_absent(decoys: Mapping[str, str], frames: Mapping[str, pl.DataFrame], *, where: str) -> None:
    """Refuse decoy words that occur in the data (whole words, case-insensitive).

    Args:
        decoys: label -> decoy word.
        frames: split name -> frame with ``id`` and ``text``.
        where: the dataset, for the message.

    Raises:
        DataError: naming the word, the split and the first row that holds it.
    """
    words = {word.lower() for word in decoys.values()}
    for split, frame in frames.items():
        for row_id, text in zip(frame["id"], frame["text"]):
            found = words.intersection(text.lower().split())
            if found:
                raise DataError(f"{where}: decoy word {sorted(found)[0]!r} occurs in {split} row {row_id!r}; choose a nonce word")


def check_decoys_tokenised(decoys: Mapping[str, str], tokenizer, *, where: str) -> None:
    """Refuse decoys the student cannot see as their own word.

    Each decoy is tokenised inside a sentence (``encode_words``, as training does): it must get at
    least one token, none of them the unknown token, and no two decoys may get the same tokens.

    Raises:
        ConfigError: naming the word.
    """
    from pipeline.attribution.attribution import encode_words

    seen: dict[tuple[int, ...], str] = {}
    for word in decoys.values():
        encoding, word_index = encode_words(tokenizer, [["the", word, "film"]], max_length=64)
        ids = tuple(encoding["input_ids"][0][word_index[0] == 1].tolist())
        if not ids or tokenizer.unk_token_id in ids:
            raise ConfigError(f"{where}: decoy {word!r} becomes the unknown token for the student's tokenizer")
        if ids in seen:
            raise ConfigError(f"{where}: decoys {seen[ids]!r} and {word!r} tokenise alike for the student")
        seen[ids] = word


def _draw(sentence_id: str, n_words: int, *, seed: int) -> tuple[int, float, float]:
    """The sentence's insertion position (0..n_words), and two uniforms for the decoy's label."""
    rng = sentence_rng(seed=seed, sentence_id=f"{sentence_id}/decoy")
    return int(rng.integers(0, n_words + 1)), float(rng.uniform()), float(rng.uniform())


def _other(labels: Sequence[str], label: str, u: float) -> str:
    others = [x for x in labels if x != label]
    return others[min(int(u * len(others)), len(others) - 1)]


def insert_decoys(frame: pl.DataFrame, decoys: Mapping[str, str], *, labels: Sequence[str], rate: float,
                  seed: int, variant: str = "train") -> pl.DataFrame:
    """One decoy word in every sentence of ``frame`` (``id``, ``text``, ``label``, ...), other columns kept.

    Args:
        frame: the split.
        decoys: label -> decoy word.
        labels: the label set (the order other labels are drawn from).
        rate: ``train``: probability that a sentence carries its own label's decoy (else another's).
        seed: the benchmark's seed.
        variant: ``train`` (training and validation), or one of ``TEST_VARIANTS``.

    Returns:
        ``frame`` with the decoyed text and a ``decoy`` column (the label whose decoy was planted: eX2L's
        confounder on this benchmark), in the same row order.
    """
    if variant != "train" and variant not in TEST_VARIANTS:
        raise ValueError(f"variant must be 'train' or one of {TEST_VARIANTS}, got {variant!r}")
    texts, planted = [], []
    for row_id, text, label in zip(frame["id"], frame["text"], frame["label"]):
        words = text.split()
        position, u_rate, u_label = _draw(row_id, len(words), seed=seed)
        if variant == "train":
            chosen = label if u_rate < rate else _other(labels, label, u_label)
        elif variant == "matched":
            chosen = label
        elif variant == "randomised":
            chosen = labels[min(int(u_label * len(labels)), len(labels) - 1)]
        else:  # swapped
            chosen = _other(labels, label, u_label)
        texts.append(" ".join(words[:position] + [decoys[chosen]] + words[position:]))
        planted.append(chosen)
    return frame.with_columns(pl.Series("text", texts, dtype=pl.String), pl.Series(DECOY_COLUMN, planted, dtype=pl.String))


def decoy_positions(sentences: Iterable[Sequence[str]], decoys: Iterable[str]) -> np.ndarray:
    """The index of the decoy word in each sentence (-1 where there is none).

    Decoys never occur naturally (``check_decoys_absent``), so a word match finds exactly the planted one.
    """
    words = {word.lower() for word in decoys}
    found = []
    for sentence in sentences:
        hits = [i for i, word in enumerate(sentence) if word.lower() in words]
        found.append(hits[0] if hits else -1)
    return np.asarray(found, dtype=np.int64)


def strip_decoys(text: str, decoys: Iterable[str]) -> str:
    """``text`` without its decoy word: the sentence as it was before the benchmark planted one."""
    words = {word.lower() for word in decoys}
    return " ".join(word for word in text.split() if word.lower() not in words)


def decoy_truth_prior(sentences: Sequence[Sequence[str]], decoys: Iterable[str]) -> list[np.ndarray]:
    """The annotation RRR and CDEP use: 0 on the decoy word, uniform (1) on every other word.

    Returns:
        Per sentence, float64 scores of shape (len(words),).
    """
    out = []
    positions = decoy_positions(sentences, decoys)
    for sentence, position in zip(sentences, positions):
        scores = np.ones(len(sentence), dtype=np.float64)
        if position >= 0:
            scores[position] = 0.0
        out.append(scores)
    return out


def decoy_mass(attributions: Sequence[np.ndarray], positions: np.ndarray) -> float:
    """The mean share of |attribution| that falls on the decoy word, over sentences that carry one.

    Args:
        attributions: per sentence, one score per word.
        positions: per sentence, the decoy's word index (-1: none; left out).

    Returns:
        Mean over sentences of |a_decoy| / sum_w |a_w| (NaN where no sentence carries a decoy).
    """
    shares = []
    for scores, position in zip(attributions, positions):
        if position < 0:
            continue
        total = np.abs(scores).sum()
        shares.append(abs(scores[position]) / total if total > 0 else 0.0)
    return float(np.mean(shares)) if shares else float("nan")


def decoy_words(params: Params, dataset: str) -> tuple[str, ...]:
    """The decoy words of ``dataset`` (``data.datasets.<dataset>.decoy.words``), empty for a dataset without decoys."""
    config = params.data.datasets[dataset].decoy
    return tuple(config.words.values()) if config is not None else ()


def strip_frame(frame: pl.DataFrame, decoys: Iterable[str]) -> pl.DataFrame:
    """``frame`` with :func:`strip_decoys` applied to every text (other columns and the row order kept; no decoys: ``frame``)."""
    decoys = tuple(decoys)
    if not decoys:
        return frame
    return frame.with_columns(pl.Series("text", [strip_decoys(text, decoys) for text in frame["text"]], dtype=pl.String))


def decoy_splits(name: str, splits: Mapping[str, pl.DataFrame], decoy: DecoyParams, *, tokenizer,
                 ) -> dict[str, pl.DataFrame]:
    """A dataset's splits made a decoy benchmark: checked, then decoyed train and validation, the clean test and its copies.

    Every check runs before any decoy is planted: the words cover the labels (one distinct word each),
    none occurs in any split, and the student's tokenizer sees each as its own word.

    Args:
        name: the dataset (named in errors, as ``data.datasets.<name>.decoy.words``).
        splits: its sliced train, validation and test frames (id, text, label, ...).
        decoy: ``data.datasets.<name>.decoy``.
        tokenizer: the student's tokenizer (``student.model``).

    Returns:
        train and validation with one decoy each (variant ``train``), test unchanged, and
        ``decoy_test_split(v)`` for every ``TEST_VARIANTS`` v.

    Raises:
        ConfigError: the words do not cover the labels or do not survive the tokenizer.
        DataError: a word occurs in the data (names the split and the row).
    """
    where = f"data.datasets.{name}.decoy.words"
    labels = sorted(set(splits["train"]["label"]))  # the students' class order (pipeline.artifacts.label_names)
    check_decoy_words(decoy.words, labels=labels, where=where)
    check_decoys_absent(decoy.words, splits, where=where)
    check_decoys_tokenised(decoy.words, tokenizer, where=where)
    planted = {split: insert_decoys(splits[split], decoy.words, labels=labels, rate=decoy.rate, seed=decoy.seed)
               for split in ("train", "validation")}
    copies = {decoy_test_split(variant): insert_decoys(splits["test"], decoy.words, labels=labels, rate=decoy.rate,
                                                       seed=decoy.seed, variant=variant) for variant in TEST_VARIANTS}
    return {**splits, **planted, **copies}
