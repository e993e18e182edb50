"""After training, a model on another encoder is used like a CLIP one: a SigLIP model with the 2x2 pixel-shuffle
projector (which only our code runs, stock LLaVA cannot) answers in `llava-hf chat` exactly what `generate` gives,
and `llava-hf mmbench` scores it."""

import io
import json
import sys

import pytest
from PIL import Image

from llava_hf.cli.main import main
from llava_hf.eval.mmbench_data import circular_rows
from llava_hf.inference import load_model_and_processor
from llava_hf.testing import build_tiny_llava
from tests.eval.mmbench_fixtures import question_frame, write_tsv


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory, tiny_tokenizer_dir):
    """A saved tiny SigLIP LLaVA: 56px images, 4x4 patches, pixel-shuffled to 4 image tokens, chat stop tokens."""
    root = tmp_path_factory.mktemp("siglip_llava")
    model, processor = build_tiny_llava(save_dir=str(root / "parts"), tokenizer_dir=tiny_tokenizer_dir,
                                        image_size=56, text_hidden_size=64, vision_hidden_size=32,
                                        vision_model_type="siglip", projector_downsample="pixel_shuffle")
    assert model.config.image_seq_length == 4
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    return str(root / "model")


def test_chat_answers_what_generate_gives(siglip_dir, tmp_path, monkeypatch, capsys, full_history_answer):
    image_path = tmp_path / "red.png"
    Image.new("RGB", (60, 40), (220, 20, 20)).save(image_path)
    model, processor = load_model_and_processor(siglip_dir)
    expected = full_history_answer(model, processor, [("what color is it", [Image.open(image_path).convert("RGB")],
                                                       None)])
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code = main(["chat", siglip_dir, "--image", str(image_path), "--prompt", "what color is it", "--temperature", "0",
                 "--max_new_tokens", "10"])
    assert code == 0 and capsys.readouterr().out == expected + "\n"


def test_mmbench_scores_it(siglip_dir, tmp_path):
    tsv = write_tsv(tmp_path / "MMBench_DEV_EN.tsv", circular_rows(question_frame()))
    assert main(["mmbench", siglip_dir, "--data_path", tsv, "--work_dir", str(tmp_path / "run"),
                 "--max_new_tokens", "2", "--batch_size", "8"]) == 0
    result = json.loads((tmp_path / "run" / "mmbench_result.json").read_text())
    assert (result["n_questions"], result["n_rows"]) == (4, 13)
