import logging

from pipeline.llm.base import report_progress


def test_progress_logs_the_query_rate(caplog):
    with caplog.at_level(logging.INFO, logger="pipeline.llm.base"):
        with report_progress(total=5, enabled=False, desc="unit") as update:
            update(5)
    assert "unit: 5 queries in" in caplog.text and "q/s)" in caplog.text
