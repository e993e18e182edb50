"""Session fixtures: a tiny InternLM2-layout tokenizer, built once, nothing downloaded."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import llava_hf  # noqa: E402,F401  (registers the Auto classes)
from llava_hf.testing.tiny_tokenizer import build_tiny_internlm2_tokenizer_files  # noqa: E402


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory):
    """Folder with `tokenizer.model` + `tokenizer_config.json` in the published InternLM2 layout."""
    return build_tiny_internlm2_tokenizer_files(str(tmp_path_factory.mktemp("tiny_tokenizer")))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
