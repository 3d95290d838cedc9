import subprocess
import sys

from tests.conftest import REPO


def test_a_stage_run_by_an_interpreter_without_the_dependencies_says_how_to_fix_it():
    """`-S` leaves out site-packages, as a system ``python`` first on PATH would (``.venv/bin/dvc repro``, not activated)."""
    run = subprocess.run([sys.executable, "-S", "-m", "stages.fewshot", "banking77"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 1
    assert "lacks capflow's dependencies" in run.stderr and "source .venv/bin/activate" in run.stderr
    assert "Traceback" not in run.stderr
