import re
import subprocess
import sys

from tests.conftest import REPO


def test_gpu_scoring_bench_runs_on_cpu_and_its_baselines_agree():
    """bench/gpu_scoring.py end to end with the SmolLM2 shape (2 of its layers) on CPU, on a handful of queries."""
    command = [sys.executable, "bench/gpu_scoring.py", "--shape", "smollm2-135m", "--device", "cpu", "--queries", "4",
               "--batch-sizes", "2,4", "--full-batch-size", "4", "--naive-queries", "2", "--rounds", "1", "--layers", "2"]
    done = subprocess.run(command, cwd=REPO, env={"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PATH": ""},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "smollm2-135m, 2 layers (random weights, 0.01B non-embedding parameters), float32 on CPU" in out
    assert "4 queries" in out and "FLOP floor" in out
    rows = ("naive (one prompt at a time, 2 queries)", "full prompts, batch 4", "prefix reuse, batch 2", "prefix reuse, batch 4")
    for name in rows:
        assert re.search(rf"^{re.escape(name)}\s+\d+\.\d\s+\d+\.\d%\s+\d+\.\dx\s+\d+\.\dx$", out, re.M), (name, out)
    gaps = re.search(r"max \|reuse - naive\| (\S+), max \|reuse - full\| (\S+) nats", out)
    assert gaps and max(float(gaps[1]), float(gaps[2].rstrip(","))) < 1e-4, out


def test_the_stored_workload_ids_are_a_fresh_encoding_of_the_workload():
    """bench/banking77_cap_ids.npz (what GPU machines without the tokenizer or data score) is what --write-ids writes."""
    from bench.gpu_scoring import IDS_QUERIES, IDS_TOKENIZER, encoded_workload, load_ids

    prefix_ids, encoded = load_ids()
    assert len(encoded) == IDS_QUERIES and len(prefix_ids) > 300
    assert (prefix_ids, encoded) == encoded_workload(IDS_TOKENIZER, n_queries=IDS_QUERIES)
