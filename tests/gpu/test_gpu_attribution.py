"""The hand-written differentiable IG (``pipeline.attribution.attribution.integrated_gradients``) against captum on CUDA.

A random roberta-base-shaped classifier (``RobertaConfig()``) in float32, eager attention; both
integrate the target logit's gradient over the word embeddings from the pad baseline with the
Riemann midpoint rule (captum's ``LayerIntegratedGradients`` on the embedding layer, as the CPU
test in tests/pipeline/attribution/test_attribution.py), so they must agree to float32 round-off.
"""

import pytest
import torch

captum = pytest.importorskip("captum.attr", reason="the comparison needs captum (bench/gpu_check.sh: wheels/)")
from transformers import RobertaConfig  # noqa: E402

from pipeline.attribution.attribution import encode_words, integrated_gradients, pad_baseline  # noqa: E402
from tests.roberta import roberta_student, roberta_tokenizer, sentences  # noqa: E402

pytestmark = pytest.mark.cuda
STEPS = 16


def test_integrated_gradients_match_captum_on_cuda():
    examples = sentences(4)
    model = roberta_student(RobertaConfig(), device="cuda").eval()
    torch.nn.init.normal_(model.classifier.out_proj.weight, std=1.0)  # O(1) logits: a relative check means something
    encoding, word_index = encode_words(roberta_tokenizer(examples), [e.words for e in examples], device="cuda")
    input_ids, attention_mask = encoding["input_ids"], encoding["attention_mask"]
    baseline_ids = pad_baseline(input_ids=input_ids, word_index=word_index, pad_token_id=model.config.pad_token_id)
    target = torch.tensor([e.label for e in examples], device="cuda")
    ours = integrated_gradients(model, input_ids=input_ids, baseline_ids=baseline_ids, attention_mask=attention_mask,
                                target=target, steps=STEPS, create_graph=False)

    explainer = captum.LayerIntegratedGradients(
        lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits, model.get_input_embeddings()
    )
    theirs = explainer.attribute(input_ids, baselines=baseline_ids, additional_forward_args=(attention_mask,),
                                 target=target, n_steps=STEPS, method="riemann_middle").sum(-1)
    # a random encoder passes little of the other tokens to <s>: the attributions are small, so the
    # tolerance is relative to their scale, which must stand well above float32 round-off
    scale = theirs.abs().max().item()
    assert ours.shape == theirs.shape and scale > 1e-5
    torch.testing.assert_close(ours, theirs.to(ours.dtype), rtol=1e-3, atol=1e-3 * scale)
    assert (ours[word_index < 0] == 0).all()  # special and padding tokens equal their baseline
