import json
import re
import statistics
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.artifacts import ADVERSARIAL_METRICS
from pipeline.errors import ArtifactError
from pipeline.reporting.report import (
    ADVERSARIAL_KEYS,
    METRIC_KEYS,
    PAPER_ROW,
    ablation_tests,
    collect,
    collect_diagnostics,
    detectable_difference,
    display_name,
    further_metrics,
    paired_tests,
    paper_comparison,
    results_table,
    teacher_diagnostics,
    training_fit,
    write_report,
)
from pipeline.training.objectives import OBJECTIVES
from pipeline.training.objectives.base import Ablation, Objective

METHOD_OFFSET = {"baseline": 0.0, "guided.cap": 2.0, "guided.cap+ig+lime": 3.5, "guided.ig": -1.0}


def _metrics(data_seed: int, train_seed: int, method: str) -> dict[str, float]:
    """Distinct, irregular values per replicate so means and sds are non-trivial."""
    base = 60.0 + 1.73 * data_seed + 0.417 * train_seed**2 + METHOD_OFFSET[method]
    return {
        "accuracy": base,
        "validation_accuracy": base + 1.0,
        "adv_add_accuracy": base - 8.0,
        "adv_replace_accuracy": base - 12.0,
        "adv_accuracy": base - 10.0 + 0.31 * data_seed,
        "comprehensiveness": 40.0 + 2.0 * train_seed + METHOD_OFFSET[method],
        "sufficiency": 30.0 - data_seed - METHOD_OFFSET[method],
    }


def _write(root: Path, dataset: str, setting: str, method: str, seed: int, record: dict) -> Path:
    """The evaluate stage's file for the student, and its adversarial keys into its attack stage's file."""
    path = root / dataset / setting / f"{method}-seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: v for k, v in record.items() if k not in ADVERSARIAL_KEYS}))
    attacked = {k: v for k, v in record.items() if k in ADVERSARIAL_KEYS}
    if attacked:
        (path.parent / ADVERSARIAL_METRICS).mkdir(exist_ok=True)
        (path.parent / ADVERSARIAL_METRICS / path.name).write_text(json.dumps(attacked))
    return path


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    """hwu64 k5: 3 data seeds x 2 training seeds for baseline, cap, CAP Hybrid; ig only on data seed 0
    with training seed 0 (one replicate). banking77 full: one run of baseline and CAP Hybrid."""
    root = tmp_path / "metrics"
    for data_seed in range(3):
        for train_seed in range(2):
            for method in ("baseline", "guided.cap", "guided.cap+ig+lime"):
                record = _metrics(data_seed, train_seed, method)
                _write(root, "hwu64", f"k5-seed{data_seed}", method, train_seed, record)
    _write(root, "hwu64", "k5-seed0", "guided.ig", 0, _metrics(0, 0, "guided.ig"))
    for method in ("baseline", "guided.cap+ig+lime"):
        _write(root, "banking77", "full", method, 0, _metrics(0, 0, method))
    return root


def _row(text: str, section: str, first_cell: str) -> list[str]:
    """Cells of the Markdown row starting with ``first_cell`` in the section titled ``section``."""
    body = text.split(section, 1)[1].split("###", 1)[0]
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} under {section!r}")


def test_collect_reads_every_file_and_groups_seeded_settings(metrics_dir: Path):
    frame = collect(metrics_dir)

    assert frame.columns == ["dataset", "setting_group", "replicate", "method", *METRIC_KEYS, *ADVERSARIAL_KEYS]
    assert len(frame) == 3 * 2 * 3 + 1 + 2
    assert set(frame["setting_group"]) == {"k5", "full"}
    cap = frame.filter((pl.col("dataset") == "hwu64") & (pl.col("method") == "guided.cap"))
    assert sorted(cap["replicate"]) == [f"k5-seed{d}/seed{t}" for d in range(3) for t in range(2)]
    row = cap.filter(pl.col("replicate") == "k5-seed2/seed1").row(0, named=True)
    assert {key: row[key] for key in METRIC_KEYS + ADVERSARIAL_KEYS} == _metrics(2, 1, "guided.cap")
    assert frame.filter(pl.col("setting_group") == "full")["replicate"].to_list() == ["full/seed0", "full/seed0"]


