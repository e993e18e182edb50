"""A tiny saved LLaVA-InternLM2 (configured like internlm2-chat: answers end at `<|im_end|>`) and two images."""

import pytest
import torch
from PIL import Image

from llava_hf.testing import build_tiny_llava

GREEDY = {"max_new_tokens": 10, "do_sample": False}


@pytest.fixture(scope="session")
def tiny_llava_parts(tmp_path_factory, tiny_tokenizer_dir):
    """(model, processor, parts folder with llm/ and clip/) — 4 image tokens per image, 2 layers each."""
    parts = tmp_path_factory.mktemp("tiny_llava_parts")
    model, processor = build_tiny_llava(save_dir=str(parts), tokenizer_dir=tiny_tokenizer_dir, image_size=28,
                                        patch_size=14, text_hidden_size=64, vision_hidden_size=32)
    end_of_turn = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.eos_token_id = [processor.tokenizer.eos_token_id, end_of_turn]
    return model.eval(), processor, parts


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory, tiny_llava_parts):
    model, processor, _ = tiny_llava_parts
    folder = tmp_path_factory.mktemp("tiny_llava")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_llava(tiny_llava_dir):
    """The saved model loaded back the way users load it (fresh objects: tests may not mutate shared state)."""
    from llava_hf.inference import load_model_and_processor

    return load_model_and_processor(tiny_llava_dir)


@pytest.fixture(scope="session")
def image_files(tmp_path_factory):
    """A red landscape PNG and a blue square JPEG."""
    folder = tmp_path_factory.mktemp("images")
    red, blue = folder / "red.png", folder / "blue.jpg"
    Image.new("RGB", (40, 30), (220, 20, 20)).save(red)
    Image.new("RGB", (32, 32), (20, 20, 220)).save(blue)
    return str(red), str(blue)


@pytest.fixture(scope="session")
def full_history_answer():
    return _full_history_answer


def _full_history_answer(model, processor, turns, generation=GREEDY) -> str:
    """Reference: render the whole conversation and `generate` from scratch (no cache), as XTuner does.

    `turns` is a list of (text, [PIL images], answer or None for the turn to answer).
    """
    messages, images = [], []
    for text, turn_images, answer in turns:
        images.extend(turn_images)
        content = [{"type": "image"} for _ in turn_images] + [{"type": "text", "text": text}]
        messages.append({"role": "user", "content": content})
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(images=images or None, text=prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        output = model.generate(**inputs, **generation)
    return processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
