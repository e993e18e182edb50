"""LlavaInternLM2Processor: square padding, image-token expansion, validation, chat template, save/load."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AddedToken, AutoProcessor, AutoTokenizer, CLIPImageProcessor

from llava_hf.models.llava_internlm2 import LlavaInternLM2Processor, expand_to_square

IMAGE_SIZE = 28
SEQ = 4


@pytest.fixture(scope="module")
def processor(tiny_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    tokenizer.add_tokens([AddedToken("<image>", special=True, normalized=False)], special_tokens=True)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    return LlavaInternLM2Processor(image_processor, tokenizer, image_seq_length=SEQ)


def _image(width, height, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_expand_to_square_centres_the_image_on_the_background():
    wide = _image(40, 20)
    square = expand_to_square(wide, (10, 20, 30))
    assert square.size == (40, 40)
    assert square.getpixel((0, 0)) == (10, 20, 30) and square.getpixel((39, 39)) == (10, 20, 30)
    assert np.array_equal(np.asarray(square)[10:30], np.asarray(wide))  # pasted at (40 - 20) // 2
    tall = expand_to_square(_image(21, 40), (0, 0, 0))
    assert tall.size == (40, 40) and np.array_equal(np.asarray(tall)[:, 9:30], np.asarray(_image(21, 40)))
    already = _image(16, 16)
    assert np.array_equal(np.asarray(expand_to_square(already, (0, 0, 0))), np.asarray(already))
    assert expand_to_square(_image(8, 4).convert("L"), (1, 2, 3)).mode == "RGB"


def test_preprocess_images_pads_with_the_image_mean(processor):
    wide = _image(60, 20)
    padded = processor.preprocess_images([wide])
    assert padded.shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE)
    # the padding colour normalises to ~0 (the image mean), the centre band is the picture
    assert padded[0, :, 0, :].abs().max() < 0.02 and padded[0, :, IMAGE_SIZE // 2, :].abs().max() > 0.1
    manual = processor.image_processor([expand_to_square(wide, processor.background_color)], return_tensors="pt")
    assert torch.equal(padded, manual["pixel_values"])
    unpadded = processor.preprocess_images([wide], pad_to_square=False)
    assert torch.equal(unpadded, processor.image_processor([wide], return_tensors="pt")["pixel_values"])
    with pytest.raises(TypeError, match="image 1: pad_to_square needs a PIL image"):
        processor.preprocess_images([wide, np.zeros((4, 4, 3))])


def test_call_expands_image_tokens_and_returns_only_present_images(processor):
    texts = ["<image>\nwhat colour?", "no image here"]
    inputs = processor(images=[_image(30, 30)], text=texts, padding=True)
    assert set(inputs) == {"input_ids", "attention_mask", "pixel_values"}
    assert inputs["pixel_values"].shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert ((inputs["input_ids"] == processor.image_token_id).sum(1) == torch.tensor([SEQ, 0])).all()
    per_sample = processor(images=[[_image(30, 30)], []], text=texts, padding=True)
    assert torch.equal(per_sample["input_ids"], inputs["input_ids"])


def test_call_rejects_mismatched_or_truncated_image_tokens(processor):
    with pytest.raises(ValueError, match="1 '<image>' placeholders but 2 images"):
        processor(images=[_image(8, 8), _image(8, 8)], text="<image> hi")
    with pytest.raises(ValueError, match="sample 1: the text has 0 '<image>' placeholders but 1 images"):
        processor(images=[[_image(8, 8)], [_image(8, 8)]], text=["<image> a", "b"])
    with pytest.raises(ValueError, match=f"sample 0: expected {SEQ} image tokens after tokenization, found [0-3] "):
        processor(images=[_image(8, 8)], text="hello <image>", truncation=True, max_length=4)


def test_chat_template_renders_images_first_in_the_internlm2_format(processor):
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "What is it?"}, {"type": "image"}]},
        {"role": "assistant", "content": "A cat."},
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == (
        "<s><|im_start|>user\n<image>\nWhat is it?<|im_end|>\n<|im_start|>assistant\nA cat.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_save_and_auto_reload_give_identical_outputs(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(reloaded) is LlavaInternLM2Processor
    assert (reloaded.image_token, reloaded.image_token_id, reloaded.image_seq_length, reloaded.pad_to_square) == (
        processor.image_token, processor.image_token_id, SEQ, True
    )
    assert reloaded.chat_template == processor.chat_template
    images, texts = [_image(50, 30), _image(20, 30, seed=1)], ["<image> one <image>", "two"]
    expected = processor(images=images, text=texts, padding=True)
    actual = reloaded(images=images, text=texts, padding=True)
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_a_tokenizer_without_the_image_token_is_rejected(tiny_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    with pytest.raises(ValueError, match="The tokenizer has no '<image>' token"):
        LlavaInternLM2Processor(CLIPImageProcessor(), tokenizer)
