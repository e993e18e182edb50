"""LLaVA-InternLM2 configuration: a vision-encoder config (CLIP by default), a causal-LM text config, and the projector
settings.

This file imports only transformers (and, inside a saved folder, its InternLM2 siblings), so
`save_pretrained` can copy it next to the weights for `trust_remote_code=True` users without llava_hf.
"""

import importlib
import math
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

# Tokens a vision encoder emits per image besides its patches, ahead of them (CLIP's CLS; SigLIP has none), for the
# encoders whose count is known without running them. `build_llava_from_pretrained` measures it for any other
# encoder and records it in `num_additional_image_tokens`.
KNOWN_ADDITIONAL_IMAGE_TOKENS = {"clip_vision_model": 1, "siglip_vision_model": 0}
ProjectorType = Literal["mlp2x_gelu", "linear"]
ProjectorDownsample = Literal["pixel_shuffle", "avg_pool"]


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
    Configuration of a [`LlavaInternLM2ForConditionalGeneration`]: vision encoder -> projector -> causal LM.

    `text_config` defaults to InternLM2 but may be any causal LM that `AutoModelForCausalLM` knows (Llama,
    Vicuna, Qwen2, ...); `vision_config` defaults to CLIP ViT-L/14-336 but may be any fixed-resolution patch encoder
    transformers implements (SigLIP, CLIP at any resolution, ...).

    Image features are the encoder's hidden states at `vision_feature_layer` (an index, or a list of indices whose
    states are concatenated), minus the `num_additional_image_tokens` tokens the encoder puts ahead of its patches
    (CLIP's CLS: 1, SigLIP: 0) with the `default` strategy; `full` keeps them. The projector is `projector_type`
    (`mlp2x_gelu`: Linear-act-Linear, LLaVA-1.5's; `linear`: one Linear, LLaVA-1's) after an optional 2x2 token
    downsampling of the patch grid (`projector_downsample`: `pixel_shuffle` concatenates each 2x2 block's features,
    `avg_pool` averages them; an odd grid side is padded), for encoders with many tokens (SigLIP-384: 729 -> 196).
    `image_seq_length` is derived from all of this (576 for CLIP-L/336 with `default`).

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
    num_additional_image_tokens: int | None = None
    projector_type: ProjectorType = "mlp2x_gelu"
    projector_downsample: ProjectorDownsample | None = None
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
        self._check_image_features()
        derived = self.num_image_features()
        if self.image_seq_length is None:
            self.image_seq_length = derived
        elif self.image_seq_length != derived:
            raise ValueError(
                f"image_seq_length={self.image_seq_length} does not match the vision config, which gives {derived} "
                f"features per image (image_size {self.vision_config.image_size}, patch_size "
                f"{self.vision_config.patch_size}, {self.num_additional_image_tokens} additional token(s), strategy "
                f"{self.vision_feature_select_strategy!r}, downsample {self.projector_downsample})"
            )
        super().__post_init__(**kwargs)
        if kwargs.get("attn_implementation") is None:
            for name, implementation in kept.items():
                getattr(self, name)._attn_implementation_internal = implementation

    def _check_image_features(self):
        encoder = self.vision_config.model_type
        if self.num_additional_image_tokens is None:
            self.num_additional_image_tokens = KNOWN_ADDITIONAL_IMAGE_TOKENS.get(encoder)
        if self.num_additional_image_tokens is None:
            raise ValueError(
                f"num_additional_image_tokens is not set and unknown for the vision encoder {encoder!r}: how many "
                "tokens it emits per image besides its patches (a CLS token: 1); build_llava_from_pretrained "
                "measures it"
            )
        layers = self.vision_feature_layer
        if isinstance(layers, list) and not layers:
            raise ValueError("vision_feature_layer is an empty list: name at least one encoder layer")
        self.patch_grid()  # a fixed-resolution patch encoder
        if (self.projector_downsample is not None and self.vision_feature_select_strategy == "full"
                and self.num_additional_image_tokens):
            raise ValueError(
                f"projector_downsample={self.projector_downsample!r} pools the patch grid, but the 'full' strategy "
                f"keeps the {self.num_additional_image_tokens} token(s) {encoder!r} puts ahead of its patches: use "
                "'default'"
            )

    def vision_feature_layers(self) -> list[int]:
        """`vision_feature_layer` as a list: the encoder hidden states whose features are concatenated."""
        layers = self.vision_feature_layer
        return [layers] if isinstance(layers, int) else list(layers)

    def patch_grid(self) -> tuple[int, int]:
        """(rows, columns) of patches the vision encoder sees in one image."""
        return vision_patch_grid(self.vision_config)

    def num_encoder_tokens(self) -> int:
        """Tokens the vision encoder emits per image: its patches and the tokens ahead of them."""
        rows, columns = self.patch_grid()
        return rows * columns + self.num_additional_image_tokens

    def num_image_features(self) -> int:
        """Features the projector emits per image: one per patch (per 2x2 block of patches when downsampling), plus
        the encoder's additional tokens (CLS) unless the `default` strategy drops them."""
        rows, columns = self.patch_grid()
        if self.projector_downsample is not None:
            rows, columns = math.ceil(rows / 2), math.ceil(columns / 2)
        extra = self.num_additional_image_tokens if self.vision_feature_select_strategy == "full" else 0
        return rows * columns + extra

    def validate_architecture(self):
        if self.image_token_id is not None and not 0 <= self.image_token_id < self.text_config.vocab_size:
            raise ValueError(
                f"image_token_id={self.image_token_id} is outside the text model's vocabulary "
                f"(vocab_size {self.text_config.vocab_size}); add the image token and resize the embeddings first"
            )


def vision_patch_grid(vision_config) -> tuple[int, int]:
    """(rows, columns) of patches a fixed-resolution patch encoder (CLIP, SigLIP, ViT) sees in one image."""
    (height, width), (patch_height, patch_width) = vision_image_size(vision_config), _sizes(vision_config, "patch_size")
    return height // patch_height, width // patch_width


def vision_image_size(vision_config) -> tuple[int, int]:
    """(height, width) of the images a fixed-resolution encoder takes."""
    return _sizes(vision_config, "image_size")


def _sizes(vision_config, field: str) -> tuple[int, int]:
    size = getattr(vision_config, field, None)
    if size is None:
        raise ValueError(
            f"the vision encoder {vision_config.model_type!r} has no {field} in its config: LLaVA needs a "
            "fixed-resolution patch encoder (CLIP, SigLIP, ViT-style)"
        )
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


__all__ = ["LlavaInternLM2Config"]
