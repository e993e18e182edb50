"""XTuner's HF-side LLaVA folders (`xtuner convert pth_to_hf`, xtuner_llava_pipeline.md §6.3), written from the
documented layout for the loader and import tests: `projector/` (`nn.Sequential` keys `model.0.*` / `model.2.*`),
PEFT adapters trained on the bare LLM / CLIP (`llm_adapter/`, `visual_encoder_adapter/`), or the full trained LLM
(folder root, with its tokenizer) and `visual_encoder/` when those were unfrozen."""

import os

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPImageProcessor, CLIPVisionModel

VIT_LINEARS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def randomize_(parameters, seed, scale=0.5):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in parameters:
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)


def write_xtuner_llava_folder(folder, parts, hidden_sizes, seed=2, full=False, projector_format="safetensors"):
    """`parts/llm` + `parts/clip` are what XTuner trained on. Adapters by default; `full=True` writes the trained
    LLM to the folder root and the ViT to `visual_encoder/` instead. Returns (projector tensors, llm, vit): the
    PEFT models, or the full trained backbones."""
    vision_hidden, text_hidden = hidden_sizes
    generator = torch.Generator().manual_seed(seed)
    projector = {"model.0.weight": torch.randn(text_hidden, vision_hidden, generator=generator),
                 "model.0.bias": torch.randn(text_hidden, generator=generator),
                 "model.2.weight": torch.randn(text_hidden, text_hidden, generator=generator),
                 "model.2.bias": torch.randn(text_hidden, generator=generator)}
    os.makedirs(folder / "projector")
    if projector_format == "bin":
        torch.save(projector, folder / "projector" / "pytorch_model.bin")
    else:
        save_file(projector, str(folder / "projector" / "model.safetensors"))
    llm = AutoModelForCausalLM.from_pretrained(parts / "llm")
    vit = CLIPVisionModel.from_pretrained(parts / "clip")
    if full:
        randomize_(llm.parameters(), seed=seed + 1, scale=0.05)
        randomize_(vit.parameters(), seed=seed + 2, scale=0.05)
        llm.save_pretrained(folder)
        AutoTokenizer.from_pretrained(parts / "llm").save_pretrained(folder)
        vit.save_pretrained(folder / "visual_encoder")
        CLIPImageProcessor.from_pretrained(parts / "clip").save_pretrained(folder / "visual_encoder")
        return projector, llm, vit
    # XTuner trains the LLM LoRA on the bare LLM, `output` head included (its vocabulary has no <image>).
    llm = get_peft_model(llm, LoraConfig(r=4, lora_alpha=8, target_modules=["wqkv", "wo", "w1", "w2", "w3", "output"]))
    randomize_([p for n, p in llm.named_parameters() if "lora_B" in n], seed=seed + 1)
    llm.save_pretrained(folder / "llm_adapter")
    vit = get_peft_model(vit, LoraConfig(r=2, lora_alpha=4, target_modules=VIT_LINEARS))
    randomize_([p for n, p in vit.named_parameters() if "lora_B" in n], seed=seed + 2)
    vit.save_pretrained(folder / "visual_encoder_adapter")
    return projector, llm, vit
