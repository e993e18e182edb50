"""Golden tests: rendered text and loss mask per template, written by hand from XTuner's template strings."""

import os
import pickle

import pytest

from llava_hf.data.templates import get_template
from llava_hf.data.tokenization import (
    IGNORE_INDEX, BulkEncoder, expand_image_tokens, tokenize_conversation,
)

BOS, EOS, IMG = "BOS", "EOS", "IMG"
N_IMAGE = 3
WITH_IMAGE = [
    {"from": "human", "value": "What is shown?\n<image>"},  # image at the end, as in LCS-558K: moved to the front
    {"from": "gpt", "value": "A dog."},
    {"from": "human", "value": "What colour?"},
    {"from": "gpt", "value": "Brown."},
]
TEXT_ONLY = [{"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Hi there."}]

# (segment, carries loss) in order; the full rendered text is the concatenation.
GOLDEN = {
    "internlm2_chat": (
        [(BOS, 0), ("<|im_start|>user\n", 0), (IMG, 0), ("\nWhat is shown?<|im_end|>\n<|im_start|>assistant\n", 0),
         ("A dog.<|im_end|>", 1), ("\n", 0),
         ("<|im_start|>user\nWhat colour?<|im_end|>\n<|im_start|>assistant\n", 0), ("Brown.<|im_end|>", 1), ("\n", 0)],
        [(BOS, 0), ("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", 0), ("Hi there.<|im_end|>", 1), ("\n", 0)],
    ),
    "internlm_chat": (
        [(BOS, 0), ("<|User|>:", 0), (IMG, 0), ("\nWhat is shown?<eoh>\n<|Bot|>:", 0), ("A dog.<eoa>", 1), ("\n", 0),
         ("<|User|>:What colour?<eoh>\n<|Bot|>:", 0), ("Brown.<eoa>", 1), ("\n", 0)],
        [(BOS, 0), ("<|User|>:Hello<eoh>\n<|Bot|>:", 0), ("Hi there.<eoa>", 1), ("\n", 0)],
    ),
    "vicuna": (  # no suffix: EOS with loss after each reply, BOS before every turn
        [(BOS, 0), ("USER: ", 0), (IMG, 0), ("\nWhat is shown? ASSISTANT:", 0), ("A dog.", 1), (EOS, 1), ("\n", 0),
         (BOS, 0), ("USER: What colour? ASSISTANT:", 0), ("Brown.", 1), (EOS, 1), ("\n", 0)],
        [(BOS, 0), ("USER: Hello ASSISTANT:", 0), ("Hi there.", 1), (EOS, 1), ("\n", 0)],
    ),
    "llama3_chat": (  # no sep
        [(BOS, 0), ("<|start_header_id|>user<|end_header_id|>\n\n", 0), (IMG, 0),
         ("\nWhat is shown?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", 0), ("A dog.<|eot_id|>", 1),
         ("<|start_header_id|>user<|end_header_id|>\n\nWhat colour?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", 0),
         ("Brown.<|eot_id|>", 1)],
        [(BOS, 0), ("<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", 0),
         ("Hi there.<|eot_id|>", 1)],
    ),
    "qwen_chat": (
        [(BOS, 0), ("<|im_start|>user\n", 0), (IMG, 0), ("\nWhat is shown?<|im_end|>\n<|im_start|>assistant\n", 0),
         ("A dog.<|im_end|>", 1), ("\n", 0),
         ("<|im_start|>user\nWhat colour?<|im_end|>\n<|im_start|>assistant\n", 0), ("Brown.<|im_end|>", 1), ("\n", 0)],
        [(BOS, 0), ("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", 0), ("Hi there.<|im_end|>", 1), ("\n", 0)],
    ),
    "phi3_chat": (
        [(BOS, 0), ("<|user|>\n", 0), (IMG, 0), ("\nWhat is shown?<|end|>\n<|assistant|>\n", 0), ("A dog.<|end|>", 1), ("\n", 0),
         ("<|user|>\nWhat colour?<|end|>\n<|assistant|>\n", 0), ("Brown.<|end|>", 1), ("\n", 0)],
        [(BOS, 0), ("<|user|>\nHello<|end|>\n<|assistant|>\n", 0), ("Hi there.<|end|>", 1), ("\n", 0)],
    ),
}


