"""The flow's own cost per stage: wall time beyond what its stages' commands take.

Builds a scratch git + DVC project of ``--stages`` independent stages whose command sleeps ``--seconds``
and writes its output, each depending on ``--deps`` shared files (dvc.yaml's stages list 15-30 source
files each; dvc.lock records every one, so its size grows with stages x deps), runs the Prefect flow
over it with ``--lanes`` CPU stages at once, and prints the wall time, the ideal (stages x seconds /
lanes) and the overhead per stage. Everything the flow does between two stages (recording an output
in DVC, deciding what runs next, submitting it) shows up here; a real run has 77 stages, so one
second per stage is about 40 s of a 2-lane `make run`.

    python bench/flow_overhead.py --stages 40 --deps 30 --seconds 1 --lanes 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=40)
    parser.add_argument("--deps", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--lanes", type=int, default=2)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="flow-overhead-"))
    (folder / "src").mkdir()
    deps = [f"src/f{j:02d}.py" for j in range(args.deps)]
    for dep in deps:
        (folder / dep).write_text(dep)
    stages = {f"s{i:02d}": {"cmd": f"sleep {args.seconds} && head -c 1000000 /dev/urandom > out/s{i:02d}",
                            "deps": deps, "outs": [f"out/s{i:02d}"]} for i in range(args.stages)}
    (folder / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["resources"] = {"gpu_stages": 1, "cpu_stages": args.lanes}
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    (folder / "out").mkdir()
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=folder, check=True)
    os.chdir(folder)
    from prefect.testing.utilities import prefect_test_harness

    from pipeline.flow import capflow

    with prefect_test_harness():
        start = time.perf_counter()
        ran = capflow()["ran"]
        wall = time.perf_counter() - start
    ideal = args.stages * args.seconds / args.lanes
    print(f"{len(ran)} stages, {args.lanes} lanes: wall {wall:.1f} s, ideal {ideal:.1f} s, "
          f"overhead {(wall - ideal) / args.stages * args.lanes:.2f} s per stage per lane")
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
