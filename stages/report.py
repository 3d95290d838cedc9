"""Stage 7: reports/results.md and the DVC plot data.

results.md: Table-1-style means ± sd, paired tests against baseline, the paper's figures."""

from __future__ import annotations

from pipeline.artifacts import METRICS, REPORTS
from pipeline.report import write_report


def main() -> None:
    """Collect metrics/**.json into reports/."""
    print(f"wrote {write_report(metrics_dir=METRICS, out=REPORTS)}")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
