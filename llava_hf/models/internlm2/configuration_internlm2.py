"""InternLM2 configuration, field for field the published `configuration_internlm2.py`."""

from huggingface_hub.dataclasses import strict
from transformers.configuration_utils import PreTrainedConfig
from transformers.modeling_rope_utils import RopeParameters
from transformers.utils import logging


logger = logging.get_logger(__name__)

# The rope types the original code knows; anything else cannot be written back as `rope_scaling`.
_ORIGINAL_ROPE_TYPES = ("linear", "dynamic")


@strict
class InternLM2Config(PreTrainedConfig):
    r"""
    Configuration of an InternLM2 model (`internlm/internlm2-chat-7b`, `-1_8b`, `-20b`, InternLM2.5).

    The defaults are those of the original class (InternLM-7B v1 style, not the chat checkpoints); the
    published config.json files set every value explicitly. Differences from the original:

    - rope settings live in `rope_parameters` (transformers 5), but `to_dict` also writes the original
      `rope_theta` / `rope_scaling={"type", "factor"}` keys, so folders we save still load in the original
      remote code (lmdeploy, InternVL, XTuner) with the right rope.
    - the published config.json says `"attn_implementation": "eager"`, which was the original's way of
      saying "no preference". Read from a file it is ignored, so the model uses sdpa unless the caller asks
      for something else (`from_pretrained(..., attn_implementation="eager")` still works).

    ```python
    >>> import llava_hf
    >>> from transformers import AutoModelForCausalLM
    >>> model = AutoModelForCausalLM.from_pretrained("path/to/internlm2-chat-7b")  # no trust_remote_code
    ```"""

    model_type = "internlm2"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]
    base_model_tp_plan = {
        "layers.*.attention.wqkv": "colwise",
        "layers.*.attention.wo": "rowwise",
        "layers.*.feed_forward.w1": "colwise",
        "layers.*.feed_forward.w3": "colwise",
        "layers.*.feed_forward.w2": "rowwise",
    }

    vocab_size: int = 103168
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    use_cache: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    pretraining_tp: int | None = 1
    tie_word_embeddings: bool = False
    bias: bool = True
    rope_parameters: RopeParameters | dict | None = None
    attention_dropout: float | int = 0.0

    def __post_init__(self, **kwargs):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        kwargs.setdefault("rope_theta", 10000.0)
        super().__post_init__(**kwargs)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def validate_architecture(self):
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})."
            )
        if self.num_attention_heads % self.num_key_value_heads != 0:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of num_key_value_heads "
                f"({self.num_key_value_heads})."
            )

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        if config_dict.get("attn_implementation") == "eager":
            config_dict = {k: v for k, v in config_dict.items() if k != "attn_implementation"}
            logger.info("Ignoring the published `attn_implementation: eager`; using the default (sdpa).")
        return super().from_dict(config_dict, **kwargs)

    def to_dict(self):
        output = super().to_dict()
        output.update(self._original_rope_keys())
        return output

    def to_diff_dict(self):
        output = super().to_diff_dict()
        output.update(self._original_rope_keys())
        return output

    def _original_rope_keys(self) -> dict:
        """`rope_theta` / `rope_scaling` as the original `configuration_internlm2.py` reads them."""
        rope = self.rope_parameters or {}
        keys = {"rope_theta": rope.get("rope_theta", 10000.0), "rope_scaling": None}
        rope_type = rope.get("rope_type", "default")
        if rope_type in _ORIGINAL_ROPE_TYPES:
            keys["rope_scaling"] = {"type": rope_type, "factor": float(rope["factor"])}
        elif rope_type != "default":
            logger.warning(
                f"rope_type {rope_type!r} has no equivalent in the original InternLM2 code; "
                "config.json keeps it only under `rope_parameters`."
            )
        return keys


__all__ = ["InternLM2Config"]
