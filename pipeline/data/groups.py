"""Group metrics and cell samplers for spurious-correlation experiments (a text Waterbirds).

A cell is a (label, group) pair, e.g. (positive, books) with products_amazon's ``category`` as the
group. A spurious training subset gives each group a majority label (``spurious_counts``); the test
set is balanced over cells (``balanced_counts``); ``sample_cells`` draws exactly those counts.
Worst-group accuracy is the lowest accuracy over cells, average accuracy their mean (equal to the
plain accuracy on a balanced test set).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipeline.errors import DataError

Cell = tuple[str, str]  # (label, group)


@dataclass(frozen=True)
class GroupAccuracy:
    """Accuracy per (label, group) cell.

    Attributes:
        cells: (label, group) -> accuracy in [0, 1], for every cell with at least one example.
        sizes: (label, group) -> number of examples.
    """

    cells: dict[Cell, float]
    sizes: dict[Cell, int]

    @property
    def worst(self) -> float:
        """Worst-group accuracy: the lowest cell accuracy."""
        return min(self.cells.values())

    @property
    def average(self) -> float:
        """Average accuracy: the unweighted mean of the cell accuracies."""
        return float(np.mean(list(self.cells.values())))


def group_accuracy(*, labels: Sequence[str], groups: Sequence[str], predictions: Sequence[str]) -> GroupAccuracy:
    """Accuracy of ``predictions`` in every (label, group) cell present.

    Args:
        labels: N gold labels.
        groups: N group values (e.g. categories).
        predictions: N predicted labels.

    Returns:
        The per-cell accuracies and sizes.
    """
    if not len(labels) == len(groups) == len(predictions) or not labels:
        raise ValueError(f"need as many labels, groups and predictions, at least one; got {len(labels)}, {len(groups)}, "
                         f"{len(predictions)}")
    frame = pl.DataFrame({"label": labels, "group": groups, "correct": [p == y for p, y in zip(predictions, labels)]})
    table = frame.group_by("label", "group").agg(pl.col("correct").mean(), pl.len()).sort("label", "group")
    return GroupAccuracy(
        cells={(y, g): acc for y, g, acc in table.select("label", "group", "correct").iter_rows()},
        sizes={(y, g): n for y, g, n in table.select("label", "group", "len").iter_rows()},
    )


def balanced_counts(*, labels: Sequence[str], groups: Sequence[str], per_cell: int) -> dict[Cell, int]:
    """``per_cell`` examples in every (label, group) cell: a test set where the group predicts nothing."""
    return {(y, g): per_cell for y in labels for g in groups}


def spurious_counts(
    *, majority: Mapping[str, str], labels: Sequence[str], per_group: int, majority_share: float
) -> dict[Cell, int]:
    """Cell counts where each group mostly carries one label.

    Args:
        majority: group -> its majority label (e.g. books and dvd positive, electronics and
            kitchen negative).
        labels: the label set; the minority share of a group is split evenly over its other labels
            (the first ones get the remainder).
        per_group: examples per group.
        majority_share: share of each group with its majority label, in (0, 1], rounded to a count.

    Returns:
        (label, group) -> count; the counts of each group sum to ``per_group``.
    """
    unknown = sorted(set(majority.values()) - set(labels))
    if unknown:
        raise ValueError(f"majority labels {unknown} are not in the label set {list(labels)}")
    if not 0 < majority_share <= 1 or per_group < 1:
        raise ValueError(f"need 0 < majority_share <= 1 and per_group >= 1; got {majority_share}, {per_group}")
    counts = {}
    for group, top in majority.items():
        n_top = round(majority_share * per_group)
        others = [y for y in labels if y != top]
        share, extra = divmod(per_group - n_top, len(others)) if others else (0, 0)
        counts[(top, group)] = n_top
        counts.update({(y, group): share + (i < extra) for i, y in enumerate(others)})
    return counts


def sample_cells(frame: pl.DataFrame, *, counts: Mapping[Cell, int], group: str, seed: int) -> pl.DataFrame:
    """Draw exactly ``counts[(label, g)]`` rows of every cell, deterministically for ``seed``.

    Cells are visited in sorted order and rows in id order (as ``pipeline.data.fewshot.k_shot``), so the
    draw depends only on the data and the seed. Cells not in ``counts`` get no rows.

    Args:
        frame: rows with columns id, label and ``group``.
        counts: (label, group value) -> rows to draw (>= 0).
        group: the group column.
        seed: the draw's seed.

    Returns:
        The drawn rows, sorted by label, group value, then id.

    Raises:
        DataError: a cell has fewer rows than asked for (naming the cell).
    """
    if group not in frame.columns:
        raise DataError(f"no column {group!r} to sample cells by (has {frame.columns})")
    rng = np.random.default_rng(seed)
    cells = {key: rows for key, rows in frame.sort("id").group_by("label", group, maintain_order=True)}
    picked = []
    for cell, n in sorted(counts.items()):
        rows = cells.get(cell, frame.clear())
        if len(rows) < n:
            raise DataError(f"cell label={cell[0]!r}, {group}={cell[1]!r} has {len(rows)} rows, fewer than the {n} asked for")
        picked.append(rows[np.sort(rng.choice(len(rows), size=n, replace=False))])
    return pl.concat(picked) if picked else frame.clear()
