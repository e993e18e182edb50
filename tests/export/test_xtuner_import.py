"""`llava-hf import-xtuner`: XTuner folders written from the documented layout become our format and reproduce
the equivalent model; every layout mistake is one line naming the file or tensor."""

import json
import os
import re

import pytest
import torch
from safetensors.torch import save_file

from llava_hf.cli.main import main as cli
from llava_hf.inference import UserInputError, load_model_and_processor
from llava_hf.models.llava_internlm2 import LlavaInternLM2ForConditionalGeneration, build_llava_from_pretrained
from llava_hf.testing import build_tiny_llava
from tests.export.shipping_helpers import chat_inputs, logits_of
from tests.xtuner_layout import write_xtuner_llava_folder


def hidden_sizes(model):
    return model.config.vision_config.hidden_size, model.config.text_config.hidden_size


def load_projector(model, projector):
    renamed = {key.replace("model.0.", "linear_1.").replace("model.2.", "linear_2."): v for key, v in projector.items()}
    model.multi_modal_projector.load_state_dict(renamed)


def test_adapters_are_merged_into_the_equivalent_model(tiny_parts, image, tmp_path):
    parts, model, processor = tiny_parts
    projector, llm, vit = write_xtuner_llava_folder(tmp_path / "xtuner", parts, hidden_sizes(model))
    argv = ["--llm", str(parts / "llm"), "--visual_encoder", str(parts / "clip"), "--llava", str(tmp_path / "xtuner")]
    assert cli(["import-xtuner", str(tmp_path / "ours"), *argv]) == 0
    imported = LlavaInternLM2ForConditionalGeneration.from_pretrained(tmp_path / "ours")
    assert not any("lora" in name for name in imported.state_dict())
    inputs = chat_inputs(processor, image)
    ours = logits_of(imported, inputs)

    # XTuner's own model: the LLM and the ViT with their LoRA merged, the projector on top.
    llm.merge_and_unload().save_pretrained(tmp_path / "xtuner_llm")
    processor.tokenizer.save_pretrained(tmp_path / "xtuner_llm")
    vit.merge_and_unload().save_pretrained(tmp_path / "xtuner_vit")
    processor.image_processor.save_pretrained(tmp_path / "xtuner_vit")
    equivalent, _ = build_llava_from_pretrained(str(tmp_path / "xtuner_llm"), str(tmp_path / "xtuner_vit"))
    load_projector(equivalent, projector)
    image_token = model.config.image_token_id  # the row our builder adds: XTuner's vocabulary has no <image>
    assert image_token == ours.shape[-1] - 1
    difference = (ours[:, :image_token] - logits_of(equivalent, inputs)[:, :image_token]).abs().max().item()
    print(f"imported XTuner LoRA model vs the equivalent model: max abs logit difference {difference:.2e}")
    assert difference < 1e-4

    # ... and the same as the XTuner triple loaded on the fly (adapters attached, not merged), <image> column too.
    triple, _ = load_model_and_processor(str(parts / "llm"), visual_encoder=str(parts / "clip"),
                                         llava=str(tmp_path / "xtuner"))
    assert (ours - logits_of(triple, inputs)).abs().max().item() < 1e-4


