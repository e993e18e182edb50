"""Fixtures for the data tests: a tokenizer with `<image>` and a small LLaVA-InternLM2 processor."""

import pytest


@pytest.fixture(scope="session")
def image_tokenizer(tiny_tokenizer_dir):
    """The tiny InternLM2 tokenizer with `<image>` added as a special token (its own copy)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    return tokenizer


@pytest.fixture(scope="session")
def tiny_processor(image_tokenizer):
    """The real LLaVA-InternLM2 processor on a 56-px CLIP image processor, 4 image tokens per image."""
    from transformers import CLIPImageProcessor

    from llava_hf.models.llava_internlm2.processing_llava_internlm2 import LlavaInternLM2Processor

    image_processor = CLIPImageProcessor(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    return LlavaInternLM2Processor(image_processor, image_tokenizer, image_seq_length=4, pad_to_square=False)