def encode_conversation(conversations, tokenizer, template, *, image_token_id, image_seq_length, **kwargs):
    """`{"input_ids", "labels"}` as training sees them: tokenized, then every `<image>` expanded."""
    input_ids, labels = tokenize_conversation(conversations, tokenizer, template, image_token_id=image_token_id, **kwargs)
    input_ids, labels = expand_image_tokens(input_ids, labels, image_token_id, image_seq_length)
    return {"input_ids": input_ids.tolist(), "labels": labels.tolist()}


def expected_ids(tokenizer, image_token_id, segments):
    ids, labels = [], []
    for segment, loss in segments:
        if segment == BOS:
            piece = [tokenizer.bos_token_id]
        elif segment == EOS:
            piece = [tokenizer.eos_token_id]
        elif segment == IMG:
            piece = [image_token_id] * N_IMAGE
        else:
            piece = tokenizer.encode(segment, add_special_tokens=False)
        ids += piece
        labels += piece if loss else [IGNORE_INDEX] * len(piece)
    return ids, labels


def rendered_text(segments):
    names = {BOS: "<s>", EOS: "</s>", IMG: "<image>" * N_IMAGE}
    return "".join(names.get(segment, segment) for segment, _ in segments)


@pytest.mark.parametrize("name", sorted(GOLDEN))
@pytest.mark.parametrize("case", ["with_image", "text_only"])
def test_golden_template(image_tokenizer, name, case):
    conversation, has_image, segments = (
        (WITH_IMAGE, True, GOLDEN[name][0]) if case == "with_image" else (TEXT_ONLY, False, GOLDEN[name][1])
    )
    image_token_id = image_tokenizer.convert_tokens_to_ids("<image>")
    result = encode_conversation(conversation, image_tokenizer, get_template(name), image_token_id=image_token_id,
                                 image_seq_length=N_IMAGE, has_image=has_image)
    ids, labels = expected_ids(image_tokenizer, image_token_id, segments)
    assert image_tokenizer.decode(result["input_ids"], skip_special_tokens=False) == rendered_text(segments)
    assert result["input_ids"] == ids
    assert result["labels"] == labels


@pytest.mark.parametrize("name", sorted(GOLDEN))
@pytest.mark.parametrize("case", ["with_image", "text_only"])
def test_leading_gpt_and_trailing_human_turns_are_left_out(image_tokenizer, name, case):
    """Same ids and labels as the sample written without them (XTuner's llava_map_fn drops them too)."""
    conversation, has_image = (WITH_IMAGE, True) if case == "with_image" else (TEXT_ONLY, False)
    messy = [{"from": "gpt", "value": "Hello, what can I do for you?"}, *conversation,
             {"from": "human", "value": "And one more question?"}]
    image_token_id = image_tokenizer.convert_tokens_to_ids("<image>")

    def encode(turns):
        return encode_conversation(turns, image_tokenizer, get_template(name), image_token_id=image_token_id,
                                   image_seq_length=N_IMAGE, has_image=has_image)

    assert encode(messy) == encode(conversation)
    assert image_tokenizer.decode(encode(messy)["input_ids"]) == rendered_text(GOLDEN[name][case != "with_image"])


THREE_IMAGES = [  # LLaVA-OneVision's interleaved form: "image": [a, b, c], placeholders stay where they are
    {"from": "human", "value": "Compare <image> and <image>."},
    {"from": "gpt", "value": "Both are dogs."},
    {"from": "human", "value": "And this one?\n<image>"},
    {"from": "gpt", "value": "A cat."},
]
GOLDEN_THREE_IMAGES = {
    "internlm2_chat": [
        (BOS, 0), ("<|im_start|>user\nCompare ", 0), (IMG, 0), (" and ", 0), (IMG, 0),
        (".<|im_end|>\n<|im_start|>assistant\n", 0), ("Both are dogs.<|im_end|>", 1), ("\n", 0),
        ("<|im_start|>user\nAnd this one?\n", 0), (IMG, 0), ("<|im_end|>\n<|im_start|>assistant\n", 0),
        ("A cat.<|im_end|>", 1), ("\n", 0)],
    "vicuna": [
        (BOS, 0), ("USER: Compare ", 0), (IMG, 0), (" and ", 0), (IMG, 0), (". ASSISTANT:", 0), ("Both are dogs.", 1),
        (EOS, 1), ("\n", 0), (BOS, 0), ("USER: And this one?\n", 0), (IMG, 0), (" ASSISTANT:", 0), ("A cat.", 1),
        (EOS, 1), ("\n", 0)],
}


