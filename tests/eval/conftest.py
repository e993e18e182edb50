"""Fixtures for the eval tests: hand-made dev/test TSVs and a saved tiny LLaVA-InternLM2 folder."""

import pytest

from llava_hf.eval.mmbench_data import circular_rows
from tests.eval.mmbench_fixtures import question_frame, write_tsv


@pytest.fixture
def dev_tsv(tmp_path):
    """13 rows: a 4-option question with hint, a 3- and a 2-option question without, a Chinese 4-option one."""
    return write_tsv(tmp_path / "MMBench_DEV_EN.tsv", circular_rows(question_frame()))


@pytest.fixture
def test_tsv(tmp_path):
    return write_tsv(tmp_path / "MMBench_TEST_EN.tsv", circular_rows(question_frame(with_answer=False)))


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory):
    """A saved tiny random LLaVA-InternLM2 (model + processor) folder, as `load_model_and_processor` reads it."""
    from llava_hf.testing import build_tiny_llava

    model, processor = build_tiny_llava(image_size=28, text_hidden_size=64, vision_hidden_size=32)  # 4 image tokens
    path = str(tmp_path_factory.mktemp("tiny_llava"))
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
