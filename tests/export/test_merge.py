"""`llava-hf merge`: every folder training writes becomes one complete folder that equals the model it came from
and loads where llava_hf is not installed; the seed's plain LLM / CLIP adapter forms; one-line errors."""

import json
import re
import os

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, CLIPVisionModel, SiglipVisionModel

from llava_hf.cli.main import main as cli
from llava_hf.inference import load_model_and_processor
from llava_hf.models.llava_internlm2 import LlavaInternLM2ForConditionalGeneration
from llava_hf.testing import build_tiny_llava
from llava_hf.models.llava_internlm2.checkpoint_io import stored_tensor_names
from tests.export.shipping_helpers import GREEDY, TOKENIZER_TEXT, chat_inputs, logits_of, run_folder

VIT_LINEARS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


@pytest.fixture(scope="module")
def adapter_model(trained):
    """The LoRA run as `llava-hf chat` loads it: the adapter applied on the fly, not merged."""
    return load_model_and_processor(str(trained / "lora"), torch_dtype="float32")


@pytest.mark.slow
def test_merged_lora_equals_the_adapter_model_and_loads_without_llava_hf(
        trained, adapter_model, image, tmp_path, run_without_llava_hf):
    model, processor = adapter_model
    inputs = chat_inputs(processor, image)
    expected = logits_of(model, inputs)
    stage1, _ = load_model_and_processor(str(trained / "stage1"))
    assert (logits_of(stage1, inputs) - expected).abs().max() > 1e-3  # the LoRA run really changed the model
    assert cli(["merge", str(trained / "lora"), str(tmp_path / "merged"), "--torch_dtype", "float32"]) == 0
    merged_dir = tmp_path / "merged"

    merged = LlavaInternLM2ForConditionalGeneration.from_pretrained(merged_dir)
    difference = (logits_of(merged, inputs) - expected).abs().max().item()
    print(f"merged vs adapter model: max abs logit difference {difference:.2e}")
    assert difference < 1e-4
    assert {name.split(".")[0] for name in stored_tensor_names(str(merged_dir))} == {
        "language_model", "vision_tower", "multi_modal_projector"}  # complete: nothing rebuilt from sources
    config = json.loads((merged_dir / "config.json").read_text())
    assert config.get("use_cache", True) is not False  # training runs with use_cache=False; users generate
    generation = json.loads((merged_dir / "generation_config.json").read_text())
    tokenizer = processor.tokenizer
    assert generation["eos_token_id"] == [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert (merged_dir / "README.md").read_text().startswith("---\n")

    remote = run_folder(run_without_llava_hf, merged_dir, image, tmp_path)
    assert all(name.startswith(("transformers_modules.", "transformers.")) for name in remote["classes"])
    assert remote["classes"][1].endswith(".LlavaInternLM2Processor")
    assert torch.equal(remote["input_ids"], inputs["input_ids"])
    assert torch.equal(remote["pixel_values"], inputs["pixel_values"])
    assert (remote["logits"] - expected).abs().max().item() < 1e-4
    assert remote["tokenizer_ids"] == tokenizer(TOKENIZER_TEXT).input_ids and remote["padding_side"] == "left"
    with torch.no_grad():
        assert torch.equal(remote["generated"], merged.generate(**inputs, **GREEDY))


def test_checkpoint_and_stage1_folders_become_complete_folders(trained, adapter_model, image, tmp_path):
    model, processor = adapter_model
    inputs = chat_inputs(processor, image)
    assert cli(["merge", str(trained / "lora" / "checkpoint-2"), str(tmp_path / "from_checkpoint")]) == 0
    from_checkpoint = LlavaInternLM2ForConditionalGeneration.from_pretrained(tmp_path / "from_checkpoint")
    # max_steps=2: the checkpoint holds the final weights
    assert (logits_of(from_checkpoint, inputs) - logits_of(model, inputs)).abs().max().item() < 1e-4

    stage1, _ = load_model_and_processor(str(trained / "stage1"))  # rebuilt from its recorded sources
    assert stored_tensor_names(str(trained / "stage1")) == {k for k in stage1.state_dict() if "projector" in k}
    assert cli(["merge", str(trained / "stage1"), str(tmp_path / "stage1_full")]) == 0
    names = stored_tensor_names(str(tmp_path / "stage1_full"))
    assert names == set(stage1.state_dict())
    full = LlavaInternLM2ForConditionalGeneration.from_pretrained(tmp_path / "stage1_full")
    assert torch.equal(logits_of(full, inputs), logits_of(stage1, inputs))


def test_merged_output_is_written_atomically_and_never_overwritten_silently(trained, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert cli(["merge", str(trained / "stage1"), str(out)]) == 2
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and "already exists and is not empty" in message and "--force" in message
    assert os.listdir(out) == ["keep.txt"]
    assert cli(["merge", str(trained / "stage1"), str(out), "--force", "--max_shard_size", "200KB"]) == 0
    assert "keep.txt" not in os.listdir(out) and (out / "model.safetensors.index.json").is_file()  # sharded
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".out.")]  # no staging folder left


