"""LLaVA-InternLM2 configuration: a CLIP vision config, a causal-LM text config, and the projector settings.

This file imports only transformers (and, inside a saved folder, its InternLM2 siblings), so
`save_pretrained` can copy it next to the weights for `trust_remote_code=True` users without llava_hf.
"""

import importlib
from typing import Literal

from .transformers_version import require_supported_transformers


require_supported_transformers()  # before the imports below, which older transformers lack

from huggingface_hub.dataclasses import strict  # noqa: E402
from transformers import AutoConfig  # noqa: E402
from transformers.configuration_utils import PreTrainedConfig  # noqa: E402


try:  # a saved folder (trust_remote_code): the InternLM2 files sit next to this one
    from .configuration_internlm2 import InternLM2Config
except ImportError:  # inside the llava_hf package (by name: transformers < 4.5x's scan of a folder's imports sees
    # the lines under `except`, and would ask a user of a saved folder to install llava_hf)
    InternLM2Config = importlib.import_module("llava_hf.models.internlm2.configuration_internlm2").InternLM2Config


# CLIP ViT-L/14-336, the vision tower of LLaVA-1.5 and of XTuner's LLaVA-InternLM2 recipes.
DEFAULT_VISION_CONFIG = {
    "model_type": "clip_vision_model",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 336,
    "patch_size": 14,
    "projection_dim": 768,
}


def resolve_sub_config(value: dict | PreTrainedConfig | None, default: dict) -> PreTrainedConfig:
    """A sub-config from a config object, a `config.json`-style dict (keyed by `model_type`) or None (default).

    `internlm2` is resolved here rather than through `AutoConfig`, so it also works in a saved folder loaded
    with `trust_remote_code=True`, where nothing has registered it.
    """
    if isinstance(value, PreTrainedConfig):
        return value
    kwargs = dict(default if value is None else value)
    model_type = kwargs.pop("model_type", default["model_type"])
    if model_type == InternLM2Config.model_type:
        return InternLM2Config(**kwargs)
    return AutoConfig.for_model(model_type, **kwargs)


@strict
class LlavaInternLM2Config(PreTrainedConfig):
    r"""
    Configuration of a [`LlavaInternLM2ForConditionalGeneration`]: CLIP ViT -> 2-layer MLP projector -> causal LM.

    `text_config` defaults to InternLM2 but may be any causal LM that `AutoModelForCausalLM` knows (Llama,
    Vicuna, Qwen2, ...). `image_seq_length` is derived from the vision config: (image_size / patch_size)^2
    features per image, plus one for the CLS token with the `full` strategy (576 for CLIP-L/336).

    `text_model_name_or_path` / `vision_model_name_or_path` record where the backbones came from. A
    checkpoint that stores only the projector (stage-1 pretraining) is rebuilt from them on load.

    ```python
    >>> from transformers import CLIPVisionConfig, LlamaConfig
    >>> config = LlavaInternLM2Config(text_config=LlamaConfig(), vision_config=CLIPVisionConfig(), image_token_id=32000)
    ```"""

    model_type = "llava_internlm2"
    # stock LLaVA calls it `image_token_index`; tools written against it still find it
    attribute_map = {"image_token_index": "image_token_id"}
    sub_configs = {"text_config": AutoConfig, "vision_config": AutoConfig}

    text_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    image_token_id: int | None = None
    image_seq_length: int | None = None
    vision_feature_layer: int | list[int] = -2
    vision_feature_select_strategy: Literal["default", "full"] = "default"
    projector_hidden_act: str = "gelu"
    multimodal_projector_bias: bool = True
    tie_word_embeddings: bool = False
    text_model_name_or_path: str | None = None
    vision_model_name_or_path: str | None = None

    def __post_init__(self, **kwargs):
        # Sub-configs passed as objects belong to already-built backbones: keep their attention implementation
        # (the base class would reset it to the top-level one, None unless `attn_implementation` is given).
        kept = {name: getattr(self, name)._attn_implementation_internal for name in ("text_config", "vision_config")
                if isinstance(getattr(self, name), PreTrainedConfig)}
        self.text_config = resolve_sub_config(self.text_config, {"model_type": InternLM2Config.model_type})
        self.vision_config = resolve_sub_config(self.vision_config, DEFAULT_VISION_CONFIG)
        derived = self.num_image_features()
        if self.image_seq_length is None:
            self.image_seq_length = derived
        elif self.image_seq_length != derived:
            raise ValueError(
                f"image_seq_length={self.image_seq_length} does not match the vision config, which gives {derived} "
                f"features per image (image_size {self.vision_config.image_size}, patch_size "
                f"{self.vision_config.patch_size}, strategy {self.vision_feature_select_strategy!r})"
            )
        super().__post_init__(**kwargs)
        if kwargs.get("attn_implementation") is None:
            for name, implementation in kept.items():
                getattr(self, name)._attn_implementation_internal = implementation

    def num_image_features(self) -> int:
        """Features the projector emits per image: one per patch, plus CLS unless the `default` strategy drops it."""
        patches = (self.vision_config.image_size // self.vision_config.patch_size) ** 2
        return patches + (1 if self.vision_feature_select_strategy == "full" else 0)

    def validate_architecture(self):
        if self.image_token_id is not None and not 0 <= self.image_token_id < self.text_config.vocab_size:
            raise ValueError(
                f"image_token_id={self.image_token_id} is outside the text model's vocabulary "
                f"(vocab_size {self.text_config.vocab_size}); add the image token and resize the embeddings first"
            )


__all__ = ["LlavaInternLM2Config"]
