"""Every template renders real rows with the real InternLM2 ids as it does with the tiny test tokenizer:
the same text and the same supervised spans (the golden tests in tests/data pin both on the tiny one)."""

import itertools

import pytest

from llava_hf.data.templates import TEMPLATES, get_template
from llava_hf.data.tokenization import IGNORE_INDEX, tokenize_conversation


def supervised_spans(tokenizer, ids, labels) -> list[str]:
    """Decoded runs of consecutive supervised tokens."""
    runs = itertools.groupby(zip(ids, labels), key=lambda pair: pair[1] != IGNORE_INDEX)
    return [tokenizer.decode([i for i, _ in run]) for supervised, run in runs if supervised]


def render(tokenizer, conversation, template_name, has_image):
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    ids, labels = tokenize_conversation(conversation, tokenizer, get_template(template_name),
                                        image_token_id=image_token_id, has_image=has_image, max_length=100_000)
    return tokenizer.decode(ids), supervised_spans(tokenizer, ids, labels)


@pytest.mark.parametrize("template_name", sorted(TEMPLATES))
def test_real_ids_render_like_the_tiny_tokenizer(internlm2_tokenizer, tiny_image_tokenizer, llava_instruct_rows,
                                                 scienceqa_rows, template_name):
    image_row = llava_instruct_rows[0]["conversations"][:4]  # two turns, <image> after the first question
    cases = [(image_row, True), (image_row[:2], True), (scienceqa_rows[0]["conversations"], False)]
    if template_name == "plain":  # single-turn image captions only
        cases = cases[1:2]
    for conversation, has_image in cases:
        real_text, real_spans = render(internlm2_tokenizer, conversation, template_name, has_image)
        assert (real_text, real_spans) == render(tiny_image_tokenizer, conversation, template_name, has_image)
        replies = [m["value"] for m in conversation[1::2]]
        assert [span.startswith(reply) for span, reply in zip(real_spans, replies)] == [True] * len(replies)
