"""One module per pipeline stage, a thin CLI (`python -m stages.<name>`): arguments, params, `pipeline/` calls, artifacts.

Every path comes from ``pipeline.artifacts``.

dvc.yaml's commands call ``python`` from PATH. Run by a ``dvc`` whose environment is not first
on PATH (``.venv/bin/dvc repro`` without ``source .venv/bin/activate``), that is often an
interpreter without capflow's dependencies: stop with one line saying so, not a ModuleNotFoundError.
"""

import importlib.util
import sys

if importlib.util.find_spec("polars") is None:  # every stage reads or writes Parquet through polars
    sys.exit(
        f"{sys.executable} lacks capflow's dependencies (no polars): run DVC from the project's environment, "
        "e.g. `source .venv/bin/activate` first (see README, Quickstart)"
    )
