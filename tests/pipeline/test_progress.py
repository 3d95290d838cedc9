import re

import pytest

from pipeline import progress as progress_module
from pipeline.progress import progress


def test_off_a_terminal_a_long_loop_prints_lines_with_done_total_and_rate(monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "INTERVAL_S", 0.0)  # every update is "30 s later"
    with progress(total=4, desc="training", unit="steps") as update:
        for _ in range(4):
            update(1)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in lines] == [f"training: {n}/4 steps" for n in (1, 2, 3, 4, 4)]  # + the end
    assert all(re.search(r"in \d+ s, [0-9.]+ steps/s$", line) for line in lines)


@pytest.mark.parametrize("enabled", [True, False])
def test_a_short_or_disabled_loop_prints_nothing(monkeypatch, capsys, enabled):
    if not enabled:
        monkeypatch.setattr(progress_module, "INTERVAL_S", 0.0)
    with progress(total=3, desc="prediction", unit="sentences", enabled=enabled) as update:
        update(3)
    assert capsys.readouterr().err == ""