def test_results_table_shows_mean_and_sd_over_replicates(metrics_dir: Path):
    table = results_table(collect(metrics_dir))

    replicates = [(d, t) for d in range(3) for t in range(2)]
    for method, display in (("baseline", "Baseline"), ("guided.cap", "CAP"), ("guided.cap+ig+lime", "CAP Hybrid")):
        cells = _row(table, "### Setting `k5`", display)
        expected = []
        for key in ("accuracy", "adv_accuracy", "comprehensiveness", "sufficiency"):
            values = [_metrics(d, t, method)[key] for d, t in replicates]
            expected.append(f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}")
        assert cells[1:] == expected
    # one replicate: no sd
    assert _row(table, "### Setting `k5`", "IG")[1] == f"{_metrics(0, 0, 'guided.ig')['accuracy']:.2f} ± –"
    # the paper's method order, whatever the file order
    k5 = table.split("### Setting `k5`")[1]
    assert [k5.index(f"| {m} |") for m in ("Baseline", "IG", "CAP", "CAP Hybrid")] == sorted(
        k5.index(f"| {m} |") for m in ("Baseline", "IG", "CAP", "CAP Hybrid")
    )
    assert "HWU64 Acc AD" in k5 and "Banking77" not in k5
    assert "replicates per method: HWU64 1–6" in k5
    full = _row(table, "### Setting `full`", "CAP Hybrid")
    assert full[1] == f"{_metrics(0, 0, 'guided.cap+ig+lime')['accuracy']:.2f} ± –"


def test_results_table_marks_a_method_missing_on_one_dataset(tmp_path: Path):
    root = tmp_path / "metrics"
    for dataset in ("hwu64", "clinc150"):
        _write(root, dataset, "k5-seed0", "baseline", 0, _metrics(0, 0, "baseline"))
    _write(root, "clinc150", "k5-seed0", "guided.cap", 0, _metrics(0, 0, "guided.cap"))

    cells = _row(results_table(collect(root)), "### Setting `k5`", "CAP")

    assert cells[1:5] == ["–"] * 4  # HWU64 comes first and has no CAP run
    assert cells[5] == f"{_metrics(0, 0, 'guided.cap')['accuracy']:.2f} ± –"


def test_results_table_dashes_the_adversarial_cell_of_a_dataset_nobody_attacked(tmp_path: Path):
    # the default profile: the decoy benchmark is attacked, its ceiling twin (baseline only) is not
    root = tmp_path / "metrics"
    clean = {k: v for k, v in _metrics(0, 0, "baseline").items() if k not in ADVERSARIAL_KEYS}
    _write(root, "banking77_mini", "k5-seed0", "baseline", 0, clean)
    _write(root, "banking77_mini_decoy", "k5-seed0", "baseline", 0, _metrics(0, 0, "baseline"))

    cells = _row(results_table(collect(root)), "### Setting `k5`", "Baseline")

    assert cells[1:5] == [f"{clean['accuracy']:.2f} ± –", "–", f"{clean['comprehensiveness']:.2f} ± –",
                          f"{clean['sufficiency']:.2f} ± –"]
    assert cells[6] == f"{_metrics(0, 0, 'baseline')['adv_accuracy']:.2f} ± –"


def test_paired_tests_against_the_baseline(metrics_dir: Path):
    frame = collect(metrics_dir)
    text = paired_tests(frame)

    assert "Primary: paired bootstrap 95% CI" in text
    cells = _row(text, "### Setting `k5`, HWU64", "CAP")
    assert cells[1] == "6"
    # every CAP replicate is exactly 2.0 points above its baseline: a degenerate CI at +2.00,
    # and six positive differences give the exact two-sided Wilcoxon p = 2 / 2**6 = 0.03125
    assert cells[2] == "+2.00 [+2.00, +2.00]* p=0.031"
    assert cells[5] == "-2.00 [-2.00, -2.00]* p=0.031"  # sufficiency: 30 - d - 2
    assert cells[6] == "0.00"  # identical differences: any true difference would be detected
    assert _row(text, "### Setting `k5`, HWU64", "IG")[1:] == ["1"] + ["n/a (1 replicate)"] * 5
    assert _row(text, "### Setting `full`, Banking77", "CAP Hybrid")[2] == "n/a (1 replicate)"
    assert paired_tests(frame) == text  # seeded


def test_detectable_difference_matches_the_paired_t_test_power():
    # sd 1, n = 5: (t_0.975,4 + t_0.8,4) / sqrt(5) = (2.776 + 0.941) / 2.236
    differences = np.array([-1.0, -0.5, 0.0, 0.5, 1.0]) / np.std([-1.0, -0.5, 0.0, 0.5, 1.0], ddof=1)
    assert detectable_difference(differences) == pytest.approx(1.6625, abs=1e-3)
    assert detectable_difference(np.tile(differences, 4)) < detectable_difference(differences) / 2  # ~1/sqrt(n)
    with pytest.raises(ValueError, match="at least 2 pairs"):
        detectable_difference(np.array([1.0]))


