"""Real third-party files (tokenizers, LLaVA rows, MMBench predictions) from `../shared/real`, next to the repo.

They are never copied into the repository; on a clone without that folder every test here skips. The large
tokenizers load once per session, each with `<image>` added as a special token (a new id after the
vocabulary, so no existing id changes).
"""

import json
from pathlib import Path

import pytest

REAL_DIR = Path(__file__).parents[2].parent / "shared" / "real"


def real_path(*parts: str) -> Path:
    """The path of a real file, or skip the test when it is absent (a user's clone has no ../shared)."""
    path = REAL_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real third-party file {path} is not available")
    return path


def with_image_token(tokenizer):
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    return tokenizer


@pytest.fixture(scope="session")
def internlm2_tokenizer():
    """The published InternLM2 tokenizer (92544 pieces, chat tokens renamed by its tokenizer_config.json)."""
    from transformers import AutoTokenizer

    return with_image_token(AutoTokenizer.from_pretrained(real_path("internlm2_tokenizer")))


@pytest.fixture(scope="session")
def tiny_image_tokenizer(tiny_tokenizer_dir):
    """The tiny InternLM2-layout test tokenizer, with `<image>` as well: what the real one is compared to."""
    from transformers import AutoTokenizer

    return with_image_token(AutoTokenizer.from_pretrained(tiny_tokenizer_dir))


@pytest.fixture(scope="session")
def internlm2_sp():
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(real_path("internlm2_tokenizer", "tokenizer.model")))


@pytest.fixture(scope="session")
def llama2_tokenizer():
    """Llama-2 / Vicuna's tokenizer, loaded as the class Vicuna's tokenizer_config.json names."""
    from transformers import LlamaTokenizer

    return with_image_token(LlamaTokenizer.from_pretrained(real_path("llama2_tokenizer")))


@pytest.fixture(scope="session")
def llama2_sp():
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(real_path("llama2_tokenizer", "tokenizer.model")))


@pytest.fixture(scope="session")
def llava_instruct_rows():
    return json.loads(real_path("llava_data", "llava_instruct_100.json").read_text())


@pytest.fixture(scope="session")
def scienceqa_rows():
    return json.loads(real_path("llava_data", "scienceqa_llava_test_CQM-A.json").read_text())
