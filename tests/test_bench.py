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


def test_the_decoy_control_summary_pairs_each_form_with_the_baseline_and_its_registered_ablation(tmp_path, monkeypatch):
    import polars as pl

    monkeypatch.syspath_prepend(str(REPO / "bench"))
    from decoy_control import SUMMARY_COLUMNS, summary

    randomised = {"baseline": [50, 52, 54], "agm": [60, 60, 61], "agm-random": [51, 52, 52],
                  "rrr-1e5": [70, 72, 74], "rrr-1e5-random": [50, 51, 53],
                  "agm-rrr-1e5": [55, 55, 55], "agm-rrr-1e5-random": [54, 55, 56]}
    rows = [{"form": form, "seed": seed, **dict.fromkeys(SUMMARY_COLUMNS, 1.0), "randomised_accuracy": value}
            for form, values in randomised.items() for seed, value in enumerate(values)]
    pl.DataFrame(rows).write_csv(tmp_path / "rows.csv")
    table = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in summary([tmp_path / "rows.csv"]).splitlines()}
    assert table["agm"][-2].startswith("+8.33 ") and table["agm"][-1].startswith("+8.67 ") and "vs agm-random" in table["agm"][-1]
    assert table["rrr-1e5"][-1].startswith("+20.67 ") and "vs rrr-1e5-random" in table["rrr-1e5"][-1]
    # an ablation has the same settings as its row: AGM at another weight and penalty is not agm-rrr-1e5's
    assert table["agm-rrr-1e5"][-1].startswith("+0.00 ") and "vs agm-rrr-1e5-random" in table["agm-rrr-1e5"][-1]
    assert table["agm-random"][-1].strip(" |") == "" and table["baseline"][-2].strip() == ""
