"""A model trained on multi-image data is the same kind of model: `llava-hf merge` and `export-hf` work unchanged,
and the stock export answers a two-image prompt with our logits and our greedy output where llava_hf is absent."""

import pytest
import torch
from PIL import Image

from llava_hf.cli.main import main as cli
from llava_hf.inference import load_model_and_processor
from tests.export.shipping_helpers import GREEDY, TINY, train_argv
from tests.multi_image_data import write_mixed_data

# Loads a stock export with plain transformers and runs a prompt with two images (image paths from argv).
TWO_IMAGES = """
import sys

import torch
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration

folder, first, second, question, out = sys.argv[1:6]
model = LlavaForConditionalGeneration.from_pretrained(folder).eval()
processor = AutoProcessor.from_pretrained(folder)
messages = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": question}]}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
inputs = processor(images=[Image.open(first), Image.open(second)], text=prompt, add_special_tokens=False,
                   return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits[0]
    generated = model.generate(**inputs, max_new_tokens=20, min_new_tokens=20, do_sample=False)
torch.save({"input_ids": inputs["input_ids"], "pixel_values": inputs["pixel_values"], "logits": logits,
            "generated": generated}, out)
"""
QUESTION = "Which one is red?"


@pytest.mark.slow
def test_a_lora_run_on_multi_image_data_merges_and_exports_to_stock_llava(tiny_parts, tmp_path, run_without_llava_hf):
    from llava_hf.train import parse_args, train

    parts = tiny_parts[0]
    data_path, image_folder = write_mixed_data(tmp_path / "data")
    # stage 1 with a chat template: `plain` (LLaVA's captioning) takes one image per sample
    train(*parse_args(train_argv(tmp_path / "stage1", data_path, image_folder, stage="pretrain",
                                 prompt_template="internlm2_chat", llm_name_or_path=parts / "llm",
                                 vision_tower_name_or_path=parts / "clip")))
    train(*parse_args(train_argv(tmp_path / "lora", data_path, image_folder, stage="finetune",
                                 model_name_or_path=tmp_path / "stage1", tune_llm="lora", lora_r=4, lora_alpha=8,
                                 max_steps=3)))
    assert cli(["merge", str(tmp_path / "lora"), str(tmp_path / "merged"), "--torch_dtype", "float32"]) == 0
    assert cli(["export-hf", str(tmp_path / "merged"), str(tmp_path / "stock")]) == 0

    model, processor = load_model_and_processor(str(tmp_path / "merged"), torch_dtype="float32")
    images = [Image.open(f"{image_folder}/{name}.png").convert("RGB") for name in ("0", "2")]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": QUESTION}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(images=images, text=prompt, add_special_tokens=False, return_tensors="pt")
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == 2 * TINY_IMAGE_TOKENS
    with torch.no_grad():
        logits = model(**inputs).logits[0]
        generated = model.generate(**inputs, **GREEDY)

    run_without_llava_hf(TWO_IMAGES, tmp_path / "stock", f"{image_folder}/0.png", f"{image_folder}/2.png", QUESTION,
                         tmp_path / "stock.pt")
    stock = torch.load(tmp_path / "stock.pt")
    assert torch.equal(stock["input_ids"], inputs["input_ids"])
    assert (stock["pixel_values"] - inputs["pixel_values"]).abs().max().item() < 1e-5
    difference = (stock["logits"] - logits).abs().max().item()
    print(f"two-image prompt, stock export vs ours: max abs logit difference {difference:.2e}")
    assert difference < 1e-4
    assert torch.equal(stock["generated"], generated)


TINY_IMAGE_TOKENS = (TINY["image_size"] // TINY["patch_size"]) ** 2
