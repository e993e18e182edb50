"""The real InternLM2 tokenizer gives SentencePiece's own ids, with the chat tokens as single ids.

The reference is what the original (remote-code) `InternLM2Tokenizer` does: split the text at the chat tokens
its `tokenizer_config.json` renames, map each of them to its id, and `sp_model.encode` everything else.
"""

import json
import re

import pytest

from tests.real.conftest import real_path


TEXTS = [
    "The quick brown fox jumps over the lazy dog. What color is the shape?",
    "你好，世界！这是一张图片。请直接回答选项字母。",
    "def area(r: float) -> float:\n    return 3.14159 * r ** 2  # {'a': [1, 2]}\n",
    "   leading spaces, inner    runs,\t\ttabs\n\n\nnewlines and trailing   ",
    "emoji 😀👍🏽🇺🇸 and symbols ©®™ ∑∫ — «quotes»",
    "digits 0123456789 3.14159 2024-11-30 1e-5 ①②③ ４２",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n",
    "<|action_start|><|plugin|>\n{\"name\": \"search\"}<|action_end|><|interpreter|>",
    "x<|im_end|>y<|im_start|><|im_start|>z",
    "Mixed 中文 and English 😀 with <|im_end|> inside\n",
]


@pytest.fixture(scope="module")
def chat_token_ids():
    """`{content: id}` of the six renamed chat tokens, read from the published tokenizer_config.json."""
    config = json.loads(real_path("internlm2_tokenizer", "tokenizer_config.json").read_text())
    return {entry["content"]: int(i) for i, entry in config["added_tokens_decoder"].items() if int(i) > 2}


def sentencepiece_ids(sp, chat_token_ids, text):
    pattern = "(" + "|".join(map(re.escape, chat_token_ids)) + ")"
    ids = []
    for chunk in re.split(pattern, text):
        ids += [chat_token_ids[chunk]] if chunk in chat_token_ids else sp.encode(chunk) if chunk else []
    return ids


@pytest.mark.parametrize("text", TEXTS)
def test_ids_equal_sentencepiece(internlm2_tokenizer, internlm2_sp, chat_token_ids, text):
    expected = sentencepiece_ids(internlm2_sp, chat_token_ids, text)
    assert internlm2_tokenizer(text).input_ids == [internlm2_sp.bos_id()] + expected
    assert internlm2_tokenizer.encode(text, add_special_tokens=False) == expected
    assert internlm2_tokenizer.decode(expected) == text


def test_chat_tokens_are_single_ids_over_the_placeholders(internlm2_tokenizer, internlm2_sp, chat_token_ids):
    assert internlm2_sp.get_piece_size() == 92544 and len(chat_token_ids) == 6
    for content, token_id in chat_token_ids.items():
        assert internlm2_sp.id_to_piece(token_id).startswith("[UNUSED_TOKEN_14")  # renamed only by the config
        assert len(internlm2_sp.encode(content)) > 1  # SentencePiece alone would split it
        assert internlm2_tokenizer.encode(content, add_special_tokens=False) == [token_id]
        assert internlm2_tokenizer.convert_ids_to_tokens(token_id) == content
    assert (internlm2_tokenizer.convert_tokens_to_ids("<|im_end|>"), internlm2_tokenizer.eos_token_id) == (92542, 2)


def test_every_real_message_encodes_as_sentencepiece_does(internlm2_tokenizer, internlm2_sp, llava_instruct_rows,
                                                         scienceqa_rows):
    """English, Chinese and code from 4341 real LLaVA-format rows: every message value, <image> taken out."""
    texts = [m["value"].replace("<image>", "") for row in llava_instruct_rows + scienceqa_rows
             for m in row["conversations"]]
    ours = internlm2_tokenizer(texts, add_special_tokens=False).input_ids
    mismatches = [t for t, ids, ref in zip(texts, ours, internlm2_sp.encode(texts)) if ids != ref]
    assert not mismatches, f"{len(mismatches)} of {len(texts)} differ, e.g. {mismatches[0]!r}"
