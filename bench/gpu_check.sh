#!/usr/bin/env bash
# capflow's CUDA check on a bare GPU machine: torch + transformers there, no model weights, no data, no network.
#
# From the repository root: bash bench/gpu_check.sh   (PYTHON=python3 and OUT=gpu-check unless set)
#   1. installs, from a local folder wheels/ only (never the network), what the tests need beyond the
#      machine's packages: polars + polars-runtime-32 (pipeline.training) and
#      captum (the IG comparison); docs/gpu-and-clusters.md "On a GPU server" says how to fill wheels/;
#   2. runs the tests marked cuda (tests/gpu: prefix reuse vs naive on the Llama-3-8B shape, one bf16
#      step of every objective on roberta-base's shape, IG vs captum), stopping at the first failure;
#   3. runs bench/gpu_scoring.py on the full Llama-3-8B shape (random weights, the stored Banking77 CAP
#      ids): queries/s and % of the FLOP floor. BENCH_ARGS replaces its quick-check arguments.
# Everything printed is also written under $OUT. Exit status: the tests' (then the bench's), 0 when both pass.
set -uo pipefail

PYTHON=${PYTHON:-python3}
OUT=${OUT:-gpu-check}
BENCH_ARGS=${BENCH_ARGS:---shape llama3-8b --rounds 1}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if compgen -G "wheels/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --find-links wheels/ wheels/*.whl 2>&1 | tee "$OUT/pip.log"
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PYTHON" - <<'EOF'
import importlib.metadata as metadata

for name in ("torch", "transformers", "tokenizers", "numpy", "polars", "captum"):
    try:
        print(name, metadata.version(name))
    except metadata.PackageNotFoundError:
        print(name, "missing")
EOF
} 2>&1 | tee "$OUT/versions.txt"

"$PYTHON" -m pytest -m cuda tests/gpu -x -q -p no:cacheprovider 2>&1 | tee "$OUT/test-gpu.log"
tests=${PIPESTATUS[0]}
# shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
"$PYTHON" bench/gpu_scoring.py $BENCH_ARGS 2>&1 | tee "$OUT/gpu_scoring.log"
bench=${PIPESTATUS[0]}
echo "tests exit $tests, bench exit $bench" | tee -a "$OUT/versions.txt"
[ "$tests" -ne 0 ] && exit "$tests"
exit "$bench"