@pytest.mark.parametrize("name", sorted(GOLDEN_THREE_IMAGES))
@pytest.mark.parametrize("n_images", [0, 1, 3])
def test_each_image_expands_in_place_and_is_never_supervised(image_tokenizer, name, n_images):
    """0, 1 and 3 images: the template's ids and labels with every image expanded where its `<image>` is."""
    conversation, segments = {0: (TEXT_ONLY, GOLDEN[name][1]), 1: (WITH_IMAGE, GOLDEN[name][0]),
                              3: (THREE_IMAGES, GOLDEN_THREE_IMAGES[name])}[n_images]
    image_token_id = image_tokenizer.convert_tokens_to_ids("<image>")
    result = encode_conversation(conversation, image_tokenizer, get_template(name), image_token_id=image_token_id,
                                 image_seq_length=N_IMAGE, has_image=n_images)
    assert image_tokenizer.decode(result["input_ids"], skip_special_tokens=False) == rendered_text(segments)
    assert (result["input_ids"], result["labels"]) == expected_ids(image_tokenizer, image_token_id, segments)
    assert result["input_ids"].count(image_token_id) == n_images * N_IMAGE


def test_truncation_cuts_whole_images_counting_each_as_one_token(image_tokenizer):
    image_token_id = image_tokenizer.convert_tokens_to_ids("<image>")
    template = get_template("internlm2_chat")
    full, _ = tokenize_conversation(THREE_IMAGES, image_tokenizer, template, image_token_id=image_token_id,
                                    max_length=10_000, has_image=3)
    last_image = len(full) - 1 - full[::-1].index(image_token_id)
    short, labels = tokenize_conversation(THREE_IMAGES, image_tokenizer, template, image_token_id=image_token_id,
                                          max_length=last_image, has_image=3)
    assert short == full[:last_image] and short.count(image_token_id) == 2 and labels.count(IGNORE_INDEX) < len(labels)


def test_plain_renders_one_captioned_image(image_tokenizer):
    """LLaVA-1.5 stage 1: the user text is dropped, the caption + "\n" carries the loss."""
    image_token_id = image_tokenizer.convert_tokens_to_ids("<image>")
    result = encode_conversation(WITH_IMAGE[:2], image_tokenizer, get_template("plain"), image_token_id=image_token_id,
                                 image_seq_length=N_IMAGE, has_image=True)
    segments = [(BOS, 0), (IMG, 0), ("A dog.\n", 1)]
    assert (result["input_ids"], result["labels"]) == expected_ids(image_tokenizer, image_token_id, segments)


@pytest.mark.parametrize("conversation, has_image, message", [
    (TEXT_ONLY, False, "needs an image; this sample is text-only"),
    (WITH_IMAGE, True, "takes one turn; this sample has 2"),
])
def test_plain_refuses_text_only_and_multi_turn_samples(image_tokenizer, conversation, has_image, message):
    with pytest.raises(ValueError, match=f"'plain' template .*{message}"):
        tokenize_conversation(conversation, image_tokenizer, get_template("plain"), image_token_id=7, has_image=has_image)


def test_plain_refuses_several_images(image_tokenizer):
    two = [{"from": "human", "value": "<image><image>"}, {"from": "gpt", "value": "Two dogs."}]
    with pytest.raises(ValueError, match="'plain' template .*takes one image; this sample has 2"):
        tokenize_conversation(two, image_tokenizer, get_template("plain"), image_token_id=7, has_image=2)


def test_supervised_text_is_exactly_the_replies(image_tokenizer):
    image_token_id = image_tokenizer.convert_tokens_to_ids("<image>")
    result = encode_conversation(WITH_IMAGE, image_tokenizer, get_template("internlm2_chat"),
                                 image_token_id=image_token_id, image_seq_length=N_IMAGE, has_image=True)
    supervised = [i for i, label in zip(result["input_ids"], result["labels"]) if label != IGNORE_INDEX]
    assert image_tokenizer.decode(supervised) == "A dog.<|im_end|>Brown.<|im_end|>"


def test_truncation_counts_the_image_as_one_token_then_expands(image_tokenizer):
    image_token_id = image_tokenizer.convert_tokens_to_ids("<image>")
    template = get_template("internlm2_chat")
    full, _ = tokenize_conversation(WITH_IMAGE, image_tokenizer, template, image_token_id=image_token_id,
                                    max_length=10_000, has_image=True)
    short = encode_conversation(WITH_IMAGE, image_tokenizer, template, image_token_id=image_token_id,
                                image_seq_length=100, max_length=len(full) - 2, has_image=True)
    assert len(short["input_ids"]) == len(full) - 2 + 99
    assert short["input_ids"].count(image_token_id) == 100


