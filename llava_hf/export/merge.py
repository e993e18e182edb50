"""`llava-hf merge`: any folder training writes becomes one complete, self-contained model folder.

Accepted sources: a full model folder, a stage-1 folder that holds only the projector (its backbones are
rebuilt from the recorded sources), a training output or `checkpoint-N` with one PEFT adapter (LLM LoRA, ViT
LoRA, projector in `modules_to_save`) over such a folder. Adapters are merged with PEFT's `merge_and_unload`.

QLoRA: the base is loaded in 16 (or 32) bits and the adapter merged into those weights, never into 4-bit
weights. The merged model therefore computes W + BA where the QLoRA model computed dequant(NF4(W)) + BA: its
outputs differ from the 4-bit model's by the NF4 rounding of the base weights (the same difference as between
the base model in 16-bit and in 4-bit), not by anything the merge adds.

The seed's two plain forms (XTuner's `convert merge`) merge a PEFT adapter into a bare LLM or vision encoder (CLIP,
SigLIP, ...: the flag keeps XTuner's name): `merge_plain_adapter(LLM_DIR, llm_adapter, OUT)` and
`merge_plain_adapter(VISION_DIR, visual_encoder_adapter, OUT, is_clip=True)`.
"""

import os

from ..errors import UserInputError
from ..dtypes import resolve_dtype
from ..inference.loading import LLAVA_MODEL_TYPE, has_processor, read_config_json, read_model_type
from ..models.adapters import adapter_base, bare_backbone_from_config, check_adapter_fits, is_adapter_folder, skeleton
from ..models.vision_encoders import is_vision_encoder_config
from .output_folder import atomic_output_folder, check_output_folder

DEFAULT_MAX_SHARD_SIZE = "5GB"


def merge_model_folder(src: str, out: str, dtype: str = "auto", max_shard_size: str = DEFAULT_MAX_SHARD_SIZE,
                       force: bool = False) -> str:
    """Write `src` (any folder training writes, see the module docstring) as one complete folder `out`: sharded
    safetensors, tokenizer, processor, chat template, generation config, model card stub. Returns `out`."""
    from .model_card import build_model_card, save_model_card, training_summary, write_training_summary

    check_output_folder(out, force, inputs=[src])
    summary = training_summary(src)
    model, processor = load_merged(src, dtype)
    with atomic_output_folder(out, force, inputs=[src]) as staging:
        save_model_folder(model, processor, staging, max_shard_size)
        write_training_summary(staging, summary)
        save_model_card(build_model_card(model.config, training=summary), staging)
    return out


def folder_kind(src: str) -> str:
    """"adapter" (adapter_config.json) or "llava" (config.json with model_type llava_internlm2); anything else is a
    `UserInputError` that says what the folder looks like instead."""
    if not os.path.isdir(src):
        raise UserInputError(f"{src}: no such folder")
    if is_adapter_folder(src):
        return "adapter"
    model_type = read_model_type(src)
    if model_type == LLAVA_MODEL_TYPE:
        return "llava"
    if os.path.isdir(os.path.join(src, "projector")):
        hint = "an XTuner pth_to_hf output: use `llava-hf import-xtuner`"
    elif model_type and is_vision_encoder_config(read_config_json(src)):
        hint = (f"a vision encoder ({model_type!r}): to merge its adapter use `llava-hf merge VISION_DIR ADAPTER OUT "
                "--is_clip`")
    elif model_type:
        hint = f"an LLM ({model_type!r}): to merge an LLM adapter use `llava-hf merge LLM_DIR ADAPTER OUT`"
    else:
        hint = "no config.json and no adapter_config.json"
    raise UserInputError(f"{src} is not a folder llava-hf training writes ({hint})")