def test_teacher_diagnostics_are_reported(tmp_path: Path):
    folder = tmp_path / "metrics" / "banking77" / "k5-seed0" / "teacher"
    folder.mkdir(parents=True)
    (folder / "diagnostics.json").write_text(json.dumps(
        {"zero_shot_accuracy": 41.5, "chance": 20.0, "sentences": 200, "spearman": {"cap~lime": 0.25, "cap~ig": -0.125}}))
    text = teacher_diagnostics(collect_diagnostics(tmp_path / "metrics"))
    assert _row(text, "## Teacher diagnostics", "Banking77") == ["Banking77", "k5-seed0", "41.50", "20.00", "0.250", "-0.125"]
    (folder / "diagnostics.json").write_text("{}")
    with pytest.raises(ArtifactError, match="diagnostics.json: not a teacher diagnostics file"):
        collect_diagnostics(tmp_path / "metrics")


def test_teacher_diagnostics_show_the_priors_decoy_mass_where_there_is_a_decoy(tmp_path: Path):
    record = {"zero_shot_accuracy": 41.5, "chance": 20.0, "sentences": 200, "spearman": {"cap~lime": 0.25}}
    for dataset, decoy in (("banking77_mini", {}), ("banking77_mini_decoy", {"cap": 0.5, "uniform": 0.125})):
        folder = tmp_path / "metrics" / dataset / "k5-seed0" / "teacher"
        folder.mkdir(parents=True)
        (folder / "diagnostics.json").write_text(json.dumps(record | ({"decoy_mass": decoy} if decoy else {})))
    text = teacher_diagnostics(collect_diagnostics(tmp_path / "metrics"))
    header = next(line for line in text.splitlines() if line.startswith("| Dataset"))
    assert header.endswith("| Decoy mass cap | Decoy mass uniform |")
    rows = [line for line in text.splitlines() if "k5-seed0" in line]
    assert rows[0].endswith("| 0.250 | – | – |") and rows[1].endswith("| 0.250 | 0.500 | 0.125 |")


def test_paired_bootstrap_interval_brackets_the_mean_difference(tmp_path: Path):
    root = tmp_path / "metrics"
    shifts = [0.5, 3.0, -1.0, 2.5]
    for data_seed, shift in enumerate(shifts):
        base = _metrics(data_seed, 0, "baseline")
        _write(root, "hwu64", f"k5-seed{data_seed}", "baseline", 0, base)
        _write(root, "hwu64", f"k5-seed{data_seed}", "guided.cap", 0, base | {"accuracy": base["accuracy"] + shift})

    cell = _row(paired_tests(collect(root)), "### Setting `k5`, HWU64", "CAP")[2]

    mean, low, high = (float(x) for x in re.fullmatch(r"([-+][\d.]+) \[([-+][\d.]+), ([-+][\d.]+)\]", cell).groups())
    assert mean == pytest.approx(statistics.mean(shifts), abs=0.005)
    # resampled means lie between the smallest and the largest difference
    assert min(shifts) <= low < mean < high <= max(shifts)
    assert "p=" not in cell  # 4 pairs: too few for the Wilcoxon test


def test_paper_comparison_puts_matching_settings_beside_ours(metrics_dir: Path):
    text = paper_comparison(collect(metrics_dir))

    cells = _row(text, "## Comparison", "k5")  # first k5 row: HWU64 baseline
    values = [_metrics(d, t, "baseline")["accuracy"] for d in range(3) for t in range(2)]
    ours = f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"
    assert cells[1:5] == ["HWU64", "Baseline", "75.56", ours]
    assert "| k5 | HWU64 | Δ CAP Hybrid − Baseline | +3.53 | +3.50 | +8.27 | +3.50 |" in text
    assert "| full | Banking77 | CAP Hybrid | 93.51 |" in text
    assert "Banking77, setting `k5`: no matching setting was run." in text
    assert "CLINC150, setting `k5`: no matching setting was run." in text


def test_write_report_writes_markdown_and_plot_csv(metrics_dir: Path, tmp_path: Path):
    out = tmp_path / "reports"
    write_report(metrics_dir=metrics_dir, out=out)

    text = (out / "results.md").read_text(encoding="utf-8")
    assert text.startswith("# Results")
    assert "max_train" not in text  # no oracle row, no note on its teacher
    for section in ("## Accuracy and faithfulness", "## Paired comparison", "## Comparison with the paper"):
        assert section in text
    csv = pl.read_csv(out / "accuracy_by_method.csv")
    assert csv.columns == ["setting", "dataset", "method", "accuracy"]
    hybrid = csv.filter((pl.col("setting") == "k5") & (pl.col("method") == "CAP Hybrid"))
    expected = statistics.mean(_metrics(d, t, "guided.cap+ig+lime")["accuracy"] for d in range(3) for t in range(2))
    assert hybrid["dataset"].to_list() == ["HWU64"]
    assert hybrid["accuracy"][0] == pytest.approx(expected, abs=1e-4)
    assert len(csv) == 4 + 2  # k5: baseline, ig, cap, CAP Hybrid on hwu64; full: two on banking77
    # no temporaries; no decoy benchmark here, so the positive controls' plot has its header only
    assert sorted(p.name for p in out.iterdir()) == ["accuracy_by_method.csv", "positive_controls.csv", "results.md"]
    assert pl.read_csv(out / "positive_controls.csv").is_empty() and "## Positive controls" not in text


