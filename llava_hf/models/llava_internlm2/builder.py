"""Assemble a LLaVA-InternLM2 model + processor from parts: a pretrained LLM, a pretrained CLIP, and optionally
projector weights; or a tiny random one for tests and the demo."""

import os
import tempfile

import torch
from transformers import AddedToken, AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

from .checkpoint_io import copy_tensors_into, full_shape, read_tensors
from .configuration_llava_internlm2 import LlavaInternLM2Config
from .modeling_llava_internlm2 import (
    LlavaInternLM2ForConditionalGeneration,
    causal_lm_from_config,
    resize_token_embeddings_to_mean,
)
from .processing_llava_internlm2 import LlavaInternLM2Processor

PROJECTOR_PREFIX = "multi_modal_projector."
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>")


def build_llava_from_pretrained(
    llm_name_or_path: str,
    vision_name_or_path: str,
    projector_path: str | None = None,
    dtype: torch.dtype | str | None = None,
    image_token: str = "<image>",
    attn_implementation: str | None = None,
    quantization_config=None,
    **config_overrides,
) -> tuple[LlavaInternLM2ForConditionalGeneration, LlavaInternLM2Processor]:
    """A new model from a causal-LM folder (+ its tokenizer) and a CLIP folder (+ its image processor).

    Adds `image_token` to the tokenizer, grows the embeddings if the new id does not fit (new rows = mean of the
    old ones, so the same sources always give the same weights), records both sources in the config (so
    projector-only checkpoints can be rebuilt), and loads `projector_path` (a safetensors file, or a folder
    whose weights hold `multi_modal_projector.*`) when given. `config_overrides` go to `LlavaInternLM2Config`
    (e.g. `vision_feature_layer`, `projector_hidden_act`); `quantization_config` applies to the LLM only.
    """
    load_kwargs = {"dtype": dtype, "attn_implementation": attn_implementation}
    load_kwargs = {k: v for k, v in load_kwargs.items() if v is not None}
    lm_kwargs = dict(load_kwargs, **({"quantization_config": quantization_config} if quantization_config else {}))
    tokenizer = AutoTokenizer.from_pretrained(llm_name_or_path)
    language_model = AutoModelForCausalLM.from_pretrained(llm_name_or_path, **lm_kwargs)
    vision_tower = CLIPVisionModel.from_pretrained(vision_name_or_path, **load_kwargs)
    image_processor = CLIPImageProcessor.from_pretrained(vision_name_or_path)
    model, processor = _assemble(
        language_model,
        vision_tower,
        tokenizer,
        image_processor,
        image_token,
        text_model_name_or_path=_source(llm_name_or_path),
        vision_model_name_or_path=_source(vision_name_or_path),
        **config_overrides,
    )
    if projector_path is not None:
        load_projector_weights(model, projector_path)
    return model, processor


