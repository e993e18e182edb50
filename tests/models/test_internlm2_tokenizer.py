"""The published InternLM2 tokenizer files load without remote code and give the original ids.

Reference behaviour (the original slow `InternLM2Tokenizer`): `<s>` first, special tokens matched whole,
every other chunk is `sp_model.encode(chunk)` with no dummy prefix. Ids of bytes and chat tokens are derived
by hand from the vocabulary layout: <unk>=0, <s>=1, </s>=2, byte pieces <0x00>..<0xFF> at 3..258, the six
renamed placeholders last (…, <|im_end|> = n-2, <|im_start|> = n-1), as in the 92544-piece original.
"""

import json
import os
import re

import pytest
import sentencepiece as spm
from transformers import AutoTokenizer, TokenizersBackend

from llava_hf.models.internlm2 import InternLM2Tokenizer

SPECIALS = ["<|plugin|>", "<|interpreter|>", "<|action_end|>", "<|action_start|>", "<|im_end|>", "<|im_start|>"]


@pytest.fixture(scope="module")
def sp(tiny_tokenizer_dir):
    return spm.SentencePieceProcessor(model_file=os.path.join(tiny_tokenizer_dir, "tokenizer.model"))


def reference_ids(sp, text):
    n = sp.get_piece_size()
    special_ids = {tok: n - len(SPECIALS) + i for i, tok in enumerate(SPECIALS)}
    ids = [1]
    for chunk in re.split("(" + "|".join(map(re.escape, SPECIALS)) + ")", text):
        if chunk in special_ids:
            ids.append(special_ids[chunk])
        elif chunk:
            ids.extend(sp.encode(chunk))
    return ids


def test_loads_as_our_class_without_remote_code(tiny_tokenizer):
    assert isinstance(tiny_tokenizer, InternLM2Tokenizer)
    assert tiny_tokenizer.padding_side == "left"


def test_hand_derived_ids_of_a_chat_turn(tiny_tokenizer, sp):
    n = sp.get_piece_size()
    ids = tiny_tokenizer("<|im_start|>user\n<|im_end|>\n").input_ids
    assert ids[:2] == [1, n - 1]  # <s>, <|im_start|>
    assert ids[-3:] == [13, n - 2, 13]  # "\n" is byte 0x0A -> 3 + 10; <|im_end|>
    assert ids[2:-3] == [sp.piece_to_id(p) for p in sp.encode("user", out_type=str)]


@pytest.mark.parametrize(
    "text",
    [
        "<|im_start|>user\nWhat color is the shape?<|im_end|>\n<|im_start|>assistant\nA red circle.<|im_end|>\n",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n你好，世界 😀<|im_end|>\n",
        "  two leading spaces, digits 12345 and\ttabs",
        "<|action_start|><|plugin|>\n{\"name\": 1}<|action_end|>",
    ],
)
def test_ids_equal_the_original_tokenizer(tiny_tokenizer, sp, text):
    assert tiny_tokenizer(text).input_ids == reference_ids(sp, text)
    assert tiny_tokenizer.decode(tiny_tokenizer(text).input_ids[1:]) == text


def test_no_dummy_prefix_and_special_tokens_never_split(tiny_tokenizer):
    first = tiny_tokenizer.convert_ids_to_tokens(tiny_tokenizer("What", add_special_tokens=False).input_ids)
    assert not first[0].startswith("▁")
    assert tiny_tokenizer("<|im_end|>", add_special_tokens=False).input_ids == [tiny_tokenizer.vocab_size - 2]
    assert tiny_tokenizer("x<|im_end|>y", add_special_tokens=False).input_ids.count(tiny_tokenizer.vocab_size - 2) == 1


def test_chat_template_has_exactly_one_bos(tiny_tokenizer, sp):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    text = tiny_tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == "<s><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n"
    ids = tiny_tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=False)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert ids.count(1) == 1 and ids[0] == 1
    assert ids == reference_ids(sp, text[len("<s>"):])


def test_save_and_reload_keeps_ids_and_the_sentencepiece_file(tiny_tokenizer, tmp_path, sp):
    tiny_tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.model").is_file(), "exports must still load in the original ecosystem"
    saved = json.loads((tmp_path / "tokenizer_config.json").read_text())
    # no tokenizer code is needed: the published auto_map names files a saved folder never holds
    assert "AutoTokenizer" not in saved.get("auto_map", {}) and saved["padding_side"] == "left"
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(reloaded, TokenizersBackend) and reloaded.padding_side == "left"
    text = "<|im_start|>user\nWhat shape is in the image?<|im_end|>\n"
    assert reloaded(text).input_ids == reference_ids(sp, text)