def _curve(path: Path, ce: list[float], **terms: list[float | None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"step": range(len(ce)), "loss": ce, "ce": ce, "align": [0.0] * len(ce), **terms}).write_csv(path)


def test_training_fit_averages_each_students_first_and_last_quarter_of_steps(tmp_path: Path):
    curves = tmp_path / "curves"
    _curve(curves / "sst2" / "k32-seed0" / "baseline-seed0.csv", [0.7, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    _curve(curves / "sst2" / "k32-seed1" / "baseline-seed0.csv", [0.9, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.3])
    _curve(curves / "sst2" / "k32-seed0" / "regex-seed0.csv", [0.69] * 9)  # 9 steps: quarters of 2
    _curve(curves / "sst2" / "oracle-teacher-seed0.csv", [5.0])  # a teacher's, not a row's
    # ALIGN reports its mask (fit_terms); a phase that does not log a term leaves it empty, left out of the mean
    _curve(curves / "sst2" / "k32-seed0" / "align-seed0.csv", [0.6, 0.5, 0.4, 0.3],
           mask_mean=[0.9, 0.5, 0.4, 0.2], mask_spread=[0.0, 0.1, 0.2, None])
    _curve(curves / "sst2" / "k32-seed0" / "align-seed1.csv", [0.6, 0.5, 0.4, 0.3],
           mask_mean=[0.9, 0.5, 0.4, 0.4], mask_spread=[0.0, 0.1, 0.2, 0.4])
    text = training_fit(curves)
    header = "| Setting | Dataset | Method | n | steps | CE, first quarter | CE, last quarter | Own terms, last quarter |"
    assert header in text
    rows = [line for line in text.splitlines() if line.startswith("| k32")]
    assert rows == ["| k32 | sst2 | Baseline | 2 | 8 | 0.75 ± 0.07 | 0.20 ± 0.07 |  |",
                    "| k32 | sst2 | REGEX | 1 | 9 | 0.69 ± – | 0.69 ± – |  |",
                    "| k32 | sst2 | ALIGN | 2 | 4 | 0.60 ± 0.00 | 0.30 ± 0.00 | mask_mean 0.30 ± 0.14; mask_spread 0.40 ± – |"]
    assert training_fit(tmp_path / "nothing") == ""
    _curve(curves / "sst2" / "k32-seed0" / "align-seed0.csv", [0.6, 0.5, 0.4, 0.3], mask_mean=[0.9, 0.5, 0.4, 0.2])
    with pytest.raises(ArtifactError, match=r"align-seed0.csv: no column 'mask_spread', which its objective reports"):
        training_fit(curves)
    (curves / "sst2" / "k32-seed0" / "align-seed0.csv").unlink()
    (curves / "sst2" / "k32-seed0" / "align-seed1.csv").unlink()
    _curve(curves / "sst2" / "k32-seed0" / "agm-seed0.csv", [0.5, float("nan")])
    with pytest.raises(ArtifactError, match=r"agm-seed0.csv: column 'ce' is empty or holds a non-finite value"):
        training_fit(curves)
    (curves / "sst2" / "k32-seed0" / "agm-seed0.csv").write_text("step,loss\n0,0.5\n")
    with pytest.raises(ArtifactError, match=r"agm-seed0.csv: not a training curve with a 'ce' column"):
        training_fit(curves)
    (curves / "sst2" / "k32-seed0" / "agm-seed0.csv").unlink()
    _curve(curves / "sst2" / "k32-extra" / "agm-seed0.csv", [0.5])
    with pytest.raises(ArtifactError, match=r"k32-extra/agm-seed0.csv: "):
        training_fit(curves)
    (curves / "sst2" / "k32-extra" / "agm-seed0.csv").rename(curves / "sst2" / "k32-seed0" / "agm.csv")
    with pytest.raises(ArtifactError, match=r"agm.csv: file name is not <model name>-seed<S>.csv"):
        training_fit(curves)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("lime-seed0.json", "{not json", "not a readable JSON file"),
        ("lime-seed0.json", "[1, 2]", "expected a JSON object"),
        ("lime-seed0.json", json.dumps({k: 50.0 for k in METRIC_KEYS if k != "sufficiency"}), "missing key"),
        ("lime-seed0.json", json.dumps({k: 50.0 for k in METRIC_KEYS} | {"accuracy": "high"}), "finite number"),
        ("lime-seed0.json", json.dumps({k: 50.0 for k in METRIC_KEYS} | {"accuracy": True}), "finite number"),
        ("lime-seed0.json", json.dumps({k: 50.0 for k in METRIC_KEYS} | {"accuracy": 120.0}), r"outside \[0, 100\]"),
        ("cap.json", json.dumps({k: 50.0 for k in METRIC_KEYS}), "not <model name>-seed<S>.json"),
    ],
)
def test_collect_names_the_malformed_file(metrics_dir: Path, name: str, content: str, message: str):
    bad = metrics_dir / "hwu64" / "k5-seed1" / name
    bad.write_text(content)

    with pytest.raises(ArtifactError, match=message) as error:
        collect(metrics_dir)
    assert str(bad) in str(error.value)