def test_keep_adapters_writes_one_peft_adapter_over_a_projector_only_base(tiny_parts, image, tmp_path):
    parts, model, processor = tiny_parts
    write_xtuner_llava_folder(tmp_path / "xtuner", parts, hidden_sizes(model), seed=5)
    argv = ["--llm", str(parts / "llm"), "--visual_encoder", str(parts / "clip"), "--llava", str(tmp_path / "xtuner")]
    assert cli(["import-xtuner", str(tmp_path / "ours"), *argv, "--keep_adapters"]) == 0
    assert sorted(p for p in os.listdir(tmp_path / "ours") if p.startswith("adapter_")) == [
        "adapter_config.json", "adapter_model.safetensors"]
    base_tensors = os.path.getsize(tmp_path / "ours" / "base" / "model.safetensors")
    assert base_tensors < sum(p.numel() * 4 for p in model.multi_modal_projector.parameters()) + 4096

    inputs = chat_inputs(processor, image)
    adapted, _ = load_model_and_processor(str(tmp_path / "ours"))
    triple, _ = load_model_and_processor(str(parts / "llm"), visual_encoder=str(parts / "clip"),
                                         llava=str(tmp_path / "xtuner"))
    expected = logits_of(triple, inputs)
    assert (logits_of(adapted, inputs) - expected).abs().max().item() < 1e-4
    os.rename(tmp_path / "ours", tmp_path / "moved")  # the base is found relative to the adapter folder
    assert cli(["merge", str(tmp_path / "moved"), str(tmp_path / "merged")]) == 0
    merged = LlavaInternLM2ForConditionalGeneration.from_pretrained(tmp_path / "merged")
    assert (logits_of(merged, inputs) - expected).abs().max().item() < 1e-4


def test_fully_trained_llm_and_vit_and_a_pickled_projector(tiny_parts, image, tmp_path):
    parts, model, processor = tiny_parts
    projector, _, _ = write_xtuner_llava_folder(tmp_path / "xtuner", parts, hidden_sizes(model), full=True,
                                                projector_format="bin")
    assert cli(["import-xtuner", str(tmp_path / "ours"), "--llava", str(tmp_path / "xtuner")]) == 0
    imported = LlavaInternLM2ForConditionalGeneration.from_pretrained(tmp_path / "ours")
    equivalent, _ = build_llava_from_pretrained(str(tmp_path / "xtuner"), str(tmp_path / "xtuner" / "visual_encoder"))
    load_projector(equivalent, projector)
    inputs = chat_inputs(processor, image)
    assert torch.equal(logits_of(imported, inputs), logits_of(equivalent, inputs))


