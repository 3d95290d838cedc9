import pytest
from pydantic import ValidationError
from transformers import AutoTokenizer

from pipeline.errors import ConfigError
from pipeline.models import resolve_model
from pipeline.prompts import (
    ADD_TEMPLATE,
    CAP_TEMPLATE,
    LIME_TEMPLATE,
    PromptTemplate,
    RewriteTemplate,
    build_query,
    render_label,
    split_prompt,
)

LABELS = ["card_arrival", "Refund_not_showing_up", "top-up-limits"]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct"))


def test_render_label_makes_names_readable():
    assert render_label("card_arrival") == "card arrival"
    assert render_label("Refund_not_showing_up") == "Refund not showing up"
    assert render_label("top-up-limits") == "top up limits"
    assert render_label("negative") == "negative"


@pytest.mark.parametrize("template", [CAP_TEMPLATE, LIME_TEMPLATE])
def test_split_prompt_reassembles_the_chat_prompt(tokenizer, template):
    sentence = "Where is my new card?"
    prefix, suffix_template = split_prompt(template, tokenizer=tokenizer, labels=LABELS)
    suffix, target = build_query(suffix_template, sentence=sentence, label="card_arrival")
    user = template.user.format(labels="\n".join(map(render_label, LABELS)), sentence=sentence)
    chat = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
    assert prefix + suffix == chat + template.answer_prefix
    assert suffix.startswith(sentence) and suffix.endswith("<|im_start|>assistant\nIntent:")
    assert target == " card arrival"


def test_cap_prefix_holds_the_label_space_and_lime_does_not(tokenizer):
    cap_prefix, _ = split_prompt(CAP_TEMPLATE, tokenizer=tokenizer, labels=LABELS)
    lime_prefix, lime_suffix = split_prompt(LIME_TEMPLATE, tokenizer=tokenizer, labels=LABELS)
    assert "card arrival\nRefund not showing up\ntop up limits" in cap_prefix
    assert not any(render_label(label) in lime_prefix + lime_suffix for label in LABELS)


def test_system_message_and_separator_are_used(tokenizer):
    template = PromptTemplate(system="Be terse.", user="{labels} | {sentence}", label_separator=", ")
    prefix, suffix_template = split_prompt(template, tokenizer=tokenizer, labels=LABELS)
    assert prefix.startswith("<|im_start|>system\nBe terse.<|im_end|>")
    assert prefix.endswith("card arrival, Refund not showing up, top up limits | ")
    assert suffix_template == "{sentence}<|im_end|>\n<|im_start|>assistant\n"


def test_tokenizer_without_chat_template_falls_back_to_plain_text(tokenizer, monkeypatch):
    monkeypatch.setattr(tokenizer, "chat_template", None)
    template = PromptTemplate(system="Sys.", user="Intents: {labels}\nMessage: {sentence}", answer_prefix="Intent:")
    prefix, suffix_template = split_prompt(template, tokenizer=tokenizer, labels=LABELS[:1])
    assert prefix == f"{tokenizer.bos_token}Sys.\n\nIntents: card arrival\nMessage: "
    assert suffix_template == "{sentence}\nIntent:"


def test_chat_template_that_drops_the_message_is_refused(tokenizer, monkeypatch):
    monkeypatch.setattr(tokenizer, "chat_template", "{% for m in messages %}{{ m.role }}{% endfor %}")
    with pytest.raises(ConfigError, match="dropped or repeated the sentence"):
        split_prompt(LIME_TEMPLATE, tokenizer=tokenizer, labels=LABELS)


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("no placeholder", "exactly one {sentence}"),
        ("{sentence} and {sentence}", "exactly one {sentence}"),
        ("{sentence} {label}", r"unknown placeholder\(s\) \['label'\]"),
        ("{sentence} {", "not a valid format string"),
    ],
)
def test_invalid_user_templates_are_refused(user, message):
    with pytest.raises(ValidationError, match=message):
        PromptTemplate(user=user)


def test_literal_braces_survive(tokenizer):
    template = PromptTemplate(user='Reply as {{"intent": ...}}. {sentence}')
    prefix, suffix_template = split_prompt(template, tokenizer=tokenizer, labels=LABELS)
    assert prefix.endswith('Reply as {"intent": ...}. ')
    assert build_query(suffix_template, sentence="a {sentence} b", label="x")[0].startswith("a {sentence} b<|im_end|>")


def test_rewrite_template_renders_keywords_classes_and_answer_prefix(tokenizer):
    template = RewriteTemplate(user="Make '{sentence}' ({label}) sound like {target}: use {keywords}, drop {source_keywords}.",
                               answer_prefix="New:")
    prompt = template.render(tokenizer, sentence="my card is late", keywords=["fee", "rate"], source_keywords=["card"],
                             label="card_arrival", target="exchange_rate")
    assert prompt.startswith("<|im_start|>system\n")
    assert prompt.endswith("Make 'my card is late' (card arrival) sound like exchange rate: use fee, rate, drop card."
                           "<|im_end|>\n<|im_start|>assistant\nNew:")
    default = ADD_TEMPLATE.render(tokenizer, sentence="s", keywords=["fee"], source_keywords=[], label="a", target="b")
    assert "contains the words: fee." in default and default.endswith("Rewritten sentence:")


def test_rewrite_template_refuses_placeholders_it_cannot_fill():
    with pytest.raises(ValidationError, match=r"unknown placeholder\(s\) \['labels'\]; allowed: \{keywords\}, \{label\}"):
        RewriteTemplate(user="{sentence} {labels}")
    with pytest.raises(ValidationError, match="exactly one {sentence}"):
        RewriteTemplate(user="use {keywords}")