def test_collect_names_a_folder_that_is_not_a_setting(metrics_dir: Path):
    bad = metrics_dir / "hwu64" / "k5-draw1" / "lime-seed0.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({k: 50.0 for k in METRIC_KEYS}))

    with pytest.raises(ArtifactError, match="setting 'k5-draw1' is neither k<K>-seed<S> nor full") as error:
        collect(metrics_dir)
    assert str(bad) in str(error.value)


def test_collect_rejects_a_missing_or_empty_directory(tmp_path: Path):
    with pytest.raises(ArtifactError, match="metrics directory not found"):
        collect(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="no metrics files"):
        collect(tmp_path / "empty")


def test_a_profile_without_attacks_has_no_adversarial_column_and_names_objectives_by_the_registry(tmp_path: Path):
    root = tmp_path / "metrics"
    for data_seed in range(2):
        for method in ("baseline", "guided.oracle"):
            record = {k: v for k, v in _metrics(data_seed, 0, "baseline").items() if k not in ADVERSARIAL_KEYS}
            _write(root, "hwu64", f"k5-seed{data_seed}", method, 0, record)
    table = results_table(collect(root))
    write_report(metrics_dir=root, out=tmp_path / "reports", oracle_max_train=2000)
    report = (tmp_path / "reports" / "results.md").read_text(encoding="utf-8")

    assert "Oracle IG (control): IG of a cross-entropy teacher trained on at most 2000 sentences" in report
    assert "`priors.oracle.max_train: 2000`" in report
    assert "Acc AD" not in table
    assert _row(table, "### Setting `k5`", "Oracle IG (control)")[1] == _row(table, "### Setting `k5`", "Baseline")[1]
    assert display_name("guided.cap+ig+lime") == "CAP Hybrid"
    assert display_name("not-registered") == "not-registered"


def test_metrics_a_profile_asks_for_get_their_own_tables_and_paired_tests(tmp_path: Path):
    root = tmp_path / "metrics"
    for data_seed in range(3):
        for method, shift in (("baseline", 0.0), ("agm", 2.0)):
            record = {k: v for k, v in _metrics(data_seed, 0, "baseline").items() if k not in ADVERSARIAL_KEYS}
            gap = 10.0 - shift + data_seed
            record |= {"accuracy@tweets": record["accuracy"] - gap, "transfer_gap@tweets": gap,
                       "worst_group_accuracy": 40.0 + shift + 0.5 * data_seed}
            _write(root, "movies", f"k50-seed{data_seed}", method, 0, record)
    text = further_metrics(collect(root))

    assert _row(text, "### Setting `k50`", "AGM")[1:4] == [
        f"{statistics.mean(60.0 + 1.73 * d - (8.0 + d) for d in range(3)):.2f} ± 0.73",
        f"{statistics.mean(8.0 + d for d in range(3)):.2f} ± 1.00",
        f"{statistics.mean(42.0 + 0.5 * d for d in range(3)):.2f} ± 0.50",
    ]
    paired = text.split("## Further metrics: paired comparison with the baseline", 1)[1]
    header = next(line for line in paired.splitlines() if line.startswith("| Method"))
    assert header == "| Method | n | Acc tweets | Δ tweets | Worst-group Acc |"
    cells = _row(paired, "### Setting `k50`, movies", "AGM")
    assert cells[1] == "3" and cells[3].startswith("-2.00") and cells[4].startswith("+2.00")
    assert "paired comparison with the ablation" not in text  # no agm-random run
    assert further_metrics(collect(_only_paper_metrics(tmp_path))) == ""


def _only_paper_metrics(tmp_path: Path) -> Path:
    root = tmp_path / "plain"
    _write(root, "hwu64", "k5-seed0", "baseline", 0, _metrics(0, 0, "baseline"))
    return root


CONTROL_ROWS = {  # method -> (clean, matched, randomised, flip rate, decoy mass, prior cosine)
    "baseline": (80.0, 100.0, 52.0, 90.0, 0.60, None),
    "guided.decoy_truth": (79.0, 90.0, 70.0, 40.0, 0.10, 0.8),
    "guided.random": (80.0, 100.0, 51.0, 92.0, 0.55, 0.3),
    "rrr.decoy_truth": (78.0, 85.0, 74.0, 30.0, 0.05, 0.7),
}