def load_merged(src: str, dtype: str = "auto"):
    """(model, processor) of any folder training writes, with a PEFT adapter merged into its (unquantized) base."""
    from peft import PeftModel
    from transformers import AutoProcessor

    from ..models.llava_internlm2 import LlavaInternLM2Config, LlavaInternLM2ForConditionalGeneration

    torch_dtype = resolve_dtype(dtype)
    if folder_kind(src) == "llava":
        model = LlavaInternLM2ForConditionalGeneration.from_pretrained(src, dtype=torch_dtype)
        return model.eval(), AutoProcessor.from_pretrained(src)
    base = adapter_base(src)
    if read_model_type(base) != LLAVA_MODEL_TYPE:
        raise UserInputError(f"{src}: the adapter's base {base} is not a LLaVA model folder (model_type "
                             f"{read_model_type(base)!r}); for an adapter on a bare LLM or vision encoder use "
                             "`llava-hf merge BASE ADAPTER OUT [--is_clip]`")
    config = LlavaInternLM2Config.from_pretrained(base)
    check_adapter_fits(skeleton(lambda: LlavaInternLM2ForConditionalGeneration(config)), src)  # before the weights
    model = LlavaInternLM2ForConditionalGeneration.from_pretrained(base, dtype=torch_dtype)
    model = PeftModel.from_pretrained(model, src).merge_and_unload()
    processor = AutoProcessor.from_pretrained(src if has_processor(src) else base)
    return model.eval(), processor


def save_model_folder(model, processor, folder: str, max_shard_size: str = DEFAULT_MAX_SHARD_SIZE,
                      state_dict: dict | None = None) -> None:
    """Weights (sharded safetensors, with the code files for `trust_remote_code=True`; only `state_dict` when given,
    for a folder whose backbones are rebuilt from their recorded sources), generation config (stops at EOS and the
    end-of-turn token), tokenizer, processor and chat template."""
    from ..models.llava_internlm2.builder import set_chat_stop_tokens

    set_chat_stop_tokens(model.generation_config, processor.tokenizer)
    model.save_pretrained(folder, max_shard_size=max_shard_size, state_dict=state_dict)
    processor.save_pretrained(folder)


def merge_plain_adapter(base: str, adapter: str, out: str, is_clip: bool = False, dtype: str = "auto",
                        max_shard_size: str = DEFAULT_MAX_SHARD_SIZE, force: bool = False) -> str:
    """XTuner's `convert merge BASE ADAPTER OUT [--is_clip]`: a PEFT adapter trained on a bare LLM (with its
    tokenizer) or vision encoder (CLIP, SigLIP, ..., with its image processor; a two-tower folder gives its vision
    side), merged into it. Returns `out`."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..models.vision_encoders import (
        image_processor_from_pretrained, vision_config_from_pretrained, vision_encoder_from_pretrained,
    )

    check_output_folder(out, force, inputs=[base, adapter])
    for folder, what in ((base, "base model"), (adapter, "adapter")):
        if not os.path.isdir(folder):
            raise UserInputError(f"{what} folder not found: {folder}")
    if not is_adapter_folder(adapter):
        raise UserInputError(f"{adapter} is not a PEFT adapter folder (no adapter_config.json)")
    config = read_config_json(base)
    model_type = (config or {}).get("model_type")
    if config is None:
        raise UserInputError(f"{base} has no config.json")
    if model_type == LLAVA_MODEL_TYPE:
        raise UserInputError(f"{base} is a LLaVA model folder: an adapter trained on it names it as its base, so "
                             "merge with `llava-hf merge ADAPTER OUT`")
    if is_clip != is_vision_encoder_config(config):
        raise UserInputError(f"{base} is a {model_type!r} model: " + (
            "--is_clip merges into a vision encoder (CLIP, SigLIP, ...)" if is_clip
            else "add --is_clip to merge a vision-encoder (CLIP, SigLIP, ...) adapter"))
    attribute = "vision_tower" if is_clip else "language_model"
    check_adapter_fits(skeleton(lambda: bare_backbone_from_config(attribute, base)), adapter)
    if is_clip:
        model = vision_encoder_from_pretrained(base, vision_config_from_pretrained(base, pooling_head=True),
                                               dtype=resolve_dtype(dtype))
        preprocessor = image_processor_from_pretrained(base)
    else:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=resolve_dtype(dtype))
        preprocessor = AutoTokenizer.from_pretrained(base)
    model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    with atomic_output_folder(out, force, inputs=[base, adapter]) as staging:
        model.save_pretrained(staging, max_shard_size=max_shard_size)
        preprocessor.save_pretrained(staging)
    return out
