"""A tiny random LLaVA (InternLM2 or another causal LM + CLIP or SigLIP) for tests and the demo: nothing is
downloaded."""

import os
import tempfile

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer, CLIPImageProcessorPil, SiglipImageProcessorPil

from ..models.llava_internlm2 import LlavaInternLM2ForConditionalGeneration, LlavaInternLM2Processor
from ..models.llava_internlm2.builder import assemble_llava, build_llava_from_pretrained
from ..models.llava_internlm2.modeling_llava_internlm2 import causal_lm_from_config
from ..models.vision_encoders import drop_pooling_head
from .tiny_tokenizer import build_tiny_internlm2_tokenizer_files

# What `vision_model_type` may be: the vision model alone, or a two-tower folder as published
# (`openai/clip-vit-large-patch14-336` is a `clip` folder, `google/siglip-so400m-patch14-384` a `siglip` one).
VISION_MODEL_TYPES = ("clip_vision_model", "clip", "siglip_vision_model", "siglip")


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
    vision_model_type: str = "clip_vision_model",
    **config_fields,
) -> tuple[LlavaInternLM2ForConditionalGeneration, LlavaInternLM2Processor]:
    """A tiny random model + processor (nothing downloaded). `text_model_type` is any registered causal-LM
    model type with Llama-style config fields (`internlm2`, `llama`, `qwen2`, ...); `vision_model_type` one of
    `VISION_MODEL_TYPES`: CLIP (resize + centre crop, a CLS token) or SigLIP (resize, no CLS), the vision model
    alone or inside a two-tower model like the published folders. `config_fields` go to the LLaVA config
    (`projector_type`, `vision_feature_layer`, ...).

    With `save_dir`, the parts are written first (`save_dir/llm`: LLM + tokenizer, `save_dir/clip` or
    `save_dir/siglip`: the vision model + image processor) and the model is built from them with
    `build_llava_from_pretrained`, so its config records real source folders, as the demo needs. The same arguments
    always give the same weights.
    """
    if vision_model_type not in VISION_MODEL_TYPES:
        raise ValueError(f"vision_model_type must be one of {VISION_MODEL_TYPES}, got {vision_model_type!r}")
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
        vision = dict(image_size=image_size, patch_size=patch_size, hidden_size=vision_hidden_size,
                      intermediate_size=2 * vision_hidden_size, num_hidden_layers=vision_layers,
                      num_attention_heads=max(1, vision_hidden_size // 16))
        family = vision_model_type.removesuffix("_vision_model")
        if family == "clip":
            image_processor = CLIPImageProcessorPil(
                size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
            )
        else:
            image_processor = SiglipImageProcessorPil(size={"height": image_size, "width": image_size})
        vision_alone = AutoConfig.for_model(f"{family}_vision_model", **vision)
        language_model = causal_lm_from_config(text_config)
        if save_dir is None:
            drop_pooling_head(vision_alone)  # as the builder loads SigLIP (`vision_config_from_pretrained`)
            vision_model = AutoModel.from_config(vision_alone)
        elif vision_model_type.endswith("_vision_model"):
            vision_model = AutoModel.from_config(vision_alone)
        else:  # both towers, as published; the text tower is as small as it gets
            text = dict(vocab_size=64, hidden_size=vision_hidden_size, intermediate_size=2 * vision_hidden_size,
                        num_hidden_layers=1, num_attention_heads=vision["num_attention_heads"],
                        max_position_embeddings=16, pad_token_id=1, bos_token_id=0, eos_token_id=2)
            vision_model = AutoModel.from_config(AutoConfig.for_model(vision_model_type, text_config=text,
                                                                      vision_config=vision))
        if save_dir is None:
            return assemble_llava(language_model, vision_model, tokenizer, image_processor, "<image>",
                                  **config_fields)
        vision_dir = os.path.join(save_dir, family)
        language_model.save_pretrained(llm_dir)
        tokenizer.save_pretrained(llm_dir)
        vision_model.save_pretrained(vision_dir)
        image_processor.save_pretrained(vision_dir)
        return build_llava_from_pretrained(llm_dir, vision_dir, **config_fields)