def _decoy_metrics(root: Path) -> None:
    """sst2_decoy k300: 5 training seeds of the rows above (each seed shifts every value a little, the
    decoy_truth student's randomised accuracy by 2 x seed); its ceiling twin sst2: the baseline at 81 + seed."""
    for seed in range(5):
        for method, (clean, matched, randomised, flips, mass, cosine) in CONTROL_ROWS.items():
            shift = 2.0 * seed if method == "guided.decoy_truth" else 0.3 * seed
            record = {"accuracy": clean + 0.1 * seed, "validation_accuracy": clean, "comprehensiveness": 30.0,
                      "sufficiency": 10.0, "decoy_matched_accuracy": matched - 0.1 * seed,
                      "decoy_randomised_accuracy": randomised + shift, "decoy_flip_rate": flips, "decoy_mass": mass,
                      "decoy_ig_gap": 0.01 * (seed + 1)}
            if cosine is not None:
                record |= {"prior_cosine": cosine, "prior_spearman": cosine - 0.1}
            _write(root, "sst2_decoy", "k300-seed0", method, seed, record)
        _write(root, "sst2", "k300-seed0", "baseline", seed,
               {"accuracy": 81.0 + seed, "validation_accuracy": 81.0, "comprehensiveness": 30.0, "sufficiency": 10.0})


def test_positive_controls_show_each_row_beside_the_ceiling_with_paired_differences(tmp_path: Path):
    from pipeline.reporting.report import positive_controls, prior_alignment

    root = tmp_path / "metrics"
    _decoy_metrics(root)
    frame = collect(root)
    text = positive_controls(frame, ceilings={"sst2_decoy": "sst2"})
    section = "### Setting `k300`, sst2_decoy"
    assert text.startswith("## Positive controls") and section in text
    means = text.split(section, 1)[1].split("Paired difference", 1)[0]
    names = [line.split("|")[1].strip() for line in means.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert names == ["Baseline", "Decoy truth (control)", "Random (control)", display_name("rrr.decoy_truth"),
                     "Ceiling (sst2, no decoy)"]
    assert _row(text, section, "Baseline") == ["Baseline", "5", "80.20 ± 0.16", "99.80 ± 0.16", "52.60 ± 0.47",
                                               "90.00 ± 0.00", "0.60 ± 0.00", "0.03 ± 0.02", "–"]
    truth = _row(text, section, "Decoy truth (control)")
    assert truth[4] == "74.00 ± 3.16" and truth[8] == "0.80 ± 0.00"
    assert _row(text, section, "Ceiling (sst2, no decoy)") == ["Ceiling (sst2, no decoy)", "5", "83.00 ± 1.58"] + ["–"] * 6
    paired = text.split("Paired difference", 1)[1]
    truth = _row(paired, "n pairs", "Decoy truth (control)")
    assert truth[1] == "5" and truth[4].startswith("+21.40 [") and truth[4].endswith("]*") and truth[5].startswith("-50.00")
    assert _row(paired, "n pairs", "Ceiling (sst2, no decoy)")[2].startswith("+2.80 [")
    header = next(line for line in paired.splitlines() if line.startswith("| Method | n pairs"))
    assert "Decoy mass" in header
    assert "Prior cos" not in header and "IG gap" not in header  # no prior for the baseline; the gap is a precision
    # each row against its ablation where that was run: guided decoy truth vs guided random, not rrr (no rrr.random)
    ablation = text.split("## Positive controls: paired comparison with the ablation", 1)[1]
    truth = _row(ablation, section, "Decoy truth (control)")
    assert truth[1] == "Random (control)" and truth[3] == "5"
    assert truth[6].startswith("+22.40 [") and truth[6].endswith("*")  # randomised: 70 - 51 + (2 - 0.3) x mean seed
    assert display_name("rrr.decoy_truth") not in ablation
    alignment = prior_alignment(frame)
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in alignment.splitlines() if line.startswith("| sst2_decoy")]
    assert ["sst2_decoy", "Decoy truth (control)", "5", "0.80 ± 0.00", "0.70 ± 0.00"] in rows and len(rows) == 3
    assert "Baseline" not in alignment


def test_write_report_writes_the_positive_controls_plot_and_keeps_decoy_keys_out_of_further_metrics(tmp_path: Path):
    root = tmp_path / "metrics"
    _decoy_metrics(root)
    out = tmp_path / "reports"
    write_report(metrics_dir=root, out=out, ceilings={"sst2_decoy": "sst2"})
    text = (out / "results.md").read_text(encoding="utf-8")
    assert "## Positive controls" in text and "## Alignment of prior students to their priors" in text
    assert "## Further metrics" not in text  # decoy and alignment keys have their own sections
    plot = pl.read_csv(out / "positive_controls.csv")
    assert plot.columns == ["setting", "dataset", "method", "randomised_accuracy"]
    assert plot["method"].to_list() == ["Baseline", "Decoy truth (control)", "Random (control)",
                                        display_name("rrr.decoy_truth"), "Ceiling (no decoy, clean)"]
    assert plot["randomised_accuracy"].to_list() == pytest.approx([52.6, 74.0, 51.6, 74.6, 83.0])


