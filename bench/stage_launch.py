"""What a stage costs before it does anything: a fresh `python -m` process vs a fork from the launcher.

Starts ``--stage`` with ``--help`` (it imports everything a real run imports, then exits) ``--repeats``
times each way, alternating, in one run: through /bin/sh as `dvc repro` does, and through
``pipeline.launcher`` as the flow's thread runner does (the launcher's own start-up, paid once per
flow run, is printed apart). Prints each way's median and the ratio.

    python bench/stage_launch.py --stage stages.evaluate --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.launcher import run, started  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="stages.evaluate")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    fresh, forked = [], []
    start = time.perf_counter()
    with started() as path:
        # the first fork waits for the launcher's imports: its start-up
        null = os.open(os.devnull, os.O_WRONLY)
        status = run(path, module=args.stage, args=["--help"], cwd=str(REPO), env=env, stdout=os.dup(null), stderr=os.dup(null))
        print(f"launcher start-up and first stage: {time.perf_counter() - start:.2f} s (exit {status})")
        for _ in range(args.repeats):
            start = time.perf_counter()
            subprocess.run(f"python -m {args.stage} --help", shell=True, cwd=REPO, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            fresh.append(time.perf_counter() - start)
            start = time.perf_counter()
            status = run(path, module=args.stage, args=["--help"], cwd=str(REPO), env=env, stdout=os.dup(null),
                         stderr=os.dup(null))
            forked.append(time.perf_counter() - start)
            assert status == 0, f"{args.stage} --help exited {status} from the launcher"
        os.close(null)
    print(f"{args.stage} --help, median of {args.repeats}: fresh process {statistics.median(fresh):.2f} s, "
          f"forked from the launcher {statistics.median(forked):.2f} s, "
          f"ratio {statistics.median(fresh) / statistics.median(forked):.1f}x")


if __name__ == "__main__":
    main()
