"""Prompt rendering shared by every scoring backend.

A prompt is split once per (template, label space) into a shared ``prefix`` (system message,
instruction, label space: everything before the sentence) and a ``suffix_template`` that starts
with the ``{sentence}`` placeholder (the sentence, the rest of the template, the chat template's
assistant header, then ``answer_prefix``). Each query fills the sentence in and scores the label:

    prefix, suffix_template = split_prompt(CAP_TEMPLATE, tokenizer=tokenizer, labels=labels)
    suffix, target = build_query(suffix_template, sentence="my card is lost", label="lost_or_stolen_card")
    # log p(target | prefix + suffix), target == " lost or stolen card"

Leading-space convention: the target is ``" " + render_label(label)``, so the answer reads
"Intent: lost or stolen card" and, with BPE tokenizers, the label's first word is the usual
space-prefixed token. Backends tokenise prefix, suffix and target separately (see
``pipeline.llm.base``).
"""

from __future__ import annotations

import re
import string
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, field_validator

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# private-use code points: no chat template or tokenizer rewrites them
_SENTINEL = "\ue000sentence\ue000"
_FIELDS = {"labels", "sentence"}
_REWRITE_FIELDS = {"sentence", "keywords", "source_keywords", "label", "target"}


def _check_placeholders(user: str, *, allowed: set[str]) -> str:
    """``user`` if it is a format string with exactly one {sentence} and only ``allowed`` placeholders."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(user) if name is not None]
    except ValueError as exc:
        raise ValueError(f"not a valid format string ({exc}); write literal braces as {{{{ and }}}}") from None
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; allowed: {', '.join(f'{{{f}}}' for f in sorted(allowed))}")
    if fields.count("sentence") != 1:
        raise ValueError(f"needs exactly one {{sentence}} placeholder, found {fields.count('sentence')}")
    return user


class PromptTemplate(BaseModel):
    """A scoring prompt.

    Attributes:
        system: system message; None keeps the chat template's default (if any).
        user: user message, a ``str.format`` string with ``{sentence}`` (exactly once) and optionally
            ``{labels}``; literal braces are written ``{{`` and ``}}``.
        answer_prefix: text the assistant turn starts with, before the label (e.g. "Intent:").
        label_separator: joins the rendered labels into ``{labels}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str | None = None
    user: str
    answer_prefix: str = ""
    label_separator: str = "\n"

    @field_validator("user")
    @classmethod
    def _check_user(cls, user: str) -> str:
        return _check_placeholders(user, allowed=_FIELDS)


CAP_TEMPLATE = PromptTemplate(
    user=(
        "Classify the customer message into one of these intents:\n{labels}\n\n"
        "Answer with the intent only.\nMessage: {sentence}"
    ),
    answer_prefix="Intent:",
)
"""CAP: task instruction + the full label space + the (masked) sentence."""

LIME_TEMPLATE = PromptTemplate(user="Message: {sentence}", answer_prefix="Intent:")
"""LIME: the sentence alone, no instruction and no label space; the same target."""


class RewriteTemplate(BaseModel):
    """A rewriting prompt of the LLM adversarial generator (``adversarial.generator: llm``).

    Attributes:
        system: system message; None keeps the chat template's default (if any).
        user: user message, a ``str.format`` string with ``{sentence}`` (exactly once) and optionally
            ``{keywords}`` (the adversarial class's keywords, comma-separated), ``{source_keywords}``
            (the sentence's own class keywords that occur in it), ``{label}`` (its class) and
            ``{target}`` (the adversarial class), classes rendered with :func:`render_label`.
        answer_prefix: text the assistant turn starts with, before the rewritten sentence.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str | None = None
    user: str
    answer_prefix: str = ""

    @field_validator("user")
    @classmethod
    def _check_user(cls, user: str) -> str:
        return _check_placeholders(user, allowed=_REWRITE_FIELDS)

    def render(
        self, tokenizer: PreTrainedTokenizerBase, *, sentence: str, keywords: list[str], source_keywords: list[str],
        label: str, target: str,
    ) -> str:
        """The whole generation prompt (chat template applied, then ``answer_prefix``)."""
        user = self.user.format(
            sentence=sentence, keywords=", ".join(keywords), source_keywords=", ".join(source_keywords),
            label=render_label(label), target=render_label(target),
        )
        return chat_prompt(tokenizer, system=self.system, user=user) + self.answer_prefix


ADD_TEMPLATE = RewriteTemplate(
    user="Rewrite this sentence so that it also contains the words: {keywords}.\nSentence: {sentence}",
    answer_prefix="Rewritten sentence:",
)
"""Keyword addition: the sentence keeps its intent and gains the adversarial class's keywords."""

REPLACE_TEMPLATE = RewriteTemplate(
    user="Rewrite this sentence, replacing the words {source_keywords} with some of these words: {keywords}.\n"
    "Sentence: {sentence}",
    answer_prefix="Rewritten sentence:",
)
"""Keyword replacement: the sentence's own class keywords give way to the adversarial class's."""


def render_label(name: str) -> str:
    """Readable label text: underscores and hyphens become spaces ("card_arrival" -> "card arrival")."""
    return " ".join(re.split(r"[_\-\s]+", name)).strip()


def split_prompt(template: PromptTemplate, *, tokenizer: PreTrainedTokenizerBase, labels: list[str]) -> tuple[str, str]:
    """Render ``template`` for a label space and split it at the sentence.

    The prompt is rendered by :func:`chat_prompt` with a sentinel in place of the sentence.

    Args:
        template: the prompt.
        tokenizer: a Hugging Face tokenizer (its chat template and bos token are used).
        labels: the label space in display order (raw names; rendered with :func:`render_label`).

    Returns:
        ``(prefix, suffix_template)``: prefix = everything before the sentence; suffix_template =
        ``"{sentence}"`` + the rest of the prompt + ``answer_prefix``. Fill it with
        :func:`build_query`.

    Raises:
        ConfigError: the chat template does not keep the user message verbatim.
    """
    user = template.user.format(labels=template.label_separator.join(map(render_label, labels)), sentence=_SENTINEL)
    text = chat_prompt(tokenizer, system=template.system, user=user)
    if text.count(_SENTINEL) != 1:
        raise ConfigError(f"prompt template {template.user[:40]!r}: the chat template dropped or repeated the sentence")
    prefix, tail = text.split(_SENTINEL)
    return prefix, "{sentence}" + tail + template.answer_prefix


def chat_prompt(tokenizer: PreTrainedTokenizerBase, *, system: str | None, user: str) -> str:
    """The text a chat model sees before its answer: the chat template with ``add_generation_prompt=True``.

    A tokenizer without a chat template falls back to plain text:
    ``bos_token + system + "\\n\\n" + user + "\\n"``. ``system=None`` keeps the template's default.
    """
    if tokenizer.chat_template:
        messages = ([{"role": "system", "content": system}] if system is not None else []) + [{"role": "user", "content": user}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    system_text = f"{system}\n\n" if system else ""
    return f"{tokenizer.bos_token or ''}{system_text}{user}\n"


def build_query(suffix_template: str, *, sentence: str, label: str) -> tuple[str, str]:
    """One scoring query: ``(suffix, target)`` with the sentence filled in and target = " " + rendered label."""
    return suffix_template.replace("{sentence}", sentence, 1), " " + render_label(label)