def test_truncation_can_leave_no_supervised_token(image_tokenizer):
    _, labels = tokenize_conversation(WITH_IMAGE, image_tokenizer, get_template("internlm2_chat"),
                                      image_token_id=5, max_length=4, has_image=True)
    assert labels == [IGNORE_INDEX] * 4


def test_no_bos_when_the_tokenizer_has_none(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    tokenizer.bos_token = None  # like Qwen: XTuner adds no BOS then
    ids, _ = tokenize_conversation(TEXT_ONLY, tokenizer, get_template("qwen_chat"), image_token_id=5, has_image=False)
    assert ids == tokenizer.encode("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False) + \
        tokenizer.encode("Hi there.<|im_end|>", add_special_tokens=False) + tokenizer.encode("\n", add_special_tokens=False)


def test_system_text_goes_before_the_first_turn_only(image_tokenizer):
    ids, labels = tokenize_conversation(WITH_IMAGE, image_tokenizer, get_template("internlm2_chat"), image_token_id=7,
                                        has_image=True, system="Be brief.")
    text = image_tokenizer.decode(ids, skip_special_tokens=False)
    assert text.startswith("<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")
    assert text.count("system") == 1


def test_bad_conversation_raises(image_tokenizer):
    with pytest.raises(ValueError, match="missing from the first human turn"):  # <image> in the second user turn
        tokenize_conversation(WITH_IMAGE[2:] + WITH_IMAGE[:2], image_tokenizer, get_template("vicuna"), image_token_id=7,
                              has_image=True)


def test_expand_image_tokens_keeps_labels_aligned():
    ids, labels = expand_image_tokens([1, 9, 4, 5], [-100, -100, -100, 5], image_token_id=9, image_seq_length=3)
    assert ids.tolist() == [1, 9, 9, 9, 4, 5]
    assert labels.tolist() == [-100, -100, -100, -100, -100, 5]


REAL_INTERNLM2 = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "real", "internlm2_tokenizer")
AWKWARD_TEXTS = ["", " ", "\n", "nul\x00char",
                 "  two leading spaces", "<image>", "a<image>b", "<|im_start|>user\nHi<|im_end|>\n",
                 "ｆｕｌｌ width……——", "[UNUSED_TOKEN_100] x", "emoji 🙂 ünïcödé", "tab\tand\r\nCRLF", "yes", "yes"]


@pytest.mark.parametrize("which", ["tiny", "real", "real_llama2_slow"])
def test_bulk_encoder_gives_the_tokenizers_ids(image_tokenizer, which):
    """The dataset build tokenizes through BulkEncoder: same ids as `tokenizer.encode`, memo hits included, and
    the same labels from `tokenize_conversation` (so XTuner equivalence carries over). The real InternLM2 tokenizer
    goes through SentencePiece's own encoder; Llama-2's `LlamaTokenizer` adds its prefix space differently, fails
    the probe and keeps the tokenizer."""
    tokenizer = image_tokenizer
    if which != "tiny":
        folder = REAL_INTERNLM2 if which == "real" else os.path.join(REAL_INTERNLM2, "..", "llama2_tokenizer")
        if not os.path.isdir(folder):
            pytest.skip(f"{folder} is absent")
        from transformers import AutoTokenizer, LlamaTokenizer

        tokenizer = (AutoTokenizer if which == "real" else LlamaTokenizer).from_pretrained(folder)
        tokenizer.add_tokens(["<image>"], special_tokens=True)
    bulk = pickle.loads(pickle.dumps(BulkEncoder(tokenizer)))  # as it reaches a tokenizing worker
    if which != "tiny":
        assert (bulk.sentencepiece is not None) == (which == "real")
    for text in AWKWARD_TEXTS * 2:
        assert bulk.encode(text, add_special_tokens=False) == tokenizer.encode(text, add_special_tokens=False), text
    assert bulk.encode("hi", add_special_tokens=True) == tokenizer.encode("hi", add_special_tokens=True)
    assert "yes" in bulk.memo and bulk.bos_token_id == tokenizer.bos_token_id
    template = get_template("internlm2_chat")
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    for conversation, has_image in ((WITH_IMAGE, True), (TEXT_ONLY, False)):
        assert tokenize_conversation(conversation, bulk, template, image_token_id=image_token_id, has_image=has_image) \
            == tokenize_conversation(conversation, tokenizer, template, image_token_id=image_token_id, has_image=has_image)
