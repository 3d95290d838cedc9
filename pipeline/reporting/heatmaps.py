"""Word-attribution heatmaps: one HTML page for all sentences and one PNG picture per sentence.

``heatmap_rows`` computes what is drawn: for a few test sentences, every prior (CAP, LIME, IG,
CAP Hybrid) exactly as the prior stages compute them for training sentences (LLM queries go through
the score cache), and the trained CAP Hybrid student's own IG toward its prediction.

Each attribution source of a sentence is one row of words coloured by score: red for positive,
blue for negative, white for zero. A row is scaled by its own largest absolute score, so colours
compare the words of one source, not magnitudes across sources (the sources live on different
scales: LLM surrogate weights, gradients, normalised priors).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import FancyBboxPatch

from pipeline.evaluation.evaluation import self_rationale
from pipeline.io import atomic_write
from pipeline.llm.base import Scorer
from pipeline.llm.cache import ScoreCache
from pipeline.llm.scores import score_sentences
from pipeline.models import load_trained_student, resolve_device
from pipeline.params import Params
from pipeline.prior_sources import DISPLAY_NAMES, HYBRID
from pipeline.priors.fusion import fuse_priors
from pipeline.priors.ig import checkpoint_ig_priors
from pipeline.priors.llm import cap_lime_priors

SHOWN = ("cap", "lime", "ig", HYBRID)  # the prior combinations drawn, in order

_POSITIVE = np.array([0.84, 0.15, 0.16])  # matplotlib's tab:red
_NEGATIVE = np.array([0.12, 0.47, 0.71])  # tab:blue
_LIGHT_TEXT_ABOVE = 0.55  # |scaled score| from which white text reads better than black
# PNG layout, in pixels at _DPI
_DPI = 100
_WIDTH = 1000
_MARGIN = 12
_LINE = 26
_PAD = 4
_GAP = 4
_FONT = FontProperties(family="DejaVu Sans", size=11)
_BOLD = FontProperties(family="DejaVu Sans", size=11, weight="bold")

_HTML_HEAD = """<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>Attribution heatmaps</title>
<style>
body { font-family: "DejaVu Sans", Verdana, sans-serif; margin: 24px; color: #222; }
.sentence { margin: 0 0 18px; padding: 0 0 12px; border-bottom: 1px solid #ddd; }
.meta { font-size: 14px; margin: 0 0 6px; }
.wrong { color: #b00; }
table { border-collapse: collapse; }
td.source { font-size: 13px; font-weight: bold; padding: 3px 12px 3px 0; white-space: nowrap; vertical-align: top; }
span.w { display: inline-block; font-size: 14px; padding: 2px 4px; margin: 1px 0; border-radius: 3px; }
</style>
</head>
<body>
<h1>Attribution heatmaps</h1>
<p>Red: positive score, blue: negative, white: zero. Each row is scaled by its largest absolute
score; hover over a word for its score.</p>
"""


def shown_sentences(test: pl.DataFrame, *, labels: Sequence[str], n: int) -> pl.DataFrame:
    """The first test sentence of each of the first ``n`` labels (``evaluation.heatmap_sentences``).

    Args:
        test: id, text, label of the test split.
        labels: the dataset's labels, sorted.
        n: how many labels are shown.

    Returns:
        one row of ``test`` per shown label, in test order.
    """
    shown = test.filter(pl.col("label").is_in(list(labels[:n])))
    return shown.unique("label", keep="first", maintain_order=True)


def heatmap_rows(shown: pl.DataFrame, *, labels: list[str], params: Params, scorer: Scorer, cache: ScoreCache,
                 teacher: Path, student: Path) -> list[dict]:
    """The rows :func:`render_heatmaps` draws: words, labels, and one attribution per source.

    Args:
        shown: id, text, label of the sentences to draw.
        labels: the label space in prompt order.
        params: the run's parameters (priors, scoring templates, evaluation, student.max_length, device).
        scorer: the teacher LLM; its scores go through ``cache``.
        cache: the score cache.
        teacher: the checkpoint the IG prior comes from (the baseline student).
        student: the trained CAP Hybrid student's checkpoint.

    Returns:
        one mapping per sentence of ``shown`` in :func:`render_heatmaps`' format: the priors of
        ``SHOWN`` by display name, then the student's own IG toward its prediction.
    """
    device = resolve_device(params.device)
    words = [text.split() for text in shown["text"]]
    scores = score_sentences(shown, labels=labels, params=params, scorer=scorer, cache=cache)
    priors = cap_lime_priors(shown, scores, params=params.priors) | {"ig": checkpoint_ig_priors(teacher, shown, params=params)}
    fused = fuse_priors(priors, how=params.priors.fusion, normalisation=params.priors.normalisation)

    model, tokenizer = load_trained_student(student, device=device)
    probabilities, own = self_rationale(model, tokenizer, words, params=params.evaluation,
                                        max_length=params.student.max_length, device=device)
    predicted = probabilities.argmax(axis=1)
    return [
        {
            "id": row["id"], "label": row["label"], "words": words[i],
            "predicted": model.config.id2label[int(predicted[i])], "probability": float(probabilities[i, predicted[i]]),
            "attributions": {
                **{DISPLAY_NAMES[name]: fused[name]["scores"][i].to_numpy() for name in SHOWN},
                f"student ({DISPLAY_NAMES[HYBRID]})": own[i],
            },
        }
        for i, row in enumerate(shown.iter_rows(named=True))
    ]


def render_heatmaps(rows: Sequence[Mapping[str, object]], *, html_out: Path, png_dir: Path) -> None:
    """Write the HTML page and one PNG per sentence.

    Args:
        rows: one mapping per sentence with keys "id" (unique), "label" (true label),
            "predicted" (predicted label), "probability" (of the predicted label, in [0, 1]),
            "words" (list[str], non-empty) and "attributions" (source name -> scores of shape
            (len(words),), drawn in the mapping's order, e.g. "CAP", "LIME", "IG", "CAP Hybrid",
            "student").
        html_out: the HTML file to write.
        png_dir: the folder for "<id>.png" files (characters of the id other than letters,
            digits, ".", "_" and "-" become "_").
    """
    stems = _check_rows(rows)
    page = "\n".join(_html_sentence(row) for row in rows)
    with atomic_write(html_out) as tmp:
        tmp.write_text(_HTML_HEAD + page + "\n</body>\n</html>\n", encoding="utf-8")
    for row, stem in zip(rows, stems, strict=True):
        figure = _png_sentence(row)
        with atomic_write(Path(png_dir) / f"{stem}.png") as tmp:
            figure.savefig(tmp, format="png", dpi=_DPI)


def _html_sentence(row: Mapping[str, object]) -> str:
    attributions = row["attributions"]
    lines = [f'<div class="sentence">\n<div class="meta">{_header(row, markup=True)}</div>\n<table>']
    for source, scores in attributions.items():
        spans = []
        for word, score, scaled in zip(row["words"], scores, _scale(scores), strict=True):
            background, text = _colours(scaled)
            spans.append(
                f'<span class="w" style="background:{_hex(background)};color:{text}" '
                f'title="{score:.4g}">{html.escape(word)}</span>'
            )
        lines.append(f'<tr><td class="source">{html.escape(source)}</td><td>{" ".join(spans)}</td></tr>')
    lines.append("</table>\n</div>")
    return "\n".join(lines)


def _png_sentence(row: Mapping[str, object]) -> Figure:
    """Lay the words out as coloured boxes, wrapping lines at the figure width."""
    renderer = RendererAgg(_WIDTH, _LINE, _DPI)  # only measures text

    def width(text: str, font: FontProperties) -> float:
        return renderer.get_text_width_height_descent(text, font, ismath=False)[0]

    attributions = row["attributions"]
    words_x = _MARGIN + max(width(source, _BOLD) for source in attributions) + 3 * _GAP
    # (x, y) of every box's left edge / line centre, per source; y grows downwards
    y = _MARGIN + 2.5 * _LINE  # below the header and the legend
    placed = []
    for source, scores in attributions.items():
        boxes, x, source_y = [], words_x, y
        for word, scaled in zip(row["words"], _scale(scores), strict=True):
            box = width(word, _FONT) + 2 * _PAD
            if x > words_x and x + box > _WIDTH - _MARGIN:
                x, y = words_x, y + _LINE
            boxes.append((word, scaled, x, y, box))
            x += box + _GAP
        placed.append((source, source_y, boxes))
        y += _LINE + _GAP
    header = _header(row, markup=False)
    legend = "red: positive score, blue: negative, white: zero; each row scaled by its largest |score|"
    # short utterances get a narrow picture: crop to the widest line
    ends = [_MARGIN + width(header, _BOLD), _MARGIN + width(legend, _FONT)]
    ends += [x + box for *_, boxes in placed for *_, x, _, box in boxes]
    figure_width = min(_WIDTH, max(ends) + _MARGIN)
    height = y - _LINE / 2 + _MARGIN

    figure = Figure(figsize=(figure_width / _DPI, height / _DPI), dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, figure_width)
    axes.set_ylim(height, 0)
    axes.set_axis_off()
    text_style = {"va": "center", "parse_math": False}
    axes.text(_MARGIN, _MARGIN + _LINE / 2, header, fontproperties=_BOLD, **text_style)
    axes.text(_MARGIN, _MARGIN + 1.5 * _LINE, legend, fontproperties=_FONT, color="0.4", **text_style)
    box_height = _LINE - 2 * _GAP
    for source, source_y, boxes in placed:
        axes.text(_MARGIN, source_y, source, fontproperties=_BOLD, **text_style)
        for word, scaled, x, line_y, box in boxes:
            background, text = _colours(scaled)
            axes.add_patch(
                FancyBboxPatch(
                    (x, line_y - box_height / 2), box, box_height, boxstyle="round,pad=0,rounding_size=3",
                    facecolor=background, edgecolor="0.85", linewidth=0.5,
                )
            )  # fmt: skip
            axes.text(x + _PAD, line_y, word, fontproperties=_FONT, color=text, **text_style)
    return figure


def _header(row: Mapping[str, object], *, markup: bool) -> str:
    label, predicted = str(row["label"]), str(row["predicted"])
    probability = f"p = {float(row['probability']):.2f}"
    if not markup:
        wrong = "" if predicted == label else "  ·  misclassified"
        return f"{row['id']}  ·  true: {label}  ·  predicted: {predicted} ({probability}){wrong}"
    wrong = "" if predicted == label else ' class="wrong"'
    return (
        f"<b>{html.escape(str(row['id']))}</b> · true: <b>{html.escape(label)}</b> · "
        f"predicted: <b{wrong}>{html.escape(predicted)}</b> ({probability})"
    )


def _scale(scores: np.ndarray) -> np.ndarray:
    """Scores divided by their largest absolute value, in [-1, 1]; all zeros stay zeros."""
    scores = np.asarray(scores, dtype=np.float64)
    peak = np.abs(scores).max()
    return scores / peak if peak > 0 else np.zeros_like(scores)


def _colours(scaled: float) -> tuple[np.ndarray, str]:
    """Background RGB in [0, 1] blended from white towards red (> 0) or blue (< 0), and a text colour."""
    target = _POSITIVE if scaled > 0 else _NEGATIVE
    background = 1.0 + abs(scaled) * (target - 1.0)
    return background, "#ffffff" if abs(scaled) >= _LIGHT_TEXT_ABOVE else "#222222"


def _hex(colour: np.ndarray) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in colour)


def _check_rows(rows: Sequence[Mapping[str, object]]) -> list[str]:
    """Validate every row up front; return the PNG file stems."""
    if len(rows) == 0:
        raise ValueError("render_heatmaps needs at least one row")
    stems = []
    for i, row in enumerate(rows):
        missing = {"id", "label", "predicted", "probability", "words", "attributions"} - row.keys()
        if missing:
            raise ValueError(f"heatmap row {i}: missing keys {sorted(missing)}")
        words, attributions = row["words"], row["attributions"]
        if len(words) == 0 or not attributions:
            raise ValueError(f"heatmap row {i} (id {row['id']!r}): needs words and at least one attribution")
        if not 0.0 <= float(row["probability"]) <= 1.0:
            raise ValueError(f"heatmap row {i} (id {row['id']!r}): probability {row['probability']} not in [0, 1]")
        for source, scores in attributions.items():
            scores = np.asarray(scores)
            if scores.shape != (len(words),) or not np.isfinite(scores).all():
                raise ValueError(
                    f"heatmap row {i} (id {row['id']!r}): {source} scores must be {len(words)} finite numbers, "
                    f"got shape {scores.shape}"
                )
        stems.append(re.sub(r"[^A-Za-z0-9._-]", "_", str(row["id"])))
    if len(set(stems)) != len(stems):
        raise ValueError("heatmap row ids must stay unique as file names (letters, digits, '.', '_', '-')")
    return stems
