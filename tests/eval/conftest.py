"""Hand-made MMBench TSVs for the eval tests: a few questions, circularised like VLMEvalKit, tiny JPEGs."""

import pandas as pd
import pytest
from PIL import Image

from llava_hf.eval.mmbench_data import circular_rows, encode_image

NAN = float("nan")
# g, question, hint, options, answer, category, l2-category
QUESTIONS = [
    (1, "What is the main colour?", "A picture of a park.", ["red", "green", "blue", "yellow"], "B",
     "image_scene", "coarse_perception"),
    (2, "Which word is written?", NAN, ["cat", "dog", "sun", NAN], "C", "ocr",
     "finegrained_perception (instance-level)"),
    (3, "Who is shown?", NAN, ["a singer", "a painter", NAN, NAN], "A", "celebrity_recognition",
     "finegrained_perception (instance-level)"),
    (4, "图中是什么季节？", NAN, ["春天", "夏天", "秋天", "冬天"], "D", "image_scene", "coarse_perception"),
]


def question_frame(questions=QUESTIONS, with_answer=True):
    rows = []
    for g, question, hint, options, answer, category, l2 in questions:
        colour = (40 * g % 256, 90, 160)
        row = {"index": g, "question": question, "hint": hint, "A": options[0], "B": options[1],
               "C": options[2], "D": options[3], "answer": answer, "category": category,
               "image": encode_image(Image.new("RGB", (8 + g, 6), colour)), "source": "handmade",
               "l2-category": l2, "split": "dev"}
        if not with_answer:
            del row["answer"]
        rows.append(row)
    return pd.DataFrame(rows)


def write_tsv(path, frame):
    frame.to_csv(path, sep="\t", index=False)
    return str(path)


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
    from llava_hf.models.llava_internlm2.builder import build_tiny_llava

    model, processor = build_tiny_llava(image_size=28, text_hidden_size=64, vision_hidden_size=32)  # 4 image tokens
    path = str(tmp_path_factory.mktemp("tiny_llava"))
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
