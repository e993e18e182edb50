"""LLaVA-InternLM2: config, model, processor, and builders from pretrained parts or tiny random configs."""

from .configuration_llava_internlm2 import LlavaInternLM2Config
from .modeling_llava_internlm2 import (
    LlavaInternLM2ForConditionalGeneration,
    LlavaInternLM2MultiModalProjector,
    LlavaInternLM2PreTrainedModel,
    resize_token_embeddings_to_mean,
)
from .processing_llava_internlm2 import LlavaInternLM2Processor, build_chat_template, expand_to_square
from .builder import assemble_llava, build_llava_from_pretrained, load_projector_weights


def register():
    """Make the Auto classes resolve `model_type: llava_internlm2` to our classes (no trust_remote_code)."""
    import transformers
    from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor

    AutoConfig.register("llava_internlm2", LlavaInternLM2Config, exist_ok=True)
    AutoModel.register(LlavaInternLM2Config, LlavaInternLM2ForConditionalGeneration, exist_ok=True)
    AutoModelForImageTextToText.register(LlavaInternLM2Config, LlavaInternLM2ForConditionalGeneration, exist_ok=True)
    if hasattr(transformers, "AutoModelForVision2Seq"):
        transformers.AutoModelForVision2Seq.register(
            LlavaInternLM2Config, LlavaInternLM2ForConditionalGeneration, exist_ok=True
        )
    AutoProcessor.register(LlavaInternLM2Config, LlavaInternLM2Processor, exist_ok=True)
    # Saved processors carry `auto_map` + processing_llava_internlm2.py, for users without llava_hf.
    LlavaInternLM2Processor.register_for_auto_class()


__all__ = [
    "LlavaInternLM2Config",
    "LlavaInternLM2ForConditionalGeneration",
    "LlavaInternLM2MultiModalProjector",
    "LlavaInternLM2PreTrainedModel",
    "LlavaInternLM2Processor",
    "build_chat_template",
    "assemble_llava",
    "build_llava_from_pretrained",
    "expand_to_square",
    "load_projector_weights",
    "register",
    "resize_token_embeddings_to_mean",
]
