"""Fixtures for the data tests: a tokenizer with `<image>`, a small stand-in processor, image files."""

import pytest
import torch
from PIL import Image


class TinyProcessor:
    """Stand-in with the LLaVA-InternLM2 processor's data-facing surface (tokenizer, image token,
    `preprocess_images`), on a 56-px CLIP image processor."""

    image_token = "<image>"

    def __init__(self, tokenizer, image_seq_length: int = 4):
        from transformers import CLIPImageProcessor

        self.tokenizer = tokenizer
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.image_seq_length = image_seq_length
        self.image_processor = CLIPImageProcessor(size={"shortest_edge": 56}, crop_size=56)

    def preprocess_images(self, images, pad_to_square=None) -> torch.Tensor:
        if pad_to_square:
            mean = tuple(int(x * 255) for x in self.image_processor.image_mean)
            squares = []
            for image in images:
                side = max(image.size)
                square = Image.new("RGB", (side, side), mean)
                square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
                squares.append(square)
            images = squares
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]


@pytest.fixture(scope="session")
def image_tokenizer(tiny_tokenizer_dir):
    """The tiny InternLM2 tokenizer with `<image>` added as a special token (its own copy)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    return tokenizer


@pytest.fixture(scope="session")
def tiny_processor(image_tokenizer):
    return TinyProcessor(image_tokenizer)


def write_image(path, size=(40, 30), color=(200, 30, 30), mode="RGB", fmt=None):
    image = Image.new("RGB", size, color)
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path, format=fmt)
    return path
