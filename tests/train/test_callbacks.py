"""EvaluateChatCallback answers like a plain greedy generate, restores training mode, and writes its log."""

import types

import torch
from PIL import Image

from llava_hf.testing import build_tiny_llava
from llava_hf.train.callbacks import EvaluateChatCallback
from tests.train.conftest import MICRO


def test_answers_equal_greedy_generate_and_are_logged(tmp_path):
    model, processor = build_tiny_llava(**MICRO)
    image = Image.new("RGB", (30, 20), (220, 40, 40))
    callback = EvaluateChatCallback(processor, ["What color?"], image, every_n_steps=2, max_new_tokens=5)
    model.train()
    model.config.use_cache = False

    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color?"}]}],
        add_generation_prompt=True, tokenize=False)
    inputs = processor(images=[image], text=[text], return_tensors="pt")
    with torch.no_grad():
        expected = model.eval().generate(**inputs, max_new_tokens=5, do_sample=False)
    expected = processor.tokenizer.decode(expected[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    model.train()

    args = types.SimpleNamespace(output_dir=str(tmp_path))
    state = types.SimpleNamespace(global_step=4, is_world_process_zero=True)
    callback.on_step_end(args, state, None, model=model)
    assert model.training and model.config.use_cache is False, "training state must be restored"
    assert (tmp_path / "eval_chat" / "step_4.txt").read_text() == f"[What color?] -> {expected}\n"
    state.global_step = 5
    callback.on_step_end(args, state, None, model=model)
    assert not (tmp_path / "eval_chat" / "step_5.txt").exists()
