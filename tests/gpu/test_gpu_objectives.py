"""One training step of every registered objective on CUDA under bf16 autocast, RoBERTa-base shape.

``RobertaConfig()`` is roberta-base's shape (hidden 768, 12 layers, 12 heads, MLP 3072, vocab
50265, no pooler for the sibling heads); random weights, eager attention as ``load_student`` loads
it, 8 sentences through the real training loop (``pipeline.training.training.train_student``), which runs
bf16 autocast on CUDA. The loop's log holds the loss and the L2 norms of the step's gradients.
"""

import math

import pytest
import torch

pytest.importorskip("polars", reason="pipeline.training (the loop and the objectives) needs polars (bench/gpu_check.sh: wheels/)")
from transformers import RobertaConfig  # noqa: E402

from tests.roberta import OBJECTIVE_NAMES, roberta_student, roberta_tokenizer, sentences, train_one_step  # noqa: E402

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def student():
    """(model, tokenizer, initial weights, examples): a random roberta-base-shaped classifier on CUDA."""
    examples = sentences(8)
    model = roberta_student(RobertaConfig(), device="cuda")
    return model, roberta_tokenizer(examples), {k: v.clone() for k, v in model.state_dict().items()}, examples


@pytest.mark.parametrize("name", OBJECTIVE_NAMES)
def test_one_bf16_step_of_every_objective_on_roberta_base(student, name):
    model, tokenizer, initial, examples = student
    model.load_state_dict(initial)
    log, modules = train_one_step(name, model=model, tokenizer=tokenizer, examples=examples, device="cuda")
    (row,) = log.to_dicts()
    assert all(math.isfinite(value) for key, value in row.items() if key not in ("align", "bce")), row
    assert row["grad_norm_ce"] > 0 or row["grad_norm_rest"] > 0, row
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not torch.equal(model.classifier.out_proj.weight, initial["classifier.out_proj.weight"])
    for module in modules.values():
        assert all(torch.isfinite(p).all() for p in module.parameters())
