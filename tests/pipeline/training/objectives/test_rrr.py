import pytest
import torch

from pipeline.attribution.attribution import encode_words, tokens_to_words
from pipeline.training.objectives import get_objective
from pipeline.training.objectives.base import Batch
from pipeline.training.objectives.rrr import Rrr


def test_rrr_penalises_the_squared_input_gradient_of_the_words_the_prior_calls_irrelevant(make_minilm):
    model, tokenizer, _ = make_minilm(2)
    sentences = ["the zorvik film was great".split()]
    encoding, word_index = encode_words(tokenizer, sentences)
    # decoy_truth: 0 on the decoy (word 1), uniform elsewhere -> annotation 1 on the decoy only
    batch = Batch(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"], labels=torch.tensor([1]),
                  word_index=word_index, prior=torch.tensor([[1.0, 0.0, 1.0, 1.0, 1.0]]))
    model.train()
    ce = torch.tensor(0.5)
    loss, parts = get_objective("rrr", lam=10.0).loss(model=model, modules={}, batch=batch, logits=torch.zeros(1, 2), ce=ce,
                                                      phase="main", epoch=0)
    assert model.training and loss.requires_grad
    model.eval()
    embeddings = model.get_input_embeddings()(batch.input_ids).detach().requires_grad_()
    logits = model(inputs_embeds=embeddings, attention_mask=batch.attention_mask).logits
    logits.log_softmax(-1).sum().backward()
    per_word, _ = tokens_to_words((embeddings.grad**2).sum(-1), word_index, n_words=5)
    assert parts["align"] == pytest.approx(per_word[0, 1].item(), rel=1e-4)
    torch.testing.assert_close(loss, ce + 10.0 * torch.tensor(parts["align"]))


def test_rrr_trains_the_decoys_input_gradient_down(make_minilm):
    model, tokenizer, _ = make_minilm(2)
    sentences = ["the zorvik film was great".split(), "plimbo a dull and tired plot".split()]
    encoding, word_index = encode_words(tokenizer, sentences)
    batch = Batch(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"], labels=torch.tensor([1, 0]),
                  word_index=word_index, prior=torch.tensor([[1.0, 0.0, 1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]]))
    objective, optimiser = Rrr(lam=1e5), torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.eval()  # no dropout: the penalty must fall because of the update alone
    penalties = []
    for _ in range(5):
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        ce = torch.nn.functional.cross_entropy(logits, batch.labels)
        loss, parts = objective.loss(model=model, modules={}, batch=batch, logits=logits, ce=ce, phase="main", epoch=0)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        penalties.append(parts["align"])
    assert penalties[-1] < 0.5 * penalties[0]
