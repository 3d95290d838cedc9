"""Results report: Table-1-style mean ± sd tables, paired tests against the baseline and against each row's
ablation, the paper's figures.

Input layout: ``metrics/<dataset>/<setting>/<model name>-seed<S>.json``, each a JSON object with the
keys in ``METRIC_KEYS`` (all in percent), and where the setting has adversarial sets
``metrics/<dataset>/<setting>/adversarial/<model name>-seed<S>.json`` with ``ADVERSARIAL_KEYS``. A student
(a "method" row) is an objective, or an objective with a prior (``pipeline.artifacts.model_name``);
its display name, its place in the tables, whether it is the paper's row and the ablation it is paired with come
from the objective registry (``pipeline.training.objectives``: the registry's order, each class's ``display``, ``paper``
and ``ablation``) and the prior sources. A k-shot setting carries its data seed in its name
(``k5-seed0`` .. ``k5-seed4``); those settings form one group (``k5``) and each (data seed,
training seed) pair is one replicate, named ``<setting>/seed<S>``. A setting without a seed
suffix (``full``) is its own group. Replicates with the same name are paired across methods.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl
from scipy.stats import t as student_t
from scipy.stats import wilcoxon

from pipeline.artifacts import adversarial_metrics_of, model_name, parse_model_name
from pipeline.errors import ArtifactError
from pipeline.io import atomic_write
from pipeline.params import setting_group
from pipeline.prior_sources import COMBINATIONS, DISPLAY_NAMES, HYBRID
from pipeline.training.objectives import OBJECTIVES, objective_class, paper_objective

METRIC_KEYS = ("accuracy", "validation_accuracy", "comprehensiveness", "sufficiency")
ADVERSARIAL_KEYS = ("adv_add_accuracy", "adv_replace_accuracy", "adv_accuracy")
# the four metrics of the paper's tables, with their column labels
TABLE_METRICS = {
    "accuracy": "Acc",
    "adv_accuracy": "Acc AD",
    "comprehensiveness": "Com ↑",
    "sufficiency": "Suf ↓",
}
BASELINE = "baseline"  # the reference row of every paired comparison (and the IG prior's teacher)
PAPER_ROW = model_name(paper_objective() or BASELINE, HYBRID)  # the paper's CAP Hybrid row (registry: ``paper``)
DATASETS = {"hwu64": "HWU64", "banking77": "Banking77", "clinc150": "CLINC150"}
# (setting group, dataset) -> method -> (accuracy, adversarial accuracy), from METHOD.md
PAPER = {
    ("k5", "hwu64"): {BASELINE: (75.56, 62.36), PAPER_ROW: (79.09, 70.63)},
    ("k5", "banking77"): {BASELINE: (74.04, 53.82), PAPER_ROW: (78.63, 58.05)},
    ("k5", "clinc150"): {BASELINE: (87.99, 71.70), PAPER_ROW: (89.69, 74.70)},
    ("full", "banking77"): {BASELINE: (92.63, 70.29), PAPER_ROW: (93.51, 84.97)},
}
# the decoy benchmark's columns (pipeline.evaluation.evaluation): accuracies and flip rate in %, decoy mass a share,
# cosine in [-1, 1]
DECOY_KEYS = ("decoy_matched_accuracy", "decoy_randomised_accuracy", "decoy_flip_rate", "decoy_mass", "decoy_ig_gap")
PRIOR_KEYS = ("prior_cosine", "prior_spearman")  # a prior student's accurate IG against its prior
PRIOR_DECOY_MASS = "decoy_mass:"  # collect_diagnostics' column prefix of a prior's share on the decoy
CONTROL_COLUMNS = {"accuracy": "Clean", "decoy_matched_accuracy": "Matched", "decoy_randomised_accuracy": "Randomised",
                   "decoy_flip_rate": "Flip rate", "decoy_mass": "Decoy mass", "decoy_ig_gap": "IG gap",
                   "prior_cosine": "Prior cos"}
# shown, not paired with the baseline: the baseline has no prior, and the gap is the decoy mass's precision, not an effect
UNPAIRED_CONTROL_KEYS = (*PRIOR_KEYS, "decoy_ig_gap")
# the positive controls' priors first, within each objective: the known answer, the controls, then the LLM's priors
CONTROL_PRIORS = ("decoy_truth", "oracle", "random", "cap", "lime", "ig", "cap+ig+lime")
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
WILCOXON_MIN_PAIRS = 6  # below 6 non-zero pairs the exact two-sided p is never < 0.05
MDE_ALPHA, MDE_POWER = 0.05, 0.8

_FILE_NAME = re.compile(r"(?P<method>.+)-seed(?P<seed>\d+)\.json")
_CURVE_NAME = re.compile(r"(?P<method>.+)-seed(?P<seed>\d+)\.csv")
_SCHEMA = {
    "dataset": pl.String,
    "setting_group": pl.String,
    "replicate": pl.String,
    "method": pl.String,
} | {key: pl.Float64 for key in METRIC_KEYS + ADVERSARIAL_KEYS}


def display_name(model: str) -> str:
    """The report's name of a student: "Baseline", "CAP Hybrid", "Oracle IG (control)", "AGM", "RRR (CAP)", ...

    A prior row of the paper's objective (its class's ``paper``) is named by its prior alone, like the
    paper's table, another objective's as "<display> (<prior>)"; names that no objective or prior
    declares are shown as they are.
    """
    objective, prior = parse_model_name(model)
    if objective not in OBJECTIVES or (prior is not None and prior not in DISPLAY_NAMES):
        return model
    cls = objective_class(objective)
    if prior is None:
        return cls.display
    return DISPLAY_NAMES[prior] if cls.paper else f"{cls.display} ({DISPLAY_NAMES[prior]})"


def method_rank(model: str, *, priors: Iterable[str] = ()) -> tuple[int, int, int, str]:
    """Sort key of a row: objectives in the registry's order, each one's prior-free row first, then its
    prior rows (``priors`` first, in that order, then the other combinations in ``COMBINATIONS`` order);
    names that no objective or prior declares last, alphabetically."""
    objective, prior = parse_model_name(model)
    if objective not in OBJECTIVES or (prior is not None and prior not in COMBINATIONS):
        return (1, 0, 0, model)
    first = list(priors)
    order = first + [name for name in COMBINATIONS if name not in first]
    return (0, list(OBJECTIVES).index(objective), -1 if prior is None else order.index(prior), "")


def ablation_of(model: str) -> tuple[str, str] | None:
    """The model name of the row ``model`` is paired with in the ablation table, and what the ablation takes
    away (the registry's ``ablation`` of its objective); None for a row without one (or that is its own)."""
    objective, prior = parse_model_name(model)
    ablation = objective_class(objective).ablation if objective in OBJECTIVES else None
    row = ablation.row(objective, prior) if ablation is not None else None
    return None if row is None else (model_name(*row), ablation.what)


def collect(metrics_dir: Path) -> pl.DataFrame:
    """Read every metrics file under ``metrics_dir`` into one frame.

    Args:
        metrics_dir: the directory holding ``<dataset>/<setting>/<method>-seed<S>.json``.

    Returns:
        One row per student: dataset, setting_group, replicate, method (its model name), the
        ``METRIC_KEYS`` columns, the ``ADVERSARIAL_KEYS`` columns (null where not attacked), and a
        column per further key a profile asked for (targets, group accuracies, ...; null where absent).

    Raises:
        ArtifactError: the directory is missing or empty, or a file is misnamed, not a JSON
            object, or lacks a metric / holds a non-numeric or out-of-range one (names the file).
    """
    metrics_dir = Path(metrics_dir)
    if not metrics_dir.is_dir():
        raise ArtifactError(f"{metrics_dir}: metrics directory not found (run the pipeline first)")
    paths = sorted(metrics_dir.glob("*/*/*.json"))
    if not paths:
        raise ArtifactError(f"{metrics_dir}: no metrics files <dataset>/<setting>/<model name>-seed<S>.json")
    rows = []
    for path in paths:
        attacked = adversarial_metrics_of(path)
        adversarial = _checked(_read_json_object(attacked), ADVERSARIAL_KEYS, where=str(attacked)) if attacked.is_file() else {}
        rows.append(_read_metrics(path) | {key: adversarial.get(key) for key in ADVERSARIAL_KEYS})
    extra = {key: pl.Float64 for row in rows for key in row if key not in _SCHEMA}
    return pl.DataFrame(rows, schema=_SCHEMA | extra)


def results_table(frame: pl.DataFrame, *, metrics: dict[str, str] | None = None,
                  title: str = "Accuracy and faithfulness") -> str:
    """Markdown tables like the paper's Table 1, one per setting group.

    Args:
        frame: the output of ``collect``.

    Returns:
        Rows = methods (the paper's eight in order, then any others by name); columns = dataset x
        {Acc, Acc AD (where attacked), Com, Suf}, each cell "mean ± sd" over replicates (sd with ddof=1, "–" for a
        single replicate; the cell is "–" when the method was not run on that dataset).
    """
    lines = [f"## {title}", ""]
    metrics = metrics or _table_metrics(frame)
    for group, sub in _groups(frame):
        datasets = _ordered(sub["dataset"], DATASETS)
        runs = {
            (row["dataset"], row["method"]): row
            for row in sub.group_by("dataset", "method").agg(pl.col(list(metrics))).iter_rows(named=True)
        }
        sizes = sub.group_by("dataset", "method").len().group_by("dataset").agg(low=pl.min("len"), high=pl.max("len"))
        n_runs = {dataset: (low, high) for dataset, low, high in sizes.iter_rows()}
        counts = ", ".join(_count_range(_name(d, DATASETS), *n_runs[d]) for d in datasets)
        header = [f"{_name(d, DATASETS)} {label}" for d in datasets for label in metrics.values()]
        lines += [
            f"### Setting `{group}`",
            "",
            f"Mean ± sd (ddof=1) over replicates, in %; replicates per method: {counts}. Com / Suf: ERASER AOPC on at "
            "most `evaluation.eraser_sentences` test sentences (a sample fixed by id); accuracy reads the whole split.",
            "",
            _markdown_row(["Method", *header]),
            _markdown_row(["---"] + ["---:"] * len(header)),
        ]
        for method in _methods(sub["method"]):
            row = [display_name(method)]
            for dataset in datasets:
                run = runs.get((dataset, method))
                # "–": not run on this dataset, or not measured there (a dataset nobody attacked)
                row += ["–"] * len(metrics) if run is None else [_mean_sd_or_dash(pl.Series(run[m])) for m in metrics]
            lines.append(_markdown_row(row))
        lines.append("")
    return "\n".join(lines)


def paired_tests(frame: pl.DataFrame, *, metrics: dict[str, str] | None = None,
                 title: str = "Paired comparison with the baseline") -> str:
    """Each method against the baseline over paired replicates, per setting group, dataset and metric.

    The primary statistic is a paired bootstrap 95% CI of the mean difference (method - baseline),
    percentile method, ``BOOTSTRAP_RESAMPLES`` resamples of the pairs, seeded per cell so a cell
    does not depend on which others exist. A two-sided Wilcoxon signed-rank p is added when at
    least ``WILCOXON_MIN_PAIRS`` pairs differ, since with fewer it cannot reach p < 0.05.

    Args:
        frame: the output of ``collect``.

    Returns:
        A Markdown section: one table per (setting group, dataset), rows = methods with n pairs,
        cells "+mean diff [low, high]" (* when the CI excludes 0), or "n/a (1 replicate)".
    """
    mde = metrics is None  # the detectable difference of accuracy, in the main table
    lines = [
        f"## {title}",
        "",
        f"Primary: paired bootstrap 95% CI of the mean difference (method − baseline, percentage points), "
        f"replicates matched by data seed and training seed, {BOOTSTRAP_RESAMPLES:,} resamples (seed "
        f"{BOOTSTRAP_SEED}); `*` marks a CI that excludes 0. With few pairs the percentile bootstrap is "
        f"too narrow: read it as descriptive. Secondary: two-sided Wilcoxon signed-rank p, shown when "
        f"at least {WILCOXON_MIN_PAIRS} pairs differ. `MDE Acc`: the smallest true accuracy difference a "
        f"paired t-test on these pairs would detect with {MDE_POWER:.0%} power at α = {MDE_ALPHA} "
        f"((t₁₋α/₂ + t_power) · sd of the differences / √n, df = n − 1).",
        "",
    ]
    metrics = metrics or _table_metrics(frame)
    for group, sub in _groups(frame):
        for dataset in _ordered(sub["dataset"], DATASETS):
            lines += [f"### Setting `{group}`, {_name(dataset, DATASETS)}", ""]
            runs = sub.filter(pl.col("dataset") == dataset)
            baseline = runs.filter(pl.col("method") == BASELINE)
            others = [m for m in _methods(runs["method"]) if m != BASELINE]
            if baseline.is_empty() or not others:
                lines += ["No baseline run or no other method: nothing to compare.", ""]
                continue
            columns = len(metrics) + mde
            lines += [
                _markdown_row(["Method", "n"] + list(metrics.values()) + ["MDE Acc"] * mde),
                _markdown_row(["---", "---:"] + ["---:"] * columns),
            ]
            for method in others:
                pairs, cells = _paired_cells(runs.filter(pl.col("method") == method), baseline,
                                             [*metrics, *(["accuracy"] * mde)], against="baseline")
                if mde and len(pairs) > 1:  # the last column: the accuracy's MDE, not its CI
                    cells[-1] = f"{detectable_difference((pairs['accuracy'] - pairs['accuracy_reference']).to_numpy()):.2f}"
                lines.append(_markdown_row([display_name(method), str(len(pairs)), *cells]))
            lines.append("")
    return "\n".join(lines)


def ablation_tests(frame: pl.DataFrame, *, metrics: dict[str, str] | None = None,
                   title: str = "Paired comparison with the ablation") -> str:
    """Each row against its ablation: the row the registry pairs it with (``ablation_of``: AGM with random
    tokens, a prior-guided row with the random prior, ...), where both were run on the same setting group and
    dataset.

    The statistic is the paired one of ``paired_tests`` (``_paired_cell``): a bootstrap 95% CI of the mean
    difference row − ablation over the replicates both share (same data seed and training seed).

    Args:
        frame: the output of ``collect``.
        metrics: metric column -> label; default: the main table's.
        title: the section's title.

    Returns:
        A Markdown section, one table per (setting group, dataset) with at least one such pair; empty string
        when no row's ablation was run beside it.
    """
    metrics = metrics or _table_metrics(frame)
    tables = []
    for group, sub in _groups(frame):
        for dataset in _ordered(sub["dataset"], DATASETS):
            runs = sub.filter(pl.col("dataset") == dataset)
            ran = set(runs["method"])
            rows = [(m, *found) for m in _methods(runs["method"]) if (found := ablation_of(m)) and found[0] in ran]
            if not rows:
                continue
            lines = [f"### Setting `{group}`, {_name(dataset, DATASETS)}", "",
                     _markdown_row(["Method", "Ablation", "Takes away", "n", *metrics.values()]),
                     _markdown_row(["---", "---", "---", "---:"] + ["---:"] * len(metrics))]
            for method, ablation, what in rows:
                pairs, cells = _paired_cells(runs.filter(pl.col("method") == method),
                                             runs.filter(pl.col("method") == ablation), list(metrics), against="ablation")
                lines.append(_markdown_row([display_name(method), display_name(ablation), what, str(len(pairs)), *cells]))
            tables += lines + [""]
    if not tables:
        return ""
    return "\n".join([
        f"## {title}",
        "",
        "Each row against its ablation, the same method with what it adds taken away (the objective registry's "
        "`ablation`), where both were run: paired bootstrap 95% CI of the mean difference (row − ablation, "
        f"percentage points), replicates matched by data seed and training seed, {BOOTSTRAP_RESAMPLES:,} "
        f"resamples (seed {BOOTSTRAP_SEED}); `*` marks a CI that excludes 0; Wilcoxon p as in the comparison "
        "with the baseline.",
        "",
        *tables,
    ])


def further_metrics(frame: pl.DataFrame) -> str:
    """The metrics a profile asked for beyond the paper's (targets, group accuracies, a second rationale).

    Args:
        frame: the output of ``collect``.

    Returns:
        Mean ± sd tables and paired comparisons with the baseline and with each row's ablation, like
        the main ones (empty string when there are no further metrics).
    """
    # the decoy and alignment keys have their own sections (positive_controls, prior_alignment)
    keys = [key for key in frame.columns if key not in _SCHEMA and key not in DECOY_KEYS + PRIOR_KEYS
            and frame[key].drop_nulls().len() > 0]
    if not keys:
        return ""
    metrics = {key: _metric_label(key) for key in keys}
    return "\n".join([
        results_table(frame, metrics=metrics, title="Further metrics"),
        paired_tests(frame, metrics=metrics, title="Further metrics: paired comparison with the baseline"),
        ablation_tests(frame, metrics=metrics, title="Further metrics: paired comparison with the ablation"),
    ])


def training_fit(curves_dir: Path) -> str:
    """Whether every row fits: each student's logged training CE (its curve, ``pipeline.artifacts.training_curve_file``)
    averaged over its first and its last quarter of steps, then over the students of a (setting group, dataset, method);
    beside it the last-quarter means of the terms its objective names in ``fit_terms`` (ALIGN's mask mean and spread).

    Args:
        curves_dir: the directory holding ``<dataset>/<setting>/<model name>-seed<S>.csv`` (step, loss, ce, align, then
            the objective's terms); teachers' curves one level up are not students' and are left out.

    Returns:
        a Markdown section; empty when the directory holds no student curve.

    Raises:
        ArtifactError: a curve is misnamed, in a folder that is not a setting, unreadable, has no finite ``ce``
            values or lacks a column of its objective's ``fit_terms`` (names the file).
    """
    rows, terms_of = [], {}  # terms_of: (setting group, dataset, method) -> each student's {term: last-quarter mean}
    for path in sorted(Path(curves_dir).glob("*/*/*.csv")):
        name = _CURVE_NAME.fullmatch(path.name)
        if name is None:
            raise ArtifactError(f"{path}: file name is not <model name>-seed<S>.csv")
        try:
            curve = pl.read_csv(path)
            ce = curve["ce"].cast(pl.Float64).to_numpy()
        except (pl.exceptions.PolarsError, OSError) as error:
            raise ArtifactError(f"{path}: not a training curve with a 'ce' column ({error})") from None
        if len(ce) == 0 or not np.isfinite(ce).all():
            raise ArtifactError(f"{path}: column 'ce' is empty or holds a non-finite value")
        quarter = max(1, len(ce) // 4)
        terms = {}
        for term in _fit_terms(name["method"]):
            if term not in curve.columns:
                raise ArtifactError(f"{path}: no column {term!r}, which its objective reports (fit_terms)")
            last = curve[term].cast(pl.Float64).fill_null(math.nan).to_numpy()[-quarter:]
            terms[term] = float(np.nanmean(last)) if np.isfinite(last).any() else math.nan
        key = (_setting_group_of(path), path.parent.parent.name, name["method"])
        rows.append((*key, float(ce[:quarter].mean()), float(ce[-quarter:].mean()), len(ce)))
        terms_of.setdefault(key, []).append(terms)
    if not rows:
        return ""
    curves = pl.DataFrame(rows, schema=["setting_group", "dataset", "method", "first", "last", "steps"], orient="row")
    lines = ["## Training fit", "",
             "Each student's logged training cross-entropy (its curve under `reports/curves/`, `dvc plots show`), mean "
             "over its first and its last quarter of steps, then mean ± sd over the students of a row: a row whose "
             "CE does not fall did not fit, and its other numbers say little. Own terms: the terms the "
             "objective itself reports (its `fit_terms`), over the last quarter.", "",
             "| Setting | Dataset | Method | n | steps | CE, first quarter | CE, last quarter | Own terms, last quarter |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for group, runs in _groups(curves):
        for dataset in _ordered(runs["dataset"], DATASETS):
            ours = runs.filter(pl.col("dataset") == dataset)
            for method in _methods(ours["method"]):
                row = ours.filter(pl.col("method") == method)
                fewest, most = int(row["steps"].min()), int(row["steps"].max())
                students = terms_of[(group, dataset, method)]
                terms = "; ".join(f"{term} {_mean_sd_or_dash(pl.Series([t[term] for t in students]).fill_nan(None))}"
                                  for term in _fit_terms(method))
                lines.append(_markdown_row([group, _name(dataset, DATASETS), display_name(method), str(len(row)),
                                            str(most) if fewest == most else f"{fewest}–{most}",
                                            _mean_sd(row["first"].to_list()), _mean_sd(row["last"].to_list()), terms]))
    return "\n".join(lines) + "\n"


def _fit_terms(model: str) -> tuple[str, ...]:
    """The logged terms the objective of the student ``model`` reports in the training-fit table (none if unregistered)."""
    objective, _ = parse_model_name(model)
    return objective_class(objective).fit_terms if objective in OBJECTIVES else ()


def positive_controls(frame: pl.DataFrame, *, ceilings: dict[str, str]) -> str:
    """The decoy benchmarks: does a prior make the student ignore a planted shortcut?

    One pair of tables per (setting group, decoy dataset): mean ± sd of the clean, matched and randomised
    accuracy, the decoy-swap flip rate, the decoy mass and the alignment to the prior, with the ceiling
    (the baseline of the decoy-free twin, clean accuracy only); then each row's paired difference to the
    baseline with its bootstrap 95% CI (``_paired_cell``), the ceiling's paired by replicate too; then each
    row's paired difference to its ablation (``ablation_tests``: a guided row against the random prior's).

    Args:
        frame: the output of ``collect``.
        ceilings: decoy dataset -> its ceiling twin (``data.datasets.<name>.decoy.ceiling``).

    Returns:
        A Markdown section (empty string when no decoy benchmark was evaluated).
    """
    if "decoy_randomised_accuracy" not in frame.columns:
        return ""
    decoyed = frame.filter(pl.col("decoy_randomised_accuracy").is_not_null())
    if decoyed.is_empty():
        return ""
    columns = {key: label for key, label in CONTROL_COLUMNS.items() if key in frame.columns}
    compared = {key: label for key, label in columns.items() if key not in UNPAIRED_CONTROL_KEYS}
    lines = [
        "## Positive controls",
        "",
        "Decoy benchmarks (`pipeline/data/decoy.py`): every training and validation sentence carries a nonce word that "
        "names its label; the test is clean (Clean), or carries the true label's decoy (Matched) or a random "
        "label's (Randomised). A student that ignores the decoy keeps its clean accuracy on the randomised test; "
        "one that follows it falls towards chance. Flip rate: % of test sentences whose prediction changes when "
        "the decoy is swapped for another label's. Decoy mass: mean share of |IG| on the decoy (accurate IG "
        "toward the prediction, randomised test), a share in [0, 1], reported beside the accuracies, never "
        "instead of them. IG gap: that IG's median relative completeness gap, the decoy mass's numerical precision "
        "(a student trained on its input gradients can need more than `evaluation.decoy_ig_steps`). "
        "Prior cos: cosine between a prior student's accurate |IG| and its prior on its "
        "training sentences (at most `evaluation.alignment_sentences`, a sample fixed by sentence id). "
        "Ceiling: the baseline of the same data without decoys (clean accuracy).",
        "",
    ]
    for group, sub in _groups(decoyed):
        for dataset in _ordered(sub["dataset"], DATASETS):
            runs = sub.filter(pl.col("dataset") == dataset)
            ceiling = _ceiling(frame, group=group, dataset=dataset, ceilings=ceilings)
            methods = _methods(runs["method"], priors=CONTROL_PRIORS)
            lines += [f"### Setting `{group}`, {_name(dataset, DATASETS)}", "",
                      "Mean ± sd (ddof=1) over replicates.", "",
                      _markdown_row(["Method", "n", *columns.values()]),
                      _markdown_row(["---"] + ["---:"] * (len(columns) + 1))]
            for method in methods:
                run = runs.filter(pl.col("method") == method)
                lines.append(_markdown_row([display_name(method), str(len(run)),
                                            *(_mean_sd_or_dash(run[key]) for key in columns)]))
            if not ceiling.is_empty():
                lines.append(_markdown_row([f"Ceiling ({ceilings[dataset]}, no decoy)", str(len(ceiling)),
                                            _mean_sd(ceiling["accuracy"].to_list()), *["–"] * (len(columns) - 1)]))
            baseline = runs.filter(pl.col("method") == BASELINE)
            lines += ["", "Paired difference to the baseline (row − baseline, bootstrap 95% CI, `*`: excludes 0), "
                      "n pairs matched by data seed and training seed.", "",
                      _markdown_row(["Method", "n pairs", *compared.values()]),
                      _markdown_row(["---"] + ["---:"] * (len(compared) + 1))]
            others = [(display_name(m), runs.filter(pl.col("method") == m), compared) for m in methods if m != BASELINE]
            if not ceiling.is_empty():
                others.append((f"Ceiling ({ceilings[dataset]}, no decoy)", ceiling, {"accuracy": "Clean"}))
            for name, run, keys in others:
                pairs = run.join(baseline, on="replicate", suffix="_baseline")
                cells = [("n/a" if len(pairs) < 2 else _paired_cell((pairs[k] - pairs[f"{k}_baseline"]).to_numpy()))
                         if k in keys else "–" for k in compared]
                lines.append(_markdown_row([name, str(len(pairs)), *cells]))
            lines.append("")
    # a prior's content vs the loss alone: on a small decoy benchmark any diffuse prior can drop the decoy
    ablations = ablation_tests(decoyed, metrics=compared, title="Positive controls: paired comparison with the ablation")
    return "\n".join(lines + ([ablations] if ablations else []))


def prior_alignment(frame: pl.DataFrame) -> str:
    """How close each prior student's accurate attribution came to its prior (``PRIOR_KEYS``), mean ± sd.

    Args:
        frame: the output of ``collect``.

    Returns:
        A Markdown section, one table per setting group (empty string when no student had a prior).
    """
    present = [key for key in PRIOR_KEYS if key in frame.columns]
    aligned = frame.filter(pl.any_horizontal(pl.col(present).is_not_null())) if present else frame.clear()
    if aligned.is_empty():
        return ""
    lines = ["## Alignment of prior students to their priors", "",
             "Per training sentence (at most `evaluation.alignment_sentences` of them, a sample fixed by sentence "
             "id), the cosine and Spearman ρ between the student's accurate |IG| (toward the gold "
             "label, `evaluation.decoy_ig_steps` steps) and the prior it was trained with, averaged; mean ± sd over "
             "replicates. A loss that changes attributions moves these towards 1.", ""]
    for group, sub in _groups(aligned):
        lines += [f"### Setting `{group}`", "", _markdown_row(["Dataset", "Method", "n", "cos", "ρ"]),
                  _markdown_row(["---", "---", "---:", "---:", "---:"])]
        for dataset in _ordered(sub["dataset"], DATASETS):
            runs = sub.filter(pl.col("dataset") == dataset)
            for method in _methods(runs["method"]):
                run = runs.filter(pl.col("method") == method)
                lines.append(_markdown_row([_name(dataset, DATASETS), display_name(method), str(len(run)),
                                            *(_mean_sd_or_dash(run[key]) if key in run.columns else "–" for key in PRIOR_KEYS)]))
        lines.append("")
    return "\n".join(lines)


def positive_controls_plot(frame: pl.DataFrame, *, ceilings: dict[str, str]) -> pl.DataFrame:
    """The DVC plot data of the positive controls: randomised accuracy (mean) by row, and each ceiling's clean accuracy.

    Returns:
        setting, dataset, method (display name), randomised_accuracy; no rows without a decoy benchmark.
    """
    schema = {"setting": pl.String, "dataset": pl.String, "method": pl.String, "randomised_accuracy": pl.Float64}
    if "decoy_randomised_accuracy" not in frame.columns:
        return pl.DataFrame(schema=schema)
    decoyed = frame.filter(pl.col("decoy_randomised_accuracy").is_not_null())
    rows = []
    for group, sub in _groups(decoyed):
        for dataset in _ordered(sub["dataset"], DATASETS):
            runs = sub.filter(pl.col("dataset") == dataset)
            rows += [(group, _name(dataset, DATASETS), display_name(method),
                      float(runs.filter(pl.col("method") == method)["decoy_randomised_accuracy"].mean()))
                     for method in _methods(runs["method"], priors=CONTROL_PRIORS)]
            ceiling = _ceiling(frame, group=group, dataset=dataset, ceilings=ceilings)["accuracy"]
            if ceiling.len():
                rows.append((group, _name(dataset, DATASETS), "Ceiling (no decoy, clean)", float(ceiling.mean())))
    return pl.DataFrame(rows, schema=schema, orient="row")


def _metric_label(key: str) -> str:
    """``transfer_gap@tweets`` -> "Δ tweets", ``comprehensiveness_grad_input`` -> "Com ↑ (G×I)", ..."""
    name, _, target = key.partition("@")
    rationale = " (G×I)" if name.endswith("_grad_input") else ""
    name = name.removesuffix("_grad_input")
    label = {**TABLE_METRICS, "transfer_gap": "Δ", "average_group_accuracy": "Avg-group Acc",
             "worst_group_accuracy": "Worst-group Acc"}.get(name, name)
    return f"{label}{rationale}" + (f" {target}" if target else "")


def detectable_difference(differences: np.ndarray, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """The minimum detectable mean difference of a two-sided paired t-test.

    MDE = (t_{1 - alpha/2, n-1} + t_{power, n-1}) * sd(differences, ddof=1) / sqrt(n).

    Args:
        differences: n >= 2 paired differences.
        alpha: the test's level.
        power: the probability of detecting a true difference of that size.

    Returns:
        The difference, in the unit of ``differences``.
    """
    n = len(differences)
    if n < 2:
        raise ValueError(f"detectable_difference: need at least 2 pairs, got {n}")
    quantiles = student_t.ppf(1 - alpha / 2, n - 1) + student_t.ppf(power, n - 1)
    return float(quantiles * np.std(differences, ddof=1) / math.sqrt(n))


def teacher_diagnostics(diagnostics: pl.DataFrame) -> str:
    """The teacher's zero-shot accuracy beside chance and the prior agreement, per dataset and setting.

    Args:
        diagnostics: the output of ``collect_diagnostics``.

    Returns:
        A Markdown section (empty string when there are no diagnostics).
    """
    if diagnostics.is_empty():
        return ""
    pairs = [c for c in diagnostics.columns if "~" in c]
    masses = [c for c in diagnostics.columns if c.startswith(PRIOR_DECOY_MASS)]
    header = ["Dataset", "Setting", "Zero-shot acc", "Chance", *(f"ρ {p.replace('~', ' ~ ')}" for p in pairs),
              *(f"Decoy mass {c.removeprefix(PRIOR_DECOY_MASS)}" for c in masses)]
    lines = [
        "## Teacher diagnostics",
        "",
        "Zero-shot accuracy: the teacher LLM with the CAP prompt as a classifier on the test split "
        "(arg-max of log p(label | prompt) over the label space), in %. ρ: mean per-sentence Spearman "
        "correlation between two priors' word scores on the setting's training sentences. Decoy mass (decoy "
        "benchmarks only): each prior's mean share of |score| on the planted decoy word of the training sentences, "
        "beside a uniform prior's; a prior that sees through the shortcut puts less there than uniform.",
        "",
        _markdown_row(header),
        _markdown_row(["---", "---"] + ["---:"] * (len(header) - 2)),
    ]
    for row in diagnostics.sort("dataset", "setting").iter_rows(named=True):
        lines.append(_markdown_row([
            _name(row["dataset"], DATASETS), row["setting"], f"{row['zero_shot_accuracy']:.2f}", f"{row['chance']:.2f}",
            *(f"{row[p]:.3f}" for p in pairs), *("–" if row[c] is None else f"{row[c]:.3f}" for c in masses),
        ]))
    return "\n".join(lines + [""])


def collect_diagnostics(metrics_dir: Path) -> pl.DataFrame:
    """Read every ``<dataset>/<setting>/teacher/diagnostics.json`` under ``metrics_dir``.

    Returns:
        One row per setting: dataset, setting, zero_shot_accuracy, chance, one column per prior pair and, on
        decoy benchmarks, one ``PRIOR_DECOY_MASS`` + prior column (null elsewhere).
    """
    rows = []
    for path in sorted(Path(metrics_dir).glob("*/*/teacher/diagnostics.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            rows.append({"dataset": path.parents[2].name, "setting": path.parents[1].name,
                         "zero_shot_accuracy": float(record["zero_shot_accuracy"]), "chance": float(record["chance"]),
                         **{pair: float(rho) for pair, rho in record["spearman"].items()},
                         **{PRIOR_DECOY_MASS + name: float(m) for name, m in record.get("decoy_mass", {}).items()}})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{path}: not a teacher diagnostics file ({type(exc).__name__}: {exc})") from None
    return pl.DataFrame(rows)


def paper_comparison(frame: pl.DataFrame) -> str:
    """The paper's accuracy and adversarial accuracy (baseline, CAP Hybrid) beside ours.

    Args:
        frame: the output of ``collect``.

    Returns:
        A Markdown section: a table for the (setting group, dataset) pairs that were run, with our
        mean ± sd and the CAP Hybrid - Baseline gap, and one line per paper setting that was not run.
    """
    lines = [
        "## Comparison with the paper",
        "",
        "The paper used a RoBERTa-base student and a Llama-3-8B-Instruct teacher; where our models "
        "differ, compare the gap between the methods rather than absolute values.",
        "",
    ]
    table, missing = [], []
    for (group, dataset), figures in PAPER.items():
        runs = frame.filter((pl.col("setting_group") == group) & (pl.col("dataset") == dataset))
        where = f"{DATASETS[dataset]}, setting `{group}`"
        if runs.is_empty():
            missing.append(f"- {where}: no matching setting was run.")
            continue
        ours = {m: runs.filter(pl.col("method") == m) for m in figures}
        for method, (acc, adv) in figures.items():
            acc_ours, adv_ours = (_mean_sd_or_missing(ours[method], m) for m in ("accuracy", "adv_accuracy"))
            table.append([group, DATASETS[dataset], display_name(method), f"{acc:.2f}", acc_ours, f"{adv:.2f}", adv_ours])
        (base_acc, base_adv), (hyb_acc, hyb_adv) = figures[BASELINE], figures[PAPER_ROW]
        table.append(
            [group, DATASETS[dataset], f"Δ {display_name(PAPER_ROW)} − {display_name(BASELINE)}", f"{hyb_acc - base_acc:+.2f}"]
            + [_gap(ours, "accuracy"), f"{hyb_adv - base_adv:+.2f}", _gap(ours, "adv_accuracy")]
        )
    if table:
        header = ["Setting", "Dataset", "Method", "Acc (paper)", "Acc (ours)", "Acc AD (paper)", "Acc AD (ours)"]
        lines += [
            _markdown_row(header),
            _markdown_row(["---", "---", "---"] + ["---:"] * 4),
            *(_markdown_row(row) for row in table),
            "",
        ]
    return "\n".join(lines + missing + [""])


def oracle_note(frame: pl.DataFrame, *, max_train: int | None) -> str:
    """What the oracle control's teacher was trained on, where a student with the oracle prior was evaluated
    (``priors.oracle.max_train``; empty string otherwise)."""
    if not any(parse_model_name(method)[1] == "oracle" for method in frame["method"].unique()):
        return ""
    pool = "the whole training pool" if max_train is None else f"at most {max_train} sentences of the training pool"
    return (f"{DISPLAY_NAMES['oracle']}: IG of a cross-entropy teacher trained on {pool} of its dataset "
            f"(`priors.oracle.max_train: {max_train}`).\n")


def write_report(*, metrics_dir: Path, out: Path, ceilings: dict[str, str] | None = None,
                 oracle_max_train: int | None = None, curves_dir: Path | None = None) -> Path:
    """Write ``out/results.md`` and the DVC plots files ``out/accuracy_by_method.csv`` and
    ``out/positive_controls.csv`` (``positive_controls_plot``), atomically.

    Args:
        metrics_dir: the directory read by ``collect``.
        out: the report directory (created if missing).
        ceilings: decoy dataset -> its ceiling twin (``positive_controls``).
        oracle_max_train: the oracle teacher's pool cap (``priors.oracle.max_train``; ``oracle_note``).
        curves_dir: the students' training curves (``training_fit``); None leaves the section out.

    Returns:
        the path of results.md.

    The CSV holds one row per (setting, dataset, method): setting, dataset, method (display name)
    and accuracy (mean over replicates, in %).
    """
    frame = collect(metrics_dir)
    text = "\n".join(
        [
            "# Results",
            "",
            f"Generated from {len(frame)} metrics files under `{Path(metrics_dir).as_posix()}`.",
            "",
            oracle_note(frame, max_train=oracle_max_train),
            results_table(frame),
            paired_tests(frame),
            ablation_tests(frame),
            further_metrics(frame),
            training_fit(curves_dir) if curves_dir is not None else "",
            positive_controls(frame, ceilings=ceilings or {}),
            prior_alignment(frame),
            teacher_diagnostics(collect_diagnostics(metrics_dir)),
            paper_comparison(frame),
        ]
    )
    out = Path(out)
    results = out / "results.md"
    with atomic_write(results) as tmp:
        tmp.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    means = frame.group_by("setting_group", "dataset", "method").agg(pl.col("accuracy").mean())
    rows = sorted(means.iter_rows(), key=lambda r: (r[0], _rank(r[1], DATASETS), method_rank(r[2])))
    accuracy = pl.DataFrame(
        [(group, _name(dataset, DATASETS), display_name(method), acc) for group, dataset, method, acc in rows],
        schema={"setting": pl.String, "dataset": pl.String, "method": pl.String, "accuracy": pl.Float64},
        orient="row",
    )
    with atomic_write(out / "accuracy_by_method.csv") as tmp:
        accuracy.write_csv(tmp, float_precision=4)
    with atomic_write(out / "positive_controls.csv") as tmp:
        positive_controls_plot(frame, ceilings=ceilings or {}).write_csv(tmp, float_precision=4)
    return results


def _read_json_object(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: not a readable JSON file ({type(exc).__name__}: {exc})") from None
    if not isinstance(record, dict):
        raise ArtifactError(f"{path}: expected a JSON object, got {type(record).__name__}")
    return record


def _checked(record: dict, keys: tuple[str, ...], *, where: str) -> dict[str, float]:
    for key in keys:
        if key not in record:
            raise ArtifactError(f"{where}: missing key {key!r} (has {sorted(record)})")
        value = record[key]
        # bool is an int subclass: reject it explicitly
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ArtifactError(f"{where}: key {key!r} must be a finite number, got {value!r}")
        # com / suf are probability drops and a transfer gap a difference: they can be < 0
        low = 0.0 if key.partition("@")[0].endswith("accuracy") else -100.0
        if not low <= value <= 100.0:
            raise ArtifactError(f"{where}: key {key!r} = {value} is outside [{low:g}, 100] (expected percent)")
    return {key: float(record[key]) for key in keys}


def _read_metrics(path: Path) -> dict[str, object]:
    name = _FILE_NAME.fullmatch(path.name)
    if name is None:
        raise ArtifactError(f"{path}: file name is not <model name>-seed<S>.json")
    record = _read_json_object(path)
    metrics = _checked(record, METRIC_KEYS + tuple(k for k in record if k not in METRIC_KEYS), where=str(path))
    setting = path.parent.name
    return {
        "dataset": path.parent.parent.name,
        "setting_group": _setting_group_of(path),
        "replicate": f"{setting}/seed{int(name['seed'])}",
        "method": name["method"],
    } | metrics


def _setting_group_of(path: Path) -> str:
    """The setting group of a student's file ``<dataset>/<setting>/<file>``; ArtifactError naming the file if its
    folder is not a setting."""
    try:
        return setting_group(path.parent.name)
    except ValueError as error:
        raise ArtifactError(f"{path}: {error}") from None


def _table_metrics(frame: pl.DataFrame) -> dict[str, str]:
    """``TABLE_METRICS`` without the adversarial one where no student was attacked."""
    return {key: label for key, label in TABLE_METRICS.items() if frame[key].drop_nulls().len() > 0}


def _ceiling(frame: pl.DataFrame, *, group: str, dataset: str, ceilings: dict[str, str]) -> pl.DataFrame:
    """The baseline runs of a decoy benchmark's ceiling twin in the same setting group (empty without one)."""
    return frame.filter((pl.col("setting_group") == group) & (pl.col("dataset") == ceilings.get(dataset, ""))
                        & (pl.col("method") == BASELINE))


def _groups(frame: pl.DataFrame) -> Iterable[tuple[str, pl.DataFrame]]:
    for group in sorted(frame["setting_group"].unique()):
        yield group, frame.filter(pl.col("setting_group") == group)


def _methods(names: pl.Series, *, priors: Iterable[str] = ()) -> list[str]:
    """The distinct rows of ``names`` in the report's order (``method_rank``)."""
    return sorted(set(names), key=lambda name: method_rank(name, priors=priors))


def _ordered(names: pl.Series, known: dict[str, str] | list[str]) -> list[str]:
    return sorted(set(names), key=lambda name: _rank(name, known))


def _rank(name: str, known: dict[str, str] | list[str]) -> tuple[int, int, str]:
    """Sort key: the known names in their canonical order, then any others alphabetically."""
    order = list(known)
    return (0, order.index(name), "") if name in known else (1, 0, name)


def _name(name: str, known: dict[str, str]) -> str:
    return known.get(name, name)


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _mean_sd(values: list[float]) -> str:
    mean = float(np.mean(values))
    return f"{mean:.2f} ± –" if len(values) == 1 else f"{mean:.2f} ± {float(np.std(values, ddof=1)):.2f}"


def _mean_sd_or_dash(values: pl.Series) -> str:
    present = values.drop_nulls().to_list()
    return _mean_sd(present) if present else "–"


def _mean_sd_or_missing(runs: pl.DataFrame, metric: str) -> str:
    values = runs[metric].drop_nulls().to_list()
    return _mean_sd(values) if values else "not run"


def _gap(ours: dict[str, pl.DataFrame], metric: str) -> str:
    base, hybrid = (ours[m][metric].drop_nulls() for m in (BASELINE, PAPER_ROW))
    return "–" if base.is_empty() or hybrid.is_empty() else f"{float(hybrid.mean()) - float(base.mean()):+.2f}"


def _count_range(name: str, low: int, high: int) -> str:
    return f"{name} {low}" if low == high else f"{name} {low}–{high}"


def _paired_cells(run: pl.DataFrame, reference: pl.DataFrame, metrics: list[str], *,
                  against: str) -> tuple[pl.DataFrame, list[str]]:
    """``run`` joined with ``reference`` on the replicate (columns ``<metric>_reference``) and one cell per metric:
    ``_paired_cell`` of the differences, or "n/a" with the reason when fewer than 2 replicates are shared (``against``
    names the reference row in it)."""
    pairs = run.join(reference, on="replicate", suffix="_reference")
    if len(pairs) < 2:
        why = "1 replicate" if len(pairs) == 1 else f"no replicate shared with the {against}"
        return pairs, [f"n/a ({why})"] * len(metrics)
    return pairs, [_paired_cell((pairs[m] - pairs[f"{m}_reference"]).to_numpy()) for m in metrics]


def paired_ci(differences: np.ndarray) -> tuple[float, float]:
    """The report's 95 % CI of the mean of paired differences, shape (n,): percentile bootstrap, seeded."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    resampled = differences[rng.integers(0, len(differences), size=(BOOTSTRAP_RESAMPLES, len(differences)))]
    low, high = np.percentile(resampled.mean(axis=1), [2.5, 97.5])
    return float(low), float(high)


def _paired_cell(differences: np.ndarray) -> str:
    low, high = paired_ci(differences)
    cell = f"{differences.mean():+.2f} [{low:+.2f}, {high:+.2f}]" + ("*" if low > 0 or high < 0 else "")
    if np.count_nonzero(differences) >= WILCOXON_MIN_PAIRS:
        cell += f" p={wilcoxon(differences).pvalue:.3f}"
    return cell