def test_bad_sources_are_one_line_errors(trained, tiny_parts, tmp_path, capsys):
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("not a model")
    parts = tiny_parts[0]
    cases = [
        ([str(stray), str(tmp_path / "a")], r"stray is not a folder llava-hf training writes \(no config.json"),
        ([str(parts / "llm"), str(tmp_path / "b")], r"an LLM \('internlm2'\): to merge an LLM adapter use"),
        ([str(tmp_path / "nowhere"), str(tmp_path / "c")], r"nowhere: no such folder"),
        ([str(parts / "clip"), str(trained / "lora"), str(tmp_path / "d")], r"add --is_clip"),
    ]
    for argv, pattern in cases:
        assert cli(["merge", *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("llava-hf merge: error: "), err
        assert re.search(pattern, err), err


def test_an_adapter_for_another_base_is_named_before_weights_load(trained, tiny_tokenizer_dir, tmp_path, capsys):
    other, _ = build_tiny_llava(tokenizer_dir=tiny_tokenizer_dir, image_size=28, text_hidden_size=32,
                                vision_hidden_size=32)
    peft_model = get_peft_model(other, LoraConfig(r=4, target_modules=["wqkv", "wo"]))
    peft_model.save_pretrained(tmp_path / "adapter")
    config_path = tmp_path / "adapter" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = str(trained / "stage1")  # the wrong base
    config_path.write_text(json.dumps(config))
    assert cli(["merge", str(tmp_path / "adapter"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert re.search(r"adapter_model.safetensors: tensor `base_model.model.language_model.model.layers.0.attention."
                     r"w(qkv|o).lora_A.weight` has shape \(4, 32\), but the base model's `.*` has in_features=64", err)
    assert "the adapter was trained on another base model" in err and not (tmp_path / "out").exists()


def test_plain_llm_and_clip_adapters_merge_as_xtuner_convert_merge(tiny_parts, tmp_path):
    parts = tiny_parts[0]
    llm = get_peft_model(AutoModelForCausalLM.from_pretrained(parts / "llm"),
                         LoraConfig(r=4, lora_alpha=8, target_modules=["wqkv", "wo", "w1", "w2", "w3", "output"]))
    vit = get_peft_model(CLIPVisionModel.from_pretrained(parts / "clip"), LoraConfig(r=4, target_modules=VIT_LINEARS))
    for peft_model, seed in ((llm, 1), (vit, 2)):
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, parameter in peft_model.named_parameters():
                if "lora_B" in name:
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
        peft_model.save_pretrained(tmp_path / f"adapter_{seed}")
    assert cli(["merge", str(parts / "llm"), str(tmp_path / "adapter_1"), str(tmp_path / "llm")]) == 0
    assert cli(["merge", str(parts / "clip"), str(tmp_path / "adapter_2"), str(tmp_path / "clip"), "--is_clip"]) == 0

    ids = torch.tensor([[1, 5, 6, 7, 8]])
    pixels = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    merged_llm = AutoModelForCausalLM.from_pretrained(tmp_path / "llm")
    merged_vit = CLIPVisionModel.from_pretrained(tmp_path / "clip")
    with torch.no_grad():
        torch.testing.assert_close(merged_llm(ids).logits, llm.eval()(ids).logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(merged_vit(pixels).last_hidden_state, vit.eval()(pixels).last_hidden_state,
                                   atol=1e-5, rtol=0)
    assert (tmp_path / "llm" / "tokenizer.json").is_file()
    assert (tmp_path / "clip" / "preprocessor_config.json").is_file()
    assert not any("lora" in key for key in load_file(tmp_path / "llm" / "model.safetensors"))


def test_a_plain_siglip_adapter_merges_into_the_vision_side_of_a_two_tower_folder(tiny_tokenizer_dir, tmp_path):
    """`merge VISION_DIR ADAPTER OUT --is_clip` takes any vision encoder: here SigLIP as published (text tower and
    pooling head in the folder). OUT is the vision model, head included, with the LoRA merged, and its image
    processor."""
    build_tiny_llava(save_dir=str(tmp_path / "parts"), tokenizer_dir=tiny_tokenizer_dir, image_size=28,
                     text_hidden_size=64, vision_hidden_size=32, vision_model_type="siglip")
    siglip = tmp_path / "parts" / "siglip"
    vit = get_peft_model(SiglipVisionModel.from_pretrained(siglip),
                         LoraConfig(r=4, target_modules=r".*encoder\.layers\.\d+\..*(q_proj|v_proj|fc1|fc2)"))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, parameter in vit.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    vit.save_pretrained(tmp_path / "adapter")
    assert cli(["merge", str(siglip), str(tmp_path / "adapter"), str(tmp_path / "out")]) == 2  # needs --is_clip
    assert cli(["merge", str(siglip), str(tmp_path / "adapter"), str(tmp_path / "out"), "--is_clip"]) == 0
    merged = SiglipVisionModel.from_pretrained(tmp_path / "out")
    assert any(name.startswith("head.") for name, _ in merged.named_parameters())
    pixels = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(merged(pixels).pooler_output, vit.eval()(pixels).pooler_output, atol=1e-5, rtol=0)
    assert json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())["image_processor_type"] == (
        "SiglipImageProcessor")