def _plain(accuracy: float, comprehensiveness: float = 40.0, sufficiency: float = 30.0) -> dict[str, float]:
    return {"accuracy": accuracy, "validation_accuracy": accuracy, "comprehensiveness": comprehensiveness,
            "sufficiency": sufficiency}


# accuracy of each row on replicates (data seed 0, 1) x (training seed 0, 1, 2), beside the baseline's 60 + d + t
GRID = {  # method -> accuracy shift per replicate, in replicate order (d0t0, d0t1, d0t2, d1t0, d1t1, d1t2)
    "baseline": [0.0] * 6,
    "guided.cap": [2.0] * 6,
    "guided.random": [1.0, -1.0, 0.0, 1.0, 0.5, 0.5],
    "rrr.cap": [3.0] * 6,  # its ablation (rrr.random) is not run: no ablation row
    "agm": [1.5] * 6,
    "agm-random": [0.0] * 6,
}


def _grid_metrics(root: Path, rows: dict[str, list[float]]) -> Path:
    for i, (d, t) in enumerate((d, t) for d in range(2) for t in range(3)):
        for method, shifts in rows.items():
            _write(root, "hwu64", f"k5-seed{d}", method, t, _plain(60.0 + d + t + shifts[i], 40.0 + shifts[i]))
    return root


def _first_cells(text: str, section: str) -> list[str]:
    body = text.split(section, 1)[1].split("###", 1)[0]
    return [line.split("|")[1].strip() for line in body.splitlines() if line.startswith("| ") and "---" not in line][1:]


def test_the_grid_rows_come_in_the_registry_order_with_the_registry_names(tmp_path: Path, monkeypatch):
    frame = collect(_grid_metrics(tmp_path / "metrics", GRID))
    # the registry's order: baseline, guided (the paper's: its prior rows named by the prior alone), rrr, agm, ...
    assert _first_cells(results_table(frame), "### Setting `k5`") == [
        "Baseline", "CAP", "Random (control)", "RRR (CAP)", "AGM", "AGM-random"]
    assert PAPER_ROW == "guided.cap+ig+lime" and display_name("rrr.cap+ig+lime") == "RRR (CAP Hybrid)"

    # reorder the registry and mark another objective as the paper's: the tables follow, no report code changes
    class Rrr(OBJECTIVES["rrr"]):
        paper = True

    class Guided(OBJECTIVES["guided"]):
        paper = False

    reordered = {"baseline": OBJECTIVES["baseline"], "agm": OBJECTIVES["agm"], "agm-random": OBJECTIVES["agm-random"],
                 "rrr": Rrr, "guided": Guided}
    monkeypatch.setattr("pipeline.training.objectives.OBJECTIVES", reordered)
    monkeypatch.setattr("pipeline.reporting.report.OBJECTIVES", reordered)
    assert _first_cells(results_table(frame), "### Setting `k5`") == [
        "Baseline", "AGM", "AGM-random", "CAP", "Guided (CAP)", "Guided (Random (control))"]
    paired = paired_tests(frame)
    assert _first_cells(paired, "### Setting `k5`, HWU64") == ["AGM", "AGM-random", "CAP", "Guided (CAP)",
                                                               "Guided (Random (control))"]


def test_each_row_is_paired_with_its_registered_ablation_on_shared_replicates(tmp_path: Path):
    text = ablation_tests(collect(_grid_metrics(tmp_path / "metrics", GRID)))
    section = "### Setting `k5`, HWU64"
    header = next(line for line in text.splitlines() if line.startswith("| Method"))
    assert header == "| Method | Ablation | Takes away | n | Acc | Com ↑ | Suf ↓ |"
    # only the rows whose ablation was run: not rrr.cap (no rrr.random), not the ablations themselves, not the baseline
    assert _first_cells(text, section) == ["CAP", "AGM"]
    # agm - agm-random: +1.5 on each of the 6 replicates, a degenerate CI, Wilcoxon p = 2 / 2**6
    assert _row(text, section, "AGM") == ["AGM", "AGM-random", "random tokens", "6",
                                          "+1.50 [+1.50, +1.50]* p=0.031", "+1.50 [+1.50, +1.50]* p=0.031",
                                          "+0.00 [+0.00, +0.00]"]
    # guided.cap - guided.random: differences 1, 3, 2, 1, 1.5, 1.5 (mean 10 / 6), all positive
    cap = _row(text, section, "CAP")
    assert cap[:4] == ["CAP", "Random (control)", "random prior", "6"]
    mean, low, high = (float(x) for x in re.fullmatch(r"([-+][\d.]+) \[([-+][\d.]+), ([-+][\d.]+)\]\* p=0\.031", cap[4]).groups())
    assert mean == pytest.approx(10 / 6, abs=0.005) and 1.0 <= low < mean < high <= 3.0


