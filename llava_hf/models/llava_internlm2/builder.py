"""Assemble a LLaVA-InternLM2 model + processor from parts: a pretrained LLM, a pretrained vision encoder (any that
`llava_hf.models.vision_encoders` accepts: CLIP, SigLIP, ...), and optionally projector weights (tiny random ones
for tests and the demo: `llava_hf.testing`)."""

import os

import torch
from transformers import AddedToken, AutoConfig, AutoModelForCausalLM, AutoTokenizer

from ..vision_encoders import (
    check_encoder_fits,
    check_image_processor_fits,
    image_processor_from_pretrained,
    run_on_meta_device,
    vision_config_from_pretrained,
    vision_encoder_from_pretrained,
)
from .checkpoint_io import copy_tensors_into, full_shape, read_tensors
from .configuration_llava_internlm2 import LlavaInternLM2Config
from .modeling_llava_internlm2 import (
    LlavaInternLM2ForConditionalGeneration,
    resize_token_embeddings_to_mean,
)
from .processing_llava_internlm2 import LlavaInternLM2Processor, chat_stop_token_ids

PROJECTOR_PREFIX = "multi_modal_projector."


def build_llava_processor(
    llm_name_or_path: str, vision_name_or_path: str, image_token: str = "<image>", **config_overrides
) -> LlavaInternLM2Processor:
    """The processor of the model `build_llava_from_pretrained` builds from these folders, read from their tokenizer,
    image-processor and config files only: training validates and tokenizes its data with it before any weights
    load, so a bad sample stops a 7B run in seconds. `config_overrides` as for the model (they decide the image
    token count). The encoder and its image processor are checked here (`llava_config`)."""
    config = llava_config(AutoConfig.from_pretrained(llm_name_or_path),
                          vision_config_from_pretrained(vision_name_or_path), vision_name_or_path, **config_overrides)
    image_processor = image_processor_from_pretrained(vision_name_or_path)
    check_image_processor_fits(image_processor, config.vision_config, vision_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(llm_name_or_path)
    add_image_token(tokenizer, image_token)
    return LlavaInternLM2Processor(image_processor, tokenizer, image_token=image_token,
                                   image_seq_length=config.image_seq_length)


def llava_config(text_config, vision_config, vision_name: str, **config_fields) -> LlavaInternLM2Config:
    """The config of a LLaVA over these backbones, once the encoder (`vision_name` in messages) is known to give what
    it reads: `num_additional_image_tokens` (unless given) is what the encoder measurably puts ahead of its patches,
    and token count, width and feature layers are checked against one (meta-device) pass of the encoder."""
    measured = run_on_meta_device(vision_config, vision_name)
    config_fields.setdefault("num_additional_image_tokens", max(measured.additional_tokens, 0))
    config = LlavaInternLM2Config(text_config=text_config, vision_config=vision_config, **config_fields)
    check_encoder_fits(config, measured, vision_name)
    return config


def build_llava_from_pretrained(
    llm_name_or_path: str,
    vision_name_or_path: str,
    projector_path: str | None = None,
    dtype: torch.dtype | str | None = None,
    image_token: str = "<image>",
    attn_implementation: str | None = None,
    quantization_config=None,
    processor: LlavaInternLM2Processor | None = None,
    **config_overrides,
) -> tuple[LlavaInternLM2ForConditionalGeneration, LlavaInternLM2Processor]:
    """A new model from a causal-LM folder (+ its tokenizer) and a vision-encoder folder (+ its image processor): any
    `llava_hf.models.vision_encoders` accepts (CLIP, SigLIP, ...; a two-tower folder's vision side).

    Adds `image_token` to the tokenizer, grows the embeddings if the new id does not fit (new rows = mean of the
    old ones, so the same sources always give the same weights), records both sources in the config (so
    projector-only checkpoints can be rebuilt), and loads `projector_path` (a safetensors file, or a folder
    whose weights hold `multi_modal_projector.*`) when given. `config_overrides` go to `LlavaInternLM2Config`
    (e.g. `vision_feature_layer`, `projector_type`); `quantization_config` applies to the LLM only.
    `processor`: the one `build_llava_processor` made from the same folders, reused instead of read again.
    """
    load_kwargs = {"dtype": dtype, "attn_implementation": attn_implementation}
    load_kwargs = {k: v for k, v in load_kwargs.items() if v is not None}
    lm_kwargs = dict(load_kwargs, **({"quantization_config": quantization_config} if quantization_config else {}))
    if processor is None:
        processor = build_llava_processor(llm_name_or_path, vision_name_or_path, image_token, **config_overrides)
    language_model = AutoModelForCausalLM.from_pretrained(llm_name_or_path, **lm_kwargs)
    vision_tower = vision_encoder_from_pretrained(vision_name_or_path,
                                                  vision_config_from_pretrained(vision_name_or_path), **load_kwargs)
    model, processor = assemble_llava(
        language_model,
        vision_tower,
        processor.tokenizer,
        processor.image_processor,
        processor.image_token,
        text_model_name_or_path=_source(llm_name_or_path),
        vision_model_name_or_path=_source(vision_name_or_path),
        **config_overrides,
    )
    if projector_path is not None:
        load_projector_weights(model, projector_path)
    return model, processor


def load_projector_weights(model: LlavaInternLM2ForConditionalGeneration, path: str) -> None:
    """Load `multi_modal_projector.*` tensors from a safetensors file or a model folder; every projector parameter
    must be present with the right shape."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"projector weights not found: {path}")
    projector = {k: v for k, v in read_tensors(path).items() if k.startswith(PROJECTOR_PREFIX)}
    copy_tensors_into(model, projector, path, require_all_under=PROJECTOR_PREFIX)


def assemble_llava(language_model, vision_tower, tokenizer, image_processor, image_token="<image>", **config_fields):
    """Model + processor around built backbones: adds `image_token` to the tokenizer (growing the vocabulary with
    mean rows when needed), a fresh projector, the chat stop tokens; `config_fields` go to the config (`llava_config`
    checks the encoder)."""
    vision_name = config_fields.get("vision_model_name_or_path") or type(vision_tower).__name__
    image_token_id = add_image_token(tokenizer, image_token)
    vocab_rows = full_shape(language_model.get_input_embeddings().weight)[0]  # also under DeepSpeed ZeRO-3
    resize_token_embeddings_to_mean(language_model, max(vocab_rows, image_token_id + 1))
    config = llava_config(language_model.config, vision_tower.config, vision_name, image_token_id=image_token_id,
                          **config_fields)
    model = LlavaInternLM2ForConditionalGeneration.from_backbones(config, language_model, vision_tower)
    set_chat_stop_tokens(model.generation_config, tokenizer)
    processor = LlavaInternLM2Processor(
        image_processor, tokenizer, image_token=image_token, image_seq_length=config.image_seq_length
    )
    return model, processor


def add_image_token(tokenizer, image_token: str) -> int:
    """The image placeholder as one special token (added once; adding it again changes nothing); its id."""
    tokenizer.add_tokens([AddedToken(image_token, special=True, normalized=False)], special_tokens=True)
    return tokenizer.convert_tokens_to_ids(image_token)


def set_chat_stop_tokens(generation_config, tokenizer) -> None:
    """Chat turns end with the template's end-of-turn token, not EOS (internlm2-chat: `</s>` and `<|im_end|>`):
    generation stops at either, and pads with the tokenizer's pad token."""
    stop_ids = chat_stop_token_ids(tokenizer)
    if len(stop_ids) > 1 and tokenizer.eos_token_id is not None:
        generation_config.eos_token_id = stop_ids
        generation_config.pad_token_id = tokenizer.pad_token_id


def _source(name_or_path: str) -> str:
    """Local folders are recorded as absolute paths (a checkpoint may be loaded from another directory)."""
    return os.path.abspath(name_or_path) if os.path.isdir(name_or_path) else name_or_path


__all__ = ["assemble_llava", "build_llava_from_pretrained", "build_llava_processor", "llava_config",
           "load_projector_weights", "set_chat_stop_tokens"]
