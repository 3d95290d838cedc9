"""How many IG steps a trained student needs: decoy mass and IG's completeness gap against the step count.

Run in a checkout whose pipeline has run (its params.yaml, data/ and models/). For each student of a decoy
benchmark it takes the evaluation's decoy-mass sentences (``pipeline.evaluation.evaluation.decoy_mass_sample``,
toward the student's predicted labels) and prints, per step count, the decoy
mass and the median and largest relative completeness gap (``pipeline.priors.ig.completeness_gaps``).
A step count is enough where the gap is small and the mass has stopped moving.

    cd <run checkout> && python <capflow>/bench/ig_convergence.py --students baseline-seed0 guided.random-seed0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.artifacts import DATASET_SCHEMA, decoy_test_file, student_dir  # noqa: E402
from pipeline.data.decoy import decoy_mass, decoy_positions, decoy_words  # noqa: E402
from pipeline.evaluation.evaluation import decoy_mass_sample  # noqa: E402
from pipeline.evaluation.predict import predict_proba  # noqa: E402
from pipeline.io import read_parquet  # noqa: E402
from pipeline.models import load_trained_student  # noqa: E402
from pipeline.params import load_params  # noqa: E402
from pipeline.priors.ig import completeness_gaps, ig_prior  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="banking77_mini_decoy")
    parser.add_argument("--setting", default="k5-seed0")
    parser.add_argument("--students", nargs="+", required=True,
                        help="<objective>[.<prior>]-seed<S> under models/<dataset>/<setting>/")
    parser.add_argument("--steps", nargs="+", type=int, default=[16, 32, 64, 128])
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = load_params()
    max_length, batch_size = params.student.max_length, params.evaluation.batch_size
    randomised = read_parquet(decoy_test_file(args.dataset, "randomised"), schema=DATASET_SCHEMA)
    sample = decoy_mass_sample(randomised, size=params.evaluation.decoy_sentences)
    sentences = [text.split() for text in sample["text"]]
    positions = decoy_positions(sentences, decoy_words(params, args.dataset))
    print(f"{args.dataset}/{args.setting}, {len(sentences)} randomised-test sentences, max_length {max_length}")
    print(f"{'student':<32} {'steps':>5} {'decoy mass':>10} {'median gap':>10} {'max gap':>8}")
    for student in args.students:
        name, seed = student.rsplit("-seed", 1)
        model, tokenizer = load_trained_student(student_dir(args.dataset, args.setting, name, int(seed)))
        labels = torch.from_numpy(predict_proba(model, tokenizer, sentences, batch_size=batch_size, max_length=max_length,
                                                device="cpu").argmax(axis=1))
        for steps in args.steps:
            scores = ig_prior(model, tokenizer, sentences=sentences, labels=labels, steps=steps,
                              internal_batch_size=batch_size, max_length=max_length)
            gaps = completeness_gaps(model, tokenizer, sentences=sentences, labels=labels, scores=scores,
                                     batch_size=batch_size, max_length=max_length)
            print(f"{student:<32} {steps:>5} {decoy_mass(scores, positions):>10.4f} {np.nanmedian(gaps):>10.4f} "
                  f"{np.nanmax(gaps):>8.4f}", flush=True)


if __name__ == "__main__":
    main()
