import dataclasses

import pytest

from llava_hf.data.templates import TEMPLATES, PromptTemplate, get_template, template_from_chat_template


def test_all_named_templates_exist_and_internlm2_matches_xtuner():
    assert set(TEMPLATES) == {"internlm2_chat", "internlm_chat", "vicuna", "llama3_chat", "qwen_chat", "phi3_chat", "plain"}
    t = get_template("internlm2_chat")
    assert t.instruction == "<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n"
    assert (t.suffix, t.suffix_as_eos, t.sep, t.stop_words) == ("<|im_end|>", True, "\n", ("<|im_end|>",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.sep = ""


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown prompt template 'internlm3'.*internlm2_chat.*plain.*chat_template"):
        get_template("internlm3")


def test_chat_template_needs_a_tokenizer():
    with pytest.raises(ValueError, match="needs the tokenizer"):
        get_template("chat_template")


def test_derived_from_internlm2_chat_template_equals_the_named_one(tiny_tokenizer):
    derived = get_template("chat_template", tiny_tokenizer)
    named = get_template("internlm2_chat")
    assert (derived.instruction, derived.suffix, derived.suffix_as_eos, derived.sep) == (
        named.instruction, named.suffix, named.suffix_as_eos, named.sep)


class _FakeTokenizer:
    bos_token = "<s>"

    def __init__(self, chat_template):
        self.chat_template = chat_template

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        from jinja2 import Template

        return Template(self.chat_template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                   bos_token=self.bos_token)


def test_derived_template_without_end_marker_uses_eos():
    tokenizer = _FakeTokenizer("{% for m in messages %}{% if m['role'] == 'user' %}Q: {{ m['content'] }}\nA:"
                               "{% else %} {{ m['content'] }}\n{% endif %}{% endfor %}"
                               "{% if add_generation_prompt %}{% endif %}")
    # The reply is rendered as " {reply}\n": the leading space belongs to the prompt side.
    with pytest.raises(ValueError, match="does not render user/assistant turns in order"):
        template_from_chat_template(tokenizer)
    tokenizer = _FakeTokenizer("{% for m in messages %}{% if m['role'] == 'user' %}Q: {{ m['content'] }}\nA: "
                               "{% else %}{{ m['content'] }}\n{% endif %}{% endfor %}")
    t = template_from_chat_template(tokenizer)
    assert t == PromptTemplate(system="{system}", instruction="Q: {input}\nA: ", suffix="", suffix_as_eos=False, sep="\n")


def test_template_with_a_default_system_prompt_is_refused():
    tokenizer = _FakeTokenizer("{% for m in messages %}{% if loop.first %}SYS\n{% endif %}"
                               "<u>{{ m['content'] }}</u>{% endfor %}{% if add_generation_prompt %}<u>{% endif %}")
    with pytest.raises(ValueError, match="renders the first turn differently"):
        template_from_chat_template(tokenizer)
