"""Native InternLM2: config, model, tokenizer, and Llama conversion helpers."""

from .configuration_internlm2 import InternLM2Config
from .convert_internlm2 import (
    internlm2_config_to_llama_config,
    internlm2_to_llama_state_dict,
    llama_to_internlm2_state_dict,
    pack_wqkv,
    split_wqkv,
)
from .modeling_internlm2 import InternLM2ForCausalLM, InternLM2Model, InternLM2PreTrainedModel
from .tokenization_internlm2 import InternLM2Tokenizer


def register():
    """Make `Auto*` classes resolve `model_type: internlm2` to our classes (no trust_remote_code)."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    AutoConfig.register("internlm2", InternLM2Config, exist_ok=True)
    AutoModel.register(InternLM2Config, InternLM2Model, exist_ok=True)
    AutoModelForCausalLM.register(InternLM2Config, InternLM2ForCausalLM, exist_ok=True)
    AutoTokenizer.register(InternLM2Config, tokenizer_class=InternLM2Tokenizer, exist_ok=True)
    # Saved folders carry `auto_map` + these files, like the published ones, for users without llava_hf.
    InternLM2Config.register_for_auto_class()
    InternLM2ForCausalLM.register_for_auto_class("AutoModelForCausalLM")


__all__ = [
    "InternLM2Config",
    "InternLM2ForCausalLM",
    "InternLM2Model",
    "InternLM2PreTrainedModel",
    "InternLM2Tokenizer",
    "internlm2_config_to_llama_config",
    "internlm2_to_llama_state_dict",
    "llama_to_internlm2_state_dict",
    "pack_wqkv",
    "split_wqkv",
]
