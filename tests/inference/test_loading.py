"""load_model_and_processor: every folder layout gives the model that was saved; mistakes are one-line errors."""

import json
import os

import pytest
import torch
from peft import LoraConfig, get_peft_model
from PIL import Image

from llava_hf.inference import UserInputError, load_model_and_processor
from tests.xtuner_layout import VIT_LINEARS, randomize_, write_xtuner_llava_folder


def logits(model, processor):
    """Next-token logits for one fixed image + question: any weight that did not load changes them."""
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what color"}]}],
        add_generation_prompt=True, tokenize=False)
    inputs = processor(images=[Image.new("RGB", (30, 20), (200, 30, 30))], text=prompt, return_tensors="pt",
                       add_special_tokens=False)
    with torch.no_grad():
        return model(**inputs).logits[0, -1]


def test_full_model_folder_loads_through_the_auto_classes(tiny_llava_parts, tiny_llava_dir):
    model, processor, _ = tiny_llava_parts
    loaded, loaded_processor = load_model_and_processor(tiny_llava_dir)
    assert type(loaded).__name__ == "LlavaInternLM2ForConditionalGeneration"
    assert not loaded.training
    assert loaded_processor.image_seq_length == processor.image_seq_length
    torch.testing.assert_close(logits(loaded, loaded_processor), logits(model, processor))


def test_training_output_with_an_adapter_is_applied_on_the_fly(tiny_llava_dir, tmp_path):
    base, processor = load_model_and_processor(tiny_llava_dir)
    base_logits = logits(base, processor)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["wqkv", "wo", *VIT_LINEARS],
                        modules_to_save=["multi_modal_projector"])
    trained = get_peft_model(base, config)
    randomize_([p for n, p in trained.named_parameters() if "lora_B" in n or "modules_to_save" in n], seed=1)
    trained.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["base_model_name_or_path"] == tiny_llava_dir
    expected = logits(trained, processor)

    loaded, _ = load_model_and_processor(str(tmp_path))
    torch.testing.assert_close(logits(loaded, processor), expected)
    assert not torch.allclose(expected, base_logits)  # the adapter really changes the model


def test_an_adapter_folder_moved_to_another_directory_still_loads(tiny_llava_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(os.path.dirname(tiny_llava_dir))
    base, processor = load_model_and_processor(os.path.basename(tiny_llava_dir))  # a relative path, as typed
    trained = get_peft_model(base, LoraConfig(r=4, target_modules=["wqkv"]))
    randomize_([p for n, p in trained.named_parameters() if "lora_B" in n], seed=4)
    trained.save_pretrained(tmp_path / "run")
    expected = logits(trained, processor)
    recorded = json.loads((tmp_path / "run" / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert recorded == tiny_llava_dir  # absolute, whatever the user typed
    os.rename(tmp_path / "run", tmp_path / "moved")
    monkeypatch.chdir(tmp_path)
    loaded, _ = load_model_and_processor("moved")
    torch.testing.assert_close(logits(loaded, processor), expected)


def test_an_adapter_whose_base_is_gone_names_the_field_and_the_path(tiny_llava_dir, tmp_path):
    base, _ = load_model_and_processor(tiny_llava_dir)
    get_peft_model(base, LoraConfig(r=4, target_modules=["wqkv"])).save_pretrained(tmp_path / "run")
    config = json.loads((tmp_path / "run" / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "deleted_stage1")
    (tmp_path / "run" / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(UserInputError, match=r"run: adapter_config.json base_model_name_or_path = .*deleted_stage1 "
                                             r"does not exist"):
        load_model_and_processor(str(tmp_path / "run"))


def test_xtuner_triple_loads_projector_and_both_adapters(tiny_llava_parts, tmp_path):
    model, processor, parts = tiny_llava_parts
    hidden_sizes = (model.config.vision_config.hidden_size, model.config.text_config.hidden_size)
    projector, llm, vit = write_xtuner_llava_folder(tmp_path / "llava", parts, hidden_sizes)

    loaded, loaded_processor = load_model_and_processor(str(parts / "llm"), visual_encoder=str(parts / "clip"),
                                                        llava=str(tmp_path / "llava"))
    torch.testing.assert_close(loaded.multi_modal_projector.linear_1.weight, projector["model.0.weight"])
    torch.testing.assert_close(loaded.multi_modal_projector.linear_2.bias, projector["model.2.bias"])
    lora_b = dict(loaded.named_parameters())
    wqkv_key = next(k for k in lora_b if k.startswith("language_model.") and "wqkv.lora_B" in k)
    assert lora_b[wqkv_key].abs().sum() > 0  # the LLM adapter's weights, not PEFT's zero init
    assert any("vision_tower." in k and "lora_B" in k and v.abs().sum() > 0 for k, v in lora_b.items())
    # The text path of the loaded model is exactly XTuner's LLM + LoRA (image tokens aside).
    ids = loaded_processor.tokenizer("what color", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ours = loaded(input_ids=ids).logits[0, -1, : llm.config.vocab_size]
        theirs = llm(input_ids=ids).logits[0, -1]
    torch.testing.assert_close(ours, theirs)


def test_a_bare_llm_folder_is_not_a_llava_model(tiny_llava_parts):
    _, _, parts = tiny_llava_parts
    with pytest.raises(UserInputError, match=r"llm is not a LLaVA model folder.*'internlm2'.*--visual_encoder"):
        load_model_and_processor(str(parts / "llm"))


def test_missing_folders_are_named(tmp_path, tiny_llava_parts):
    _, _, parts = tiny_llava_parts
    with pytest.raises(UserInputError, match="nowhere: no such folder$"):
        load_model_and_processor(str(tmp_path / "nowhere"))
    with pytest.raises(UserInputError, match="has no projector/"):
        load_model_and_processor(str(parts / "llm"), visual_encoder=str(parts / "clip"), llava=str(tmp_path))
    with pytest.raises(UserInputError, match="it has no config.json"):
        load_model_and_processor(str(tmp_path))


def test_quantization_is_refused_before_loading_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserInputError, match="--bits 4 needs a CUDA GPU"):
        load_model_and_processor("/folder/that/is/never/read", bits=4)
    with pytest.raises(UserInputError, match="--bits must be 4 or 8"):
        load_model_and_processor("/folder/that/is/never/read", bits=3)


def test_unknown_dtype_is_a_user_error():
    with pytest.raises(UserInputError, match="unknown torch dtype 'float13'"):
        load_model_and_processor("/folder/that/is/never/read", torch_dtype="float13")