@pytest.mark.parametrize("mistake, message", [
    ("no_projector", r"xtuner has no projector/ folder"),
    ("wide_projector", r"projector: projector tensor 'model.0.weight' has shape \(64, 48\), but the LLM \(.*\) and "
                       r"vision encoder \(.*\) need \(64, 32\)"),
    ("no_visual_encoder", r"xtuner has no visual_encoder/ \(a trained vision encoder\); pass --visual_encoder FOLDER"),
])
def test_layout_mistakes_are_one_line_errors(tiny_parts, tmp_path, capsys, mistake, message):
    parts, model, _ = tiny_parts
    llava = tmp_path / "xtuner"
    write_xtuner_llava_folder(llava, parts, hidden_sizes(model))
    argv = ["--llm", str(parts / "llm"), "--visual_encoder", str(parts / "clip"), "--llava", str(llava)]
    if mistake == "no_projector":
        os.remove(llava / "projector" / "model.safetensors")
        os.rmdir(llava / "projector")
    elif mistake == "wide_projector":
        save_file({"model.0.weight": torch.zeros(64, 48), "model.0.bias": torch.zeros(64),
                   "model.2.weight": torch.zeros(64, 64), "model.2.bias": torch.zeros(64)},
                  str(llava / "projector" / "model.safetensors"))
    else:
        argv = argv[:2] + argv[4:]
    capsys.readouterr()
    assert cli(["import-xtuner", str(tmp_path / "ours"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("llava-hf import-xtuner: error: ") and "\n" not in err
    assert re.search(message, err), err
    assert not (tmp_path / "ours").exists()


@pytest.fixture
def nothing_loaded(monkeypatch):
    """Fails the test if the projector (the first weights the import reads) is read: folder kinds come first."""
    def read_projector(*args, **kwargs):
        raise AssertionError("the projector was read before the LLM and CLIP folders were checked")

    monkeypatch.setattr("llava_hf.inference.loading.check_xtuner_projector", read_projector)


def write_config(folder, **config):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("llm, visual_encoder, lines", [
    ("clip", "llm", ["--llm {clip} is a vision encoder and --visual_encoder {llm} is a language model: swapped?"]),
    ("bert", "clip", ["--llm {bert} is not a language model (its config.json has model_type 'bert', architectures "
                      "['BertModel']); give the LLM XTuner trained on"]),
    ("llm", "llm", ["--visual_encoder {llm} is not a vision encoder (its config.json has model_type 'internlm2', "
                    "architectures ['InternLM2ForCausalLM']); give the vision encoder XTuner trained on"]),
    ("empty", "bert", ["--llm {empty} is not a language model (it has no config.json); give the LLM XTuner trained on",
                       "--visual_encoder {bert} is not a vision encoder (its config.json has model_type 'bert', "
                       "architectures ['BertModel']); give the vision encoder XTuner trained on"]),
], ids=["swapped", "llm-is-neither", "two-llms", "both-wrong"])
def test_backbone_folders_of_the_wrong_kind_are_named_before_loading(llm, visual_encoder, lines, tiny_parts, tmp_path,
                                                                    capsys, nothing_loaded):
    parts = tiny_parts[0]
    folders = {"llm": parts / "llm", "clip": parts / "clip", "empty": tmp_path / "empty",
               "bert": write_config(tmp_path / "bert", model_type="bert", architectures=["BertModel"])}
    folders["empty"].mkdir()
    (tmp_path / "xtuner" / "projector").mkdir(parents=True)
    argv = ["import-xtuner", str(tmp_path / "ours"), "--llava", str(tmp_path / "xtuner"),
            "--llm", str(folders[llm]), "--visual_encoder", str(folders[visual_encoder])]
    assert cli(argv) == 2
    expected = "\n".join(lines).format(**folders)
    assert capsys.readouterr().err == f"llava-hf import-xtuner: error: {expected}\n"
    assert not (tmp_path / "ours").exists()


def test_chat_names_a_swapped_xtuner_triple(tiny_parts, tmp_path, nothing_loaded):
    parts = tiny_parts[0]
    (tmp_path / "xtuner" / "projector").mkdir(parents=True)
    with pytest.raises(UserInputError, match=r"^MODEL .*clip is a vision encoder and --visual_encoder .*llm is a "
                                             r"language model: swapped\?$"):
        load_model_and_processor(str(parts / "clip"), visual_encoder=str(parts / "llm"), llava=str(tmp_path / "xtuner"))


def test_an_encoder_without_one_cls_is_refused_with_the_reason(tiny_parts, tiny_tokenizer_dir, tmp_path, capsys,
                                                               nothing_loaded):
    """XTuner's LLaVA takes `hidden_states[layer][:, 1:]` of any encoder: for SigLIP (no CLS) that drops a patch, which
    our model never does, so its projector's features cannot be reproduced."""
    build_tiny_llava(save_dir=str(tmp_path / "parts"), tokenizer_dir=tiny_tokenizer_dir, image_size=28,
                     text_hidden_size=64, vision_hidden_size=32, vision_model_type="siglip")
    (tmp_path / "xtuner" / "projector").mkdir(parents=True)
    siglip = tmp_path / "parts" / "siglip"
    argv = ["import-xtuner", str(tmp_path / "ours"), "--llava", str(tmp_path / "xtuner"),
            "--llm", str(tiny_parts[0] / "llm"), "--visual_encoder", str(siglip)]
    capsys.readouterr()
    assert cli(argv) == 2
    assert capsys.readouterr().err == (
        f"llava-hf import-xtuner: error: --visual_encoder {siglip} (siglip_vision_model) puts 0 tokens ahead of its "
        "patches: XTuner's LLaVA drops token 0 of the encoder's output, which is a CLS only for encoders with exactly "
        "one (CLIP), so its projector's features cannot be reproduced here\n")
