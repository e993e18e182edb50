"""LLaVA with any causal LM (InternLM2 by default) as a native transformers model.

Same computation and submodule names as transformers' `LlavaForConditionalGeneration` (`vision_tower`,
`multi_modal_projector.linear_1/act/linear_2`), with one difference: `language_model` is the full causal LM
including its head (`InternLM2ForCausalLM.output`, `LlamaForCausalLM.lm_head`, ...), so an LLM checkpoint
drops in unchanged and its keys stay `language_model.<original keys>`.

This file imports only torch, transformers and its siblings (checkpoint plumbing is in `checkpoint_io.py`), so
`save_pretrained` can copy them next to the weights for `trust_remote_code=True` users who do not have llava_hf
installed.
"""

import contextlib
import importlib
import inspect
import os
import shutil
from dataclasses import dataclass

from .transformers_version import require_supported_transformers


require_supported_transformers()  # before the imports below, which older transformers lack

import torch  # noqa: E402
import torch.utils.checkpoint  # noqa: E402
from torch import nn  # noqa: E402
from transformers import AutoModel, AutoModelForCausalLM  # noqa: E402
from transformers.activations import ACT2FN  # noqa: E402
from transformers.cache_utils import Cache  # noqa: E402
from transformers.generation import GenerationMixin  # noqa: E402
from transformers.masking_utils import find_packed_sequence_indices  # noqa: E402
from transformers.modeling_outputs import CausalLMOutputWithPast  # noqa: E402
from transformers.modeling_utils import PreTrainedModel  # noqa: E402
from transformers.utils import can_return_tuple, logging  # noqa: E402

from .checkpoint_io import (  # noqa: E402
    checked_from_pretrained,
    full_shape,
    gathered_for_update,
    missing_backbones,
    rebuild_from_sources,
)
from .configuration_llava_internlm2 import LlavaInternLM2Config  # noqa: E402


try:  # a saved folder (trust_remote_code): the InternLM2 files sit next to this one
    from .configuration_internlm2 import InternLM2Config
    from .modeling_internlm2 import CACHE_FIELD, InternLM2ForCausalLM
except ImportError:  # inside the llava_hf package (by name, as in configuration_llava_internlm2.py)
    InternLM2Config = importlib.import_module("llava_hf.models.internlm2.configuration_internlm2").InternLM2Config
    _internlm2 = importlib.import_module("llava_hf.models.internlm2.modeling_internlm2")
    CACHE_FIELD, InternLM2ForCausalLM = _internlm2.CACHE_FIELD, _internlm2.InternLM2ForCausalLM


logger = logging.get_logger(__name__)

# Auto classes a saved folder maps to our code, for `trust_remote_code=True` loading.
REMOTE_AUTO_CLASSES = ("AutoModel", "AutoModelForImageTextToText", "AutoModelForVision2Seq")


@dataclass
class LlavaInternLM2CausalLMOutputWithPast(CausalLMOutputWithPast):
    r"""
    image_hidden_states (`torch.FloatTensor` of shape `(num_images, image_seq_length, hidden_size)`, *optional*):
        The projected image features that replaced the image tokens.
    """

    image_hidden_states: torch.FloatTensor | None = None


