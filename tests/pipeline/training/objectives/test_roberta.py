"""Every objective trains a RoBERTa student (the paper's roberta-base architecture, tiny and random here, on CPU)."""

import math

import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification, RobertaConfig

from pipeline.attribution.attribution import encode_words
from pipeline.attribution.gradcam import hidden_and_pooled, sequence_head
from tests.roberta import OBJECTIVE_NAMES, roberta_student, roberta_tokenizer, sentences, train_one_step

TINY = RobertaConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=64)


@pytest.fixture(scope="module")
def student():
    """(model, tokenizer, its initial weights, 8 examples): a tiny random RoBERTa classifier in train mode."""
    examples = sentences(8)
    model = roberta_student(TINY, device="cpu")
    return model, roberta_tokenizer(examples), {k: v.clone() for k, v in model.state_dict().items()}, examples


def test_the_tokenizer_frames_sentences_like_roberta(student):
    _, tokenizer, _, examples = student
    encoding, word_index = encode_words(tokenizer, [e.words for e in examples[:2]])
    ids = encoding["input_ids"]
    assert (ids[:, 0] == 0).all() and tokenizer.pad_token_id == 1  # <s> first, <pad> is 1
    lengths = encoding["attention_mask"].sum(1)
    assert all(ids[row, lengths[row] - 1] == 2 for row in range(2))  # </s> last
    assert word_index.max(1).values.tolist() == [len(e.words) - 1 for e in examples[:2]]  # every word has tokens


def test_the_head_split_gives_the_models_logits_in_both_modes(student):
    model, tokenizer, _, examples = student
    encoding, _ = encode_words(tokenizer, [e.words for e in examples[:4]])
    inputs = {"input_ids": encoding["input_ids"], "attention_mask": encoding["attention_mask"]}
    head = sequence_head(model)
    for train in (False, True):  # train: the same seed draws the same dropout masks in the same order
        model.train(train)
        torch.manual_seed(3)
        logits = model(**inputs).logits
        torch.manual_seed(3)
        _, pooled = hidden_and_pooled(model, **inputs)
        torch.testing.assert_close(head.out(head.dropout(pooled)), logits, rtol=0, atol=1e-6)
    model.train()


def test_a_head_of_neither_kind_is_refused():
    gpt2 = GPT2ForSequenceClassification(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50, n_positions=16))
    with pytest.raises(TypeError, match="neither a BERT pooler"):
        sequence_head(gpt2)


@pytest.mark.parametrize("name", OBJECTIVE_NAMES)
def test_one_step_of_every_objective_trains_roberta(student, name):
    model, tokenizer, initial, examples = student
    model.load_state_dict(initial)
    log, modules = train_one_step(name, model=model, tokenizer=tokenizer, examples=examples, device="cpu")
    (row,) = log.to_dicts()
    assert all(math.isfinite(value) for key, value in row.items() if key not in ("align", "bce")), row
    assert row["grad_norm_ce"] > 0 or name == "align"  # ALIGN's last phase is the classifier's: ce has a gradient
    moved = [key for key, value in model.state_dict().items() if not torch.equal(value, initial[key])]
    assert "roberta.embeddings.word_embeddings.weight" in moved and "classifier.out_proj.weight" in moved
    for module in modules.values():
        assert all(torch.isfinite(p).all() for p in module.parameters())