def test_two_pairs_give_the_smallest_and_largest_difference_as_the_interval(tmp_path: Path):
    """With 2 pairs a resampled mean is d1, (d1 + d2) / 2 or d2 (probabilities 1/4, 1/2, 1/4): the 2.5th and 97.5th
    percentiles of 10,000 resamples are exactly d1 and d2."""
    root = tmp_path / "metrics"
    for d, (row, ablation) in enumerate(((61.0, 60.0), (65.0, 62.0))):  # differences 1 and 3
        _write(root, "hwu64", f"k5-seed{d}", "regex", 0, _plain(row))
        _write(root, "hwu64", f"k5-seed{d}", "regex-no-explanation", 0, _plain(ablation))
        _write(root, "hwu64", f"k5-seed{d}", "ex2l", 0, _plain(row))
    _write(root, "hwu64", "k5-seed0", "ex2l-multitask", 0, _plain(50.0))  # one shared replicate
    text = ablation_tests(collect(root))
    assert _row(text, "### Setting `k5`, HWU64", "REGEX")[1:5] == [
        "REGEX w/o expl.", "no explanation terms (γ = δ = 0)", "2", "+2.00 [+1.00, +3.00]*"]
    assert _row(text, "### Setting `k5`, HWU64", "eX2L")[3:] == ["1"] + ["n/a (1 replicate)"] * 3


def test_a_new_objective_brings_its_ablation_to_the_report(tmp_path: Path, monkeypatch):
    class Toy(Objective):
        display = "Toy"
        ablation = Ablation("no toy term", objective="toy-off")

    class ToyOff(Toy):
        display = "Toy off"
        ablation = None

    monkeypatch.setitem(OBJECTIVES, "toy", Toy)
    monkeypatch.setitem(OBJECTIVES, "toy-off", ToyOff)
    root = _grid_metrics(tmp_path / "metrics", {"baseline": [0.0] * 6, "toy": [4.0] * 6, "toy-off": [1.0] * 6})
    write_report(metrics_dir=root, out=tmp_path / "reports")
    text = (tmp_path / "reports" / "results.md").read_text(encoding="utf-8")
    ablation = text.split("## Paired comparison with the ablation", 1)[1]
    assert _row(ablation, "### Setting `k5`, HWU64", "Toy")[:5] == [
        "Toy", "Toy off", "no toy term", "6", "+3.00 [+3.00, +3.00]* p=0.031"]
    # without a run of any ablation the section is left out
    assert ablation_tests(collect(_grid_metrics(tmp_path / "other", {"baseline": [0.0] * 6, "toy": [4.0] * 6}))) == ""


def test_every_registered_ablation_names_a_registered_objective_and_one_objective_is_the_papers():
    from pipeline.prior_sources import COMBINATIONS

    for name, cls in OBJECTIVES.items():
        if cls.ablation is not None:
            assert cls.ablation.objective is None or cls.ablation.objective in OBJECTIVES, name
            assert cls.ablation.prior is None or cls.ablation.prior in COMBINATIONS, name
            if cls.ablation.objective is not None:  # an ablation trains like its objective: with a prior or without
                assert OBJECTIVES[cls.ablation.objective].needs_prior == cls.needs_prior, name
    assert [name for name, cls in OBJECTIVES.items() if cls.paper] == ["guided"]


def test_further_metrics_are_paired_with_the_ablation_too(tmp_path: Path):
    root = tmp_path / "metrics"
    for data_seed in range(3):  # worst-group accuracy: ex2l 2 + seed points above its lambda = 0 ablation
        for method, worst in (("baseline", 40.0), ("ex2l", 45.0 + data_seed), ("ex2l-multitask", 43.0)):
            _write(root, "amazon", f"k50-seed{data_seed}", method, 0, _plain(70.0) | {"worst_group_accuracy": worst})
    text = further_metrics(collect(root)).split("## Further metrics: paired comparison with the ablation", 1)[1]
    # differences 2, 3, 4: the 3 pairs' resampled means lie in [2, 4]
    cells = _row(text, "### Setting `k50`, amazon", "eX2L")
    assert cells[:4] == ["eX2L", "Multitask (eX2L, λ = 0)", "λ = 0 (multitask)", "3"]
    mean, low, high = (float(x) for x in re.fullmatch(r"([-+][\d.]+) \[([-+][\d.]+), ([-+][\d.]+)\]\*", cells[4]).groups())
    assert mean == 3.0 and 2.0 <= low < mean < high <= 4.0
