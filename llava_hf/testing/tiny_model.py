"""A tiny random LLaVA (InternLM2 or another causal LM + CLIP) for tests and the demo: nothing is downloaded."""

import os
import tempfile

import torch
from transformers import AutoConfig, AutoTokenizer, CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

from ..models.llava_internlm2 import LlavaInternLM2ForConditionalGeneration, LlavaInternLM2Processor
from ..models.llava_internlm2.builder import assemble_llava, build_llava_from_pretrained
from ..models.llava_internlm2.modeling_llava_internlm2 import causal_lm_from_config
from .tiny_tokenizer import build_tiny_internlm2_tokenizer_files


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
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or build_tiny_internlm2_tokenizer_files(llm_dir))
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
        image_processor = CLIPImageProcessorPil(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        )
        language_model = causal_lm_from_config(text_config)
        vision_tower = CLIPVisionModel(vision_config)
        if save_dir is None:
            return assemble_llava(language_model, vision_tower, tokenizer, image_processor, "<image>")
        clip_dir = os.path.join(save_dir, "clip")
        language_model.save_pretrained(llm_dir)
        tokenizer.save_pretrained(llm_dir)
        vision_tower.save_pretrained(clip_dir)
        image_processor.save_pretrained(clip_dir)
        return build_llava_from_pretrained(llm_dir, clip_dir)
