"""Stage 7: reports/results.md and the DVC plot data.

results.md: Table-1-style means ± sd, paired tests against baseline, each row's training fit, the positive controls (decoy
benchmarks, beside their ceiling twins), the paper's figures."""

from __future__ import annotations

from pipeline.artifacts import CURVES, METRICS, REPORTS
from pipeline.params import load_params
from pipeline.reporting.report import write_report


def main() -> None:
    """Collect metrics/**.json and the students' training curves into reports/."""
    params = load_params()
    datasets = params.data.datasets
    ceilings = {name: d.decoy.ceiling for name, d in datasets.items() if d.decoy is not None and d.decoy.ceiling}
    results = write_report(metrics_dir=METRICS, out=REPORTS, ceilings=ceilings, curves_dir=CURVES,
                           oracle_max_train=params.priors.oracle.max_train)
    print(f"wrote {results}")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