def downsample_patch_grid(features: torch.Tensor, grid: tuple[int, int], mode: str) -> torch.Tensor:
    """`[n, rows * columns, dim]` patch features -> one feature per 2x2 block of the grid (an odd side gets a last
    block of one row or column): `pixel_shuffle` concatenates the block's four features in row-major order
    (`[n, blocks, 4 * dim]`, zeros where the grid was padded), `avg_pool` averages the ones inside the grid."""
    rows, columns = grid
    n, tokens, dim = features.shape
    if tokens != rows * columns:
        raise ValueError(f"projector_downsample: {tokens} features per image do not form the {rows}x{columns} "
                         "patch grid")
    grid_features = features.reshape(n, rows, columns, dim)
    if mode == "avg_pool":
        pooled = nn.functional.avg_pool2d(grid_features.permute(0, 3, 1, 2), kernel_size=2, ceil_mode=True)
        return pooled.flatten(2).transpose(1, 2)
    grid_features = nn.functional.pad(grid_features, (0, 0, 0, columns % 2, 0, rows % 2))
    blocks = grid_features.reshape(n, (rows + 1) // 2, 2, (columns + 1) // 2, 2, dim).permute(0, 1, 3, 2, 4, 5)
    return blocks.reshape(n, -1, 4 * dim)


class LlavaInternLM2MultiModalProjector(nn.Module):
    """Image features -> text embeddings. `mlp2x_gelu` is stock LLaVA's `linear_1` -> `act` -> `linear_2` (LLaVA-1.5);
    `linear` is `linear_1` alone (LLaVA-1). With `projector_downsample`, each 2x2 block of patches becomes one
    feature first (pixel shuffle widens `linear_1`'s input four times)."""

    def __init__(self, config: LlavaInternLM2Config):
        super().__init__()
        in_features = config.vision_config.hidden_size * len(config.vision_feature_layers())
        self.downsample = config.projector_downsample
        self.grid = config.patch_grid()
        if self.downsample == "pixel_shuffle":
            in_features *= 4
        text_hidden_size = config.text_config.hidden_size
        self.linear_1 = nn.Linear(in_features, text_hidden_size, bias=config.multimodal_projector_bias)
        if config.projector_type == "mlp2x_gelu":
            self.act = ACT2FN[config.projector_hidden_act]
            self.linear_2 = nn.Linear(text_hidden_size, text_hidden_size, bias=config.multimodal_projector_bias)

    def forward(self, image_features):
        if self.downsample is not None:
            image_features = downsample_patch_grid(image_features, self.grid, self.downsample)
        hidden_states = self.linear_1(image_features)
        if hasattr(self, "linear_2"):
            hidden_states = self.linear_2(self.act(hidden_states))
        return hidden_states


class LlavaInternLM2PreTrainedModel(PreTrainedModel):
    config_class = LlavaInternLM2Config
    config: LlavaInternLM2Config
    base_model_prefix = "model"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = []  # the backbones contribute theirs (decoder / encoder layers)
    _skip_keys_device_placement = ["past_key_values", "cache"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True


def _is_internlm2(text_config) -> bool:
    # Named directly rather than through `AutoModelForCausalLM`, so that a trust_remote_code folder, where
    # nothing has registered InternLM2, still works.
    return isinstance(text_config, InternLM2Config) or getattr(text_config, "model_type", None) == "internlm2"


def causal_lm_class(text_config):
    """The class whose `from_pretrained` loads this text model's checkpoints (with its head)."""
    return InternLM2ForCausalLM if _is_internlm2(text_config) else AutoModelForCausalLM


def causal_lm_from_config(text_config, **kwargs) -> PreTrainedModel:
    """A randomly initialised causal LM (with its head) for any registered text config; `kwargs` go to
    `from_config` (`dtype`, `attn_implementation`)."""
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    if _is_internlm2(text_config):
        return InternLM2ForCausalLM._from_config(text_config, **kwargs)
    return AutoModelForCausalLM.from_config(text_config, **kwargs)


def resize_token_embeddings_to_mean(language_model: PreTrainedModel, new_num_tokens: int) -> None:
    """Grow the vocabulary, filling new input/output rows with the mean of the existing rows.

    Unlike `resize_token_embeddings(mean_resizing=True)`, which samples the new rows, this is deterministic, so
    rebuilding a model from the same sources gives bit-identical weights.
    """
    old_num_tokens = full_shape(language_model.get_input_embeddings().weight)[0]
    if new_num_tokens < old_num_tokens:
        raise ValueError(f"cannot shrink the vocabulary from {old_num_tokens} to {new_num_tokens} tokens")
    if new_num_tokens == old_num_tokens:
        return
    language_model.resize_token_embeddings(new_num_tokens, mean_resizing=False)
    embeddings = [language_model.get_input_embeddings(), language_model.get_output_embeddings()]
    weights = list({id(e.weight): e.weight for e in embeddings if e is not None}.values())
    with torch.no_grad(), gathered_for_update(weights):
        for weight in weights:
            mean = weight[:old_num_tokens].float().mean(dim=0, keepdim=True)
            weight[old_num_tokens:] = mean.to(weight.dtype)


class LlavaInternLM2ForConditionalGeneration(LlavaInternLM2PreTrainedModel, GenerationMixin):
    """Vision encoder (CLIP, SigLIP, ...) -> projector (LLaVA-1.5's 2-layer MLP by default) -> causal LM. Build one
    from pretrained parts with `llava_hf.models.llava_internlm2.build_llava_from_pretrained`."""

    def __init__(self, config: LlavaInternLM2Config, language_model=None, vision_tower=None):
        """`language_model` / `vision_tower`: already-built backbones to use instead of new ones (see
        `from_backbones`)."""
        super().__init__(config)
        self.vision_tower = vision_tower if vision_tower is not None else AutoModel.from_config(config.vision_config)
        self.multi_modal_projector = LlavaInternLM2MultiModalProjector(config)
        self.language_model = (
            language_model if language_model is not None else causal_lm_from_config(config.text_config)
        )
        self._share_sub_configs()
        self.post_init()
        # Only layer classes present in this model: FSDP's auto-wrap (accelerate) rejects names it cannot find,
        # and CLIPVisionModel also lists its text-side layers.
        present = {type(module).__name__ for module in self.modules()}
        self._no_split_modules = {name for name in self._no_split_modules if name in present}

    def _share_sub_configs(self):
        # One config object per backbone, so resizing the vocabulary or switching attention updates both views.
        self.config.text_config = self.language_model.config
        self.config.vision_config = self.vision_tower.config

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, new_embeddings):
        self.language_model.set_output_embeddings(new_embeddings)

    def get_decoder(self):
        return self.language_model.get_decoder()

    def resize_token_embeddings(self, new_num_tokens=None, pad_to_multiple_of=None, mean_resizing=True):
        embeddings = self.language_model.resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        self.config.text_config.vocab_size = embeddings.weight.shape[0]
        return embeddings

    def get_image_features(self, pixel_values: torch.FloatTensor) -> torch.FloatTensor:
        """Projected features `[n_images, image_seq_length, text_hidden_size]` of `pixel_values` `[n_images, 3, H, W]`:
        the hidden states of `vision_feature_layer` (several: concatenated), without the tokens ahead of the patches
        (CLIP's CLS) under the `default` strategy, as stock LLaVA selects them for CLIP (its `default` drops token 0 of
        any encoder; here an encoder without CLS, such as SigLIP, loses nothing).

        A frozen vision tower (no trainable parameter) runs under `no_grad`, so it stores no activations.
        """
        frozen = not any(p.requires_grad for p in self.vision_tower.parameters())
        with torch.no_grad() if frozen else contextlib.nullcontext():
            image_outputs = self.vision_tower(
                pixel_values.to(self.vision_tower.dtype), output_hidden_states=True, return_dict=True
            )
        selected = [image_outputs.hidden_states[layer] for layer in self.config.vision_feature_layers()]
        if self.config.vision_feature_select_strategy == "default":
            first_patch = self.config.num_additional_image_tokens  # CLIP: 1, the CLS token
            selected = [hidden_state[:, first_patch:] for hidden_state in selected]
        return self.multi_modal_projector(torch.cat(selected, dim=-1))

    def get_placeholder_mask(
        self,
        input_ids: torch.LongTensor | None,
        inputs_embeds: torch.FloatTensor,
        image_features: torch.FloatTensor | None,
    ) -> torch.BoolTensor:
        """`[batch, seq]` mask of the image-token positions; raises if they do not match the image features."""
        if input_ids is None:
            image_token_embedding = self.get_input_embeddings()(
                torch.tensor(self.config.image_token_id, dtype=torch.long, device=inputs_embeds.device)
            )
            image_mask = (inputs_embeds == image_token_embedding).all(-1)
        else:
            image_mask = input_ids == self.config.image_token_id
        n_image_features = 0 if image_features is None else image_features.shape[0] * image_features.shape[1]
        n_images = 0 if image_features is None else image_features.shape[0]
        if self.training:
            # Checked on the device, without a host sync in the training step (the dataset expands every `<image>` to
            # image_seq_length tokens itself, and the data validator checks the samples before step 1).
            torch._assert_async(image_mask.sum() == n_image_features,
                                f"Image features and image tokens do not match: {n_images} image(s) give "
                                f"{n_image_features} features, but the number of image tokens differs")
            return image_mask
        n_image_tokens = int(image_mask.sum())
        if n_image_tokens != n_image_features:
            raise ValueError(
                f"Image features and image tokens do not match: the input has {n_image_tokens} image tokens "
                f"(id {self.config.image_token_id}) but {n_images} image(s) give {n_image_features} features "
                f"({self.config.image_seq_length} per image). Each `<image>` must be expanded to "
                f"image_seq_length tokens and `pixel_values` must hold one image per `<image>`, in order."
            )
        return image_mask

    def _zero_projector_term(self) -> torch.Tensor:
        """0 x (sum of the trainable projector weights): a text-only training batch still gives the projector a
        (zero) gradient, so DDP does not hang when one rank's micro-batch has images and another's has none."""
        trainable = [p.sum() for p in self.multi_modal_projector.parameters() if p.requires_grad]
        return 0.0 * torch.stack(trainable).sum() if trainable else torch.zeros(())

    # Training-time loss switch (set by `enable_supervised_loss`): None keeps the stock loss over full logits.
    supervised_loss_chunk_size: int | None = None
    # A fused `(head weight, hidden, targets) -> summed cross-entropy` that replaces the chunked head + cross-entropy
    # (liger-kernel's fused linear cross-entropy, set by `models/fused_kernels.py`); None: the chunks.
    supervised_loss_function = None

    def enable_supervised_loss(self, chunk_size: int | None) -> None:
        """In training mode with labels, compute the LM head and cross-entropy only at positions that have a target,
        `chunk_size` positions at a time (each chunk's logits are recomputed in backward instead of stored), and
        return no logits. Same value and gradients as the stock loss; None restores the stock loss. In LLaVA only
        replies carry labels, so this skips the head for most positions and never holds fp32 logits for the whole
        batch at once (92544 x 4 bytes per position for InternLM2)."""
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be positive or None, got {chunk_size}")
        text_config = self.config.text_config
        for name in ("final_logit_softcapping", "logit_scale"):
            if chunk_size is not None and getattr(text_config, name, None) is not None:
                raise ValueError(f"the supervised-only loss applies the bare LM head; {text_config.model_type}'s "
                                 f"`{name}` would be skipped, so keep the stock loss for this text model")
        self.supervised_loss_chunk_size = chunk_size

    def supervised_loss(
        self,
        hidden_states: torch.Tensor,
        labels: torch.LongTensor,
        num_items_in_batch: torch.Tensor | int | None = None,
        ignore_index: int = -100,
        shift_labels: torch.LongTensor | None = None,
        target_positions: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """transformers' `ForCausalLMLoss` (position t predicts label t+1; the sum over targets divided by
        `num_items_in_batch`, else their mean) from the last hidden states, with the head applied only where there is
        a target, `supervised_loss_chunk_size` rows at a time. A batch without targets gives a zero that still reaches
        every trainable weight (no NaN, no DDP hang).

        `target_positions`: the flat indices (into batch x sequence) of the positions that have a target, as the
        padding-free collator computes them on the host; without them they are found here, a host sync on a GPU."""
        if shift_labels is None:
            shift_labels = nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]
        shift_labels = shift_labels.to(hidden_states.device).reshape(-1)
        flat_hidden = hidden_states.reshape(-1, hidden_states.shape[-1])
        if target_positions is None:
            target_positions = torch.nonzero(shift_labels != ignore_index).flatten()
        target_positions = target_positions.to(hidden_states.device)
        hidden, targets = flat_hidden.index_select(0, target_positions), shift_labels.index_select(0, target_positions)
        head = self.get_output_embeddings()

        def chunk_loss(chunk_hidden, chunk_targets):
            logits = head(chunk_hidden).float()
            return nn.functional.cross_entropy(logits, chunk_targets, ignore_index=ignore_index, reduction="sum")

        total = flat_hidden[0, 0].float() * 0.0  # keeps the graph (and DDP) alive when there is no target
        n_targets = targets.shape[0]  # known on the host
        chunk = self.supervised_loss_chunk_size or max(n_targets, 1)
        if self.supervised_loss_function is not None:
            total = total + self.supervised_loss_function(head.weight, hidden, targets)
        else:
            for start in range(0, n_targets, chunk):
                pieces = (hidden[start : start + chunk], targets[start : start + chunk])
                if torch.is_grad_enabled():
                    total = total + torch.utils.checkpoint.checkpoint(chunk_loss, *pieces, use_reentrant=False)
                else:
                    total = total + chunk_loss(*pieces)
        if num_items_in_batch is None:
            return total / (targets != ignore_index).sum().clamp(min=1)
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(total.device)
        return total / num_items_in_batch

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        cache: Cache | None = None,
        **kwargs,
    ) -> LlavaInternLM2CausalLMOutputWithPast:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(n_images, 3, H, W)`, *optional*):
            Only the images present in the batch, in row order and within a row in the order of their image tokens
            (a row may hold several); text-only rows contribute none. Image k's features fill the k-th block of
            `image_seq_length` image tokens.
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Next-token labels (-100 ignored). Image-token positions are always ignored.
        position_ids (`torch.LongTensor`, *optional*):
            Passed to the language model untouched (packed rows carry per-sample positions).
        """
        cache = cache if cache is not None else past_key_values
        if use_cache is None:  # `model.config.use_cache = False` (set for training) must reach the language model
            use_cache = getattr(self.config, "use_cache", None)
        if use_cache is not False and cache is None and attention_mask is None and position_ids is not None:
            # A padding-free row (several samples, positions restarting at 0) is told apart by transformers' masking
            # only without a cache; a new cache would make it one causal sequence that attends across samples.
            if kwargs.get("cu_seq_lens_q") is not None or find_packed_sequence_indices(position_ids) is not None:
                use_cache = False
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)

        image_features = None
        if pixel_values is not None:
            image_features = self.get_image_features(pixel_values).to(inputs_embeds.device, inputs_embeds.dtype)
        decoding = cache is not None and cache.get_seq_length() > 0  # image tokens are already in the cache
        image_mask = None
        if image_features is not None or not decoding:
            image_mask = self.get_placeholder_mask(input_ids, inputs_embeds, image_features)
        if image_features is not None:
            inputs_embeds = inputs_embeds.masked_scatter(image_mask.unsqueeze(-1), image_features)
        elif self.training and torch.is_grad_enabled():
            inputs_embeds = inputs_embeds + self._zero_projector_term().to(inputs_embeds.device)

        loss_kwargs = {k: kwargs.pop(k) for k in ("num_items_in_batch", "ignore_index", "shift_labels") if k in kwargs}
        target_positions = kwargs.pop("target_positions", None)  # the padding-free collator's; only our loss uses them
        if labels is not None and image_mask is not None:
            labels = labels.masked_fill(image_mask.to(labels.device), -100)
        text_inputs = dict(attention_mask=attention_mask, position_ids=position_ids, inputs_embeds=inputs_embeds,
                           use_cache=use_cache, return_dict=True, **{CACHE_FIELD: cache}, **kwargs)
        if labels is not None and self.training and self.supervised_loss_chunk_size is not None:
            # the decoder alone: the head runs in `supervised_loss`, only where there are targets
            outputs = self.language_model.get_decoder()(**text_inputs)
            logits = None
            loss = self.supervised_loss(outputs.last_hidden_state, labels, target_positions=target_positions,
                                        **loss_kwargs)
        else:
            outputs = self.language_model(**text_inputs, logits_to_keep=logits_to_keep)
            logits = outputs.logits
            loss = None
            if labels is not None:
                loss = self.loss_function(logits=logits, labels=labels, vocab_size=logits.shape[-1], **loss_kwargs)

        return LlavaInternLM2CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=image_features,
            **{CACHE_FIELD: getattr(outputs, CACHE_FIELD)},
        )

    def prepare_inputs_for_generation(self, *args, pixel_values=None, is_first_iteration=False, **kwargs):
        model_inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
        # The image features enter the KV cache on the first step; later steps only extend it.
        if is_first_iteration or not kwargs.get("use_cache", True):
            model_inputs["pixel_values"] = pixel_values
        else:
            model_inputs.pop("pixel_values", None)
        return model_inputs

    @classmethod
    def from_backbones(
        cls,
        config: LlavaInternLM2Config,
        language_model: PreTrainedModel | None = None,
        vision_tower: PreTrainedModel | None = None,
        dtype: torch.dtype | None = None,
    ) -> "LlavaInternLM2ForConditionalGeneration":
        """Assemble a model around already-loaded backbones (a missing one is built from `config`, in `dtype`); the
        projector is freshly initialised. The language model is grown (mean rows) to `config.text_config.vocab_size`."""
        if language_model is None:
            language_model = causal_lm_from_config(config.text_config, dtype=dtype)
        resize_token_embeddings_to_mean(language_model, config.text_config.vocab_size)
        if vision_tower is None:
            vision_tower = AutoModel.from_config(config.vision_config, **({"dtype": dtype} if dtype else {}))
        # No skeleton is built: under DeepSpeed ZeRO-3 the backbones are already partitioned, and the projector is
        # partitioned when the DeepSpeed engine starts.
        model = cls(config, language_model=language_model, vision_tower=vision_tower)
        for module in model.multi_modal_projector.modules():
            if isinstance(module, nn.Linear):
                model._init_weights(module)
        model.multi_modal_projector.to(device=language_model.device, dtype=language_model.dtype)
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """A full folder loads as usual. A local folder whose weights lack a backbone (a stage-1 checkpoint with only
        the projector) is rebuilt from `config.text_model_name_or_path` / `config.vision_model_name_or_path`, and
        the folder's tensors are loaded on top. Weights missing in any other case raise (see `checkpoint_io`)."""
        missing = missing_backbones(pretrained_model_name_or_path)
        if not missing:
            return checked_from_pretrained(
                super().from_pretrained, pretrained_model_name_or_path, *model_args, **kwargs
            )
        folder = os.fspath(pretrained_model_name_or_path)
        if model_args:
            raise TypeError(f"{folder}: positional model arguments are not supported when rebuilding from sources")
        return rebuild_from_sources(cls, folder, missing, causal_lm_class, **kwargs)

    def save_pretrained(self, save_directory, *args, is_main_process: bool = True, **kwargs):
        """Also writes `auto_map` and the code files (this one, the config, checkpoint_io, InternLM2's), so the folder
        loads with `trust_remote_code=True` where llava_hf is not installed. The training-time `use_cache=False`
        is not saved: whoever loads the folder generates with the KV cache."""
        import transformers

        auto_map = {"AutoConfig": f"{_module_name(LlavaInternLM2Config)}.LlavaInternLM2Config"}
        for auto_class in REMOTE_AUTO_CLASSES:
            if hasattr(transformers, auto_class):
                auto_map[auto_class] = f"{_module_name(type(self))}.{type(self).__name__}"
        self.config.auto_map = auto_map
        training_use_cache = self.config.__dict__.pop("use_cache", None)  # set by the training setup
        try:
            super().save_pretrained(save_directory, *args, is_main_process=is_main_process, **kwargs)
        finally:
            if training_use_cache is not None:
                self.config.use_cache = training_use_cache
        if is_main_process:
            code = (LlavaInternLM2Config, LlavaInternLM2ForConditionalGeneration, rebuild_from_sources, InternLM2Config,
                    InternLM2ForCausalLM, require_supported_transformers)
            for source in {inspect.getfile(c) for c in code}:
                shutil.copyfile(source, os.path.join(save_directory, os.path.basename(source)))


def _module_name(cls) -> str:
    return cls.__module__.rsplit(".", 1)[-1]


__all__ = [
    "LlavaInternLM2ForConditionalGeneration",
    "LlavaInternLM2PreTrainedModel",
    "LlavaInternLM2MultiModalProjector",
    "resize_token_embeddings_to_mean",
]