def build_tiny_llava(
    save_dir: str | None = None,
    tokenizer_dir: str | None = None,
    text_model_type: str = "internlm2",
    image_size: int = 112,
    patch_size: int = 14,
    text_hidden_size: int = 128,
    text_layers: int = 2,
    vision_hidden_size: int = 64,
    vision_layers: int = 2,
    seed: int = 0,
) -> tuple[LlavaInternLM2ForConditionalGeneration, LlavaInternLM2Processor]:
    """A tiny random model + processor (nothing downloaded). `text_model_type` is any registered causal-LM
    model type with Llama-style config fields (`internlm2`, `llama`, `qwen2`, ...).

    With `save_dir`, the parts are written first (`save_dir/llm`: LLM + tokenizer, `save_dir/clip`: CLIP vision
    + image processor) and the model is built from them with `build_llava_from_pretrained`, so its config
    records real source folders, as the demo needs. The same arguments always give the same weights.
    """
    with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory() as scratch:
        torch.manual_seed(seed)
        llm_dir = os.path.join(save_dir, "llm") if save_dir is not None else scratch
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or _tiny_tokenizer_dir(llm_dir))
        heads = max(1, text_hidden_size // 32)
        text_config = AutoConfig.for_model(
            text_model_type,
            vocab_size=len(tokenizer),
            hidden_size=text_hidden_size,
            intermediate_size=2 * text_hidden_size,
            num_hidden_layers=text_layers,
            num_attention_heads=heads,
            num_key_value_heads=max(1, heads // 2),
            max_position_embeddings=4096,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
        )
        vision_config = CLIPVisionConfig(
            image_size=image_size,
            patch_size=patch_size,
            hidden_size=vision_hidden_size,
            intermediate_size=2 * vision_hidden_size,
            num_hidden_layers=vision_layers,
            num_attention_heads=max(1, vision_hidden_size // 16),
        )
        image_processor = CLIPImageProcessor(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        )
        language_model = causal_lm_from_config(text_config)
        vision_tower = CLIPVisionModel(vision_config)
        if save_dir is None:
            return _assemble(language_model, vision_tower, tokenizer, image_processor, "<image>")
        clip_dir = os.path.join(save_dir, "clip")
        language_model.save_pretrained(llm_dir)
        tokenizer.save_pretrained(llm_dir)
        vision_tower.save_pretrained(clip_dir)
        image_processor.save_pretrained(clip_dir)
        return build_llava_from_pretrained(llm_dir, clip_dir)


def load_projector_weights(model: LlavaInternLM2ForConditionalGeneration, path: str) -> None:
    """Load `multi_modal_projector.*` tensors from a safetensors file or a model folder; every projector parameter
    must be present with the right shape."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"projector weights not found: {path}")
    projector = {k: v for k, v in read_tensors(path).items() if k.startswith(PROJECTOR_PREFIX)}
    copy_tensors_into(model, projector, path, require_all_under=PROJECTOR_PREFIX)


def _assemble(language_model, vision_tower, tokenizer, image_processor, image_token, **config_fields):
    tokenizer.add_tokens([AddedToken(image_token, special=True, normalized=False)], special_tokens=True)
    image_token_id = tokenizer.convert_tokens_to_ids(image_token)
    vocab_rows = full_shape(language_model.get_input_embeddings().weight)[0]  # also under DeepSpeed ZeRO-3
    resize_token_embeddings_to_mean(language_model, max(vocab_rows, image_token_id + 1))
    config = LlavaInternLM2Config(
        text_config=language_model.config,
        vision_config=vision_tower.config,
        image_token_id=image_token_id,
        **config_fields,
    )
    model = LlavaInternLM2ForConditionalGeneration.from_backbones(config, language_model, vision_tower)
    set_chat_stop_tokens(model.generation_config, tokenizer)
    processor = LlavaInternLM2Processor(
        image_processor, tokenizer, image_token=image_token, image_seq_length=config.image_seq_length
    )
    return model, processor


def set_chat_stop_tokens(generation_config, tokenizer) -> None:
    """Chat turns end with the template's end-of-turn token, not EOS (internlm2-chat: `</s>` and `<|im_end|>`):
    generation stops at either, and pads with the tokenizer's pad token."""
    end_of_turn = [tokenizer.convert_tokens_to_ids(t) for t in END_OF_TURN_TOKENS if t in tokenizer.get_vocab()]
    if end_of_turn and tokenizer.eos_token_id is not None:
        generation_config.eos_token_id = [tokenizer.eos_token_id, *end_of_turn]
        generation_config.pad_token_id = tokenizer.pad_token_id


def _tiny_tokenizer_dir(scratch: str) -> str:
    from llava_hf.demo.tiny_tokenizer import build_tiny_internlm2_tokenizer_files

    return build_tiny_internlm2_tokenizer_files(scratch)


def _source(name_or_path: str) -> str:
    """Local folders are recorded as absolute paths (a checkpoint may be loaded from another directory)."""
    return os.path.abspath(name_or_path) if os.path.isdir(name_or_path) else name_or_path


__all__ = ["build_llava_from_pretrained", "build_tiny_llava", "load_projector_weights", "set_chat_stop_tokens"]
